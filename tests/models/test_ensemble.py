"""Ensembles: a weighted average of fitted candidates of any family (each reading its own
columns of a stacked featurizer), saved as its members' native files, weighted by greedy
selection and kept by ``mlsd train`` only when it beats the best single model beyond noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.models import package
from mlsd.models.base import FitData, ModelError, TaskInfo
from mlsd.models.ensemble import gain_interval, greedy_weights, weighted
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
    model = weighted(members, ["small", "large"], [0.25, 0.75], None, BINARY)
    expected = 0.25 * members[0].predict(X) + 0.75 * members[1].predict(X)
    assert np.allclose(model.predict(X), expected)
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


def test_members_of_two_families_read_their_own_columns_of_a_stacked_featurizer(tmp_path):
    from mlsd.features import Featurizer, frame_inputs
    from mlsd.features.stacked import featurizer_from_json, stack

    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"a": rng.normal(size=300), "c": rng.choice(list("xyz"), 300)})
    y = (frame["a"] + (frame["c"] == "x") + rng.normal(size=300) > 0.5).astype(float).to_numpy()
    columns = {"a": "numeric", "c": "categorical"}
    inputs = frame_inputs(frame, columns)
    codes = Featurizer(columns, encoding="codes").fit(inputs)
    onehot = Featurizer(columns, encoding="onehot").fit(inputs)
    both = stack([codes, onehot])
    assert stack([codes, codes]) is codes
    X = both.transform(inputs)
    assert X.shape[1] == len(codes.feature_names) + len(onehot.feature_names)
    spans = both.spans
    trees = make_model("lightgbm", BINARY, {"num_boost_round": 20}).fit(
        FitData(X[:, slice(*spans[0])], y, categorical=codes.categorical_indices)
    )
    linear = make_model("linear", BINARY).fit(FitData(X[:, slice(*spans[1])], y))
    model = weighted([trees, linear], ["lightgbm", "linear"], [0.6, 0.4], spans, BINARY)
    expected = 0.6 * trees.predict(codes.transform(inputs)) + 0.4 * linear.predict(
        onehot.transform(inputs)
    )
    assert np.allclose(model.predict(X), expected)
    model.save(tmp_path)
    assert np.array_equal(load_model(tmp_path).predict(X), model.predict(X))
    again = featurizer_from_json(both.to_json())
    assert np.array_equal(again.transform(inputs), X) and again.spans == spans


def test_greedy_selection_weighs_independent_errors_and_drops_a_useless_member():
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    one, two = y + rng.normal(size=2000), y + rng.normal(size=2000)  # equally good
    noise = 3 + rng.normal(size=2000)  # off by 3: any share of it hurts
    mse = lambda p: -float(np.mean((y - p) ** 2))  # noqa: E731  (higher is better)
    weights = greedy_weights([one, two, noise], mse, higher_is_better=True)
    assert weights[2] == 0 and abs(weights[0] - 0.5) <= 0.15
    assert greedy_weights([one, noise], mse, higher_is_better=True).tolist() == [1.0, 0.0]


def test_a_gain_within_noise_has_a_lower_bound_below_zero_across_many_draws():
    """Simulation: two predictions of equal quality (neither better in truth); the 90%
    lower bound of the paired bootstrap is above 0 in about a tenth of the draws at most."""
    from mlsd.evaluation.metrics import compute

    def rmse(y, p, rows):
        return compute("regression", y[rows], p[rows], names=["rmse"])["rmse"]

    above = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        y = rng.normal(size=300)
        a, b = y + rng.normal(size=300), y + rng.normal(size=300)
        _, low = gain_interval(y, a, b, rmse, higher_is_better=False, seed=seed)
        above += low > 0
    assert above <= 12, above  # 10% expected; 12 of 60 is beyond 2 standard errors of it
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    gain, low = gain_interval(
        y, y + 0.5 * rng.normal(size=300), y + rng.normal(size=300), rmse, False
    )
    assert gain > 0 and low > 0  # clearly better: beyond noise


def write_system(folder: Path, margin: float):
    """A linear trend plus a step: the linear model and the trees each miss half of it,
    so their blend beats either."""
    rng = np.random.default_rng(3)
    n = 1500
    X = rng.normal(size=(n, 4))
    df = pd.DataFrame(X, columns=list("abcd"))
    df["y"] = 2 * X[:, 0] + 1.5 * X[:, 1] + 2 * (X[:, 2] > 0) * (X[:, 3] > 0)
    df["y"] += rng.normal(scale=0.8, size=n)
    df.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: ens\nproblem: {task: regression, target: y}\n"
        "data: {source: d.csv}\n"
        f"evaluation: {{ensemble: {{enabled: true, margin: {margin}}}}}\n"
    )
    spec._path = folder / "system.yaml"
    return spec, Workspace(folder / "ws")


@pytest.mark.parametrize("margin", [0.0, 1.0])
def test_train_keeps_a_blend_across_families_only_when_it_beats_the_best(tmp_path, margin):
    spec, workspace = write_system(tmp_path, margin)
    result = train(spec, workspace, progress=False)
    decision = result.evaluation["ensemble"]
    assert set(decision["members"]) == {"lightgbm", "linear"}
    entry = result.entry("ensemble")
    singles = [result.entry(name).scores["valid"]["rmse"] for name in decision["members"]]
    assert entry.scores["valid"]["rmse"] == pytest.approx(decision["valid"])
    assert decision["valid"] < min(singles) and decision["gain_low"] > 0
    assert result.registered, result.reasons
    loaded = package.load(result.package)  # replays the holdout through the loaded members
    if margin == 0.0:
        assert decision["kept"] and result.chosen == "ensemble"
        assert loaded.model.family == "ensemble" and len(loaded.model.members) == 2
        assert loaded.featurizer.encoding == "stacked"
        best_alone = result.entry(decision["best_single"]).scores["valid"]["rmse"]
        assert result.entry("ensemble").scores["test"]["rmse"] < best_alone * 1.1
    else:  # the gain is well under a margin of 1.0 rmse
        assert not decision["kept"] and "margin 1" in decision["reason"]
        assert result.chosen == decision["best_single"] and loaded.model.family != "ensemble"
        assert entry.scores["test"] is None  # never chosen, never tested


def test_no_ensemble_with_a_single_candidate(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3))
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]})
    df["y"] = 2 * df["a"] - df["b"] + rng.normal(scale=0.5, size=400)
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: one\nproblem: {task: regression, target: y}\ndata: {source: d.csv}\n"
        "models: {candidates: [linear]}\nevaluation: {ensemble: {enabled: true}}\n"
    )
    spec._path = tmp_path / "system.yaml"
    result = train(spec, Workspace(tmp_path / "ws"), progress=False)
    assert result.registered
    assert not result.evaluation["ensemble"]["kept"]
    assert "no other candidate" in result.evaluation["ensemble"]["reason"]
    assert all(e.name != "ensemble" for e in result.leaderboard)
