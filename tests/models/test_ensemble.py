"""Ensembles: the average of fitted candidates, saved as its members' native files, kept by
``mlsd train`` only when it beats the best single model on valid by the spec's margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.models import package
from mlsd.models.base import FitData, ModelError, TaskInfo
from mlsd.models.ensemble import average
from mlsd.models.families import EnsembleModel, load_model, make_model
from mlsd.models.train import train
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace

BINARY = TaskInfo("binary", 2)


def fitted_pair():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=600) > 0).astype(float)
    data = FitData(X=X, y=y, feature_names=list("abcd"))
    members = [
        make_model("lightgbm", BINARY, {"num_leaves": 4, "num_boost_round": 30}, seed=1).fit(data),
        make_model("lightgbm", BINARY, {"num_leaves": 15, "num_boost_round": 60}, seed=2).fit(data),
    ]
    return members, X


def test_the_average_saves_as_member_files_and_loads_back_identical(tmp_path):
    members, X = fitted_pair()
    model = average(members, ["small", "large"], BINARY)
    expected = (members[0].predict(X) + members[1].predict(X)) / 2
    assert np.array_equal(model.predict(X), expected)
    written = model.save(tmp_path)
    assert {"member_0/model.txt", "member_1/model.txt", "model.json"} <= set(written)
    again = load_model(tmp_path)  # through the families, by model.json
    assert isinstance(again, EnsembleModel) and [m.family for m in again.members] == [
        "lightgbm",
        "lightgbm",
    ]
    assert np.array_equal(again.predict(X), model.predict(X))
    assert package.find_pickles(tmp_path) == []
    linear = make_model("linear", BINARY)
    with pytest.raises(ModelError, match="different feature encodings"):
        EnsembleModel(BINARY, {}, 0, [members[0], linear])


def write_system(folder: Path, margin: float):
    """Imbalanced binary data: LightGBM plain and with balanced weights are both fitted."""
    rng = np.random.default_rng(3)
    n = 3000
    X = rng.normal(size=(n, 5))
    z = X[:, 0] + np.sin(2 * X[:, 1]) + X[:, 2] * X[:, 3] - 2.5
    df = pd.DataFrame(X, columns=list("abcde"))
    df["y"] = np.where(rng.random(n) < 1 / (1 + np.exp(-2 * z)), "yes", "no")
    df.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: ens\nproblem: {task: binary, target: y, positive_class: 'yes'}\n"
        "data: {source: d.csv, checks: {min_class_share: 0.2}}\n"
        "models: {candidates: [lightgbm]}\n"
        f"evaluation: {{ensemble: {{enabled: true, margin: {margin}}}}}\n"
    )
    spec._path = folder / "system.yaml"
    return spec, Workspace(folder / "ws")


@pytest.mark.parametrize("margin", [0.0, 0.05])
def test_train_keeps_the_ensemble_only_when_it_beats_the_best_by_the_margin(tmp_path, margin):
    spec, workspace = write_system(tmp_path, margin)
    result = train(spec, workspace, progress=False)
    decision = result.evaluation["ensemble"]
    assert decision["members"] == ["lightgbm", "lightgbm+balanced"]
    entry = result.entry("ensemble")
    singles = [result.entry(name).scores["valid"]["roc_auc"] for name in decision["members"]]
    assert entry.scores["valid"]["roc_auc"] == pytest.approx(decision["valid"])
    assert decision["valid"] > max(singles)  # on this data the average is better on valid
    assert result.registered, result.reasons
    loaded = package.load(result.package)  # replays the holdout through the loaded members
    if margin == 0.0:
        assert decision["kept"] and result.chosen == "ensemble"
        assert loaded.model.family == "ensemble" and len(loaded.model.members) == 2
        assert result.entry("ensemble").scores["test"]["roc_auc"] > 0.85
    else:  # the gain is well under 0.05
        assert not decision["kept"] and "by the margin 0.05" in decision["reason"]
        assert result.chosen == decision["best_single"] and loaded.model.family == "lightgbm"
        assert entry.scores["test"] is None  # never chosen, never tested


def test_no_ensemble_when_no_other_candidate_shares_the_featurizer(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})
    df["y"] = 2 * df["a"] - df["b"] + rng.normal(scale=0.5, size=400)
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: one\nproblem: {task: regression, target: y}\ndata: {source: d.csv}\n"
        "evaluation: {ensemble: {enabled: true}}\n"
    )
    spec._path = tmp_path / "system.yaml"
    result = train(spec, Workspace(tmp_path / "ws"), progress=False)
    assert result.registered
    assert not result.evaluation["ensemble"]["kept"]
    assert "shares" in result.evaluation["ensemble"]["reason"]
    assert all(e.name != "ensemble" for e in result.leaderboard)
