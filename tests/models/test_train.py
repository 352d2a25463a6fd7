"""mlsd train on generated and bundled data: selection, gate, determinism, quality."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.models.train import TrainError, train
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace


def make_system(tmp_path, df: pd.DataFrame, problem: str, extra: str = ""):
    df.to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(f"name: t\nproblem: {problem}\ndata:\n  source: d.csv\n{extra}")
    spec._path = tmp_path / "system.yaml"
    (tmp_path / "system.yaml").write_text("# written by the test\n")
    return spec, Workspace(tmp_path / "ws")


def linear_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = 3 * x[:, 0] - 2 * x[:, 1] + 0.5 * x[:, 2] + rng.normal(scale=0.5, size=n)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "d": x[:, 3], "y": y})


def test_linear_signal_is_found_by_the_linear_model(tmp_path):
    spec, ws = make_system(tmp_path, linear_frame(), "{task: regression, target: y}")
    result = train(spec, ws, progress=False)
    assert result.chosen == "linear"
    assert result.registered and result.model_version == 1 and result.alias == "champion"
    chosen = result.entry("linear").scores
    baselines = [e for e in result.leaderboard if e.kind == "baseline"]
    assert {e.name for e in baselines} == {
        "baseline:random",
        "baseline:zero_rule",
        "baseline:stump",
    }
    assert all(chosen["test"]["rmse"] < e.scores["test"]["rmse"] for e in baselines)
    assert result.entry("lightgbm").scores["test"] is None  # not chosen: never sees test
    assert chosen["test"]["r2"] > 0.9
    # the registered package: verified on load, no pickle anywhere, replays its holdout
    from mlsd.models import package

    loaded = package.load(result.package)
    assert package.find_pickles(loaded.folder) == []
    names = {p.name for p in loaded.folder.rglob("*") if p.is_file()}
    assert {
        "manifest.json",
        "signature.json",
        "featurizer.json",
        "metrics.json",
        "holdout.parquet",
        "coefficients.json",
        "profile.json",
    } <= names
    assert loaded.manifest["meta"]["snapshot"] == result.snapshot
    assert [i["name"] for i in loaded.signature["inputs"]] == ["a", "b", "c", "d"]


def test_gate_refuses_a_model_that_does_not_beat_baselines_by_the_margin(tmp_path):
    spec, ws = make_system(
        tmp_path,
        linear_frame(),
        "{task: regression, target: y}",
        "models: {gate: {beat_baselines_by: 100}}\n",
    )
    result = train(spec, ws, progress=False)
    assert not result.registered and result.model_version is None
    assert "does not beat the best baseline" in result.reasons[0]
    assert not (ws.root / "packages").exists() or not any((ws.root / "packages").iterdir())


def test_guardrail_failure_blocks_registration(tmp_path):
    spec, ws = make_system(
        tmp_path,
        linear_frame(),
        "{task: regression, target: y}",
        "metrics: {primary: mae, guardrails: {r2: {min: 0.999}}}\n",
    )
    result = train(spec, ws, progress=False)
    assert not result.registered
    assert any("guardrail r2" in r for r in result.reasons)


def test_blocking_validation_stops_training(tmp_path):
    df = linear_frame()
    df["leak"] = df["y"] * 2
    spec, ws = make_system(tmp_path, df, "{task: regression, target: y}")
    with pytest.raises(TrainError, match="leakage on leak"):
        train(spec, ws, progress=False)


def test_same_spec_data_and_seed_give_byte_identical_models(tmp_path):
    rng = np.random.default_rng(1)
    df = linear_frame()
    df["y"] = np.where(df["a"] * df["b"] + rng.normal(scale=0.3, size=len(df)) > 0, "p", "n")
    bytes_seen = []
    for run in ("one", "two"):
        folder = tmp_path / run
        folder.mkdir()
        spec, ws = make_system(
            folder, df, "{task: binary, target: y}", "models: {candidates: [lightgbm]}\n"
        )
        result = train(spec, ws, progress=False)
        assert result.registered
        bytes_seen.append(
            (next(iter((ws.root / "packages").iterdir())) / "model" / "model.txt").read_bytes()
        )
    assert bytes_seen[0] == bytes_seen[1]


def test_breast_cancer_reaches_auc_098(tmp_path):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    df = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    df["target"] = np.where(df["target"] == 1, "benign", "malignant")
    spec, ws = make_system(
        tmp_path, df, "{task: binary, target: target, positive_class: malignant}"
    )
    result = train(spec, ws, progress=False)
    assert result.registered
    assert result.to_dict()["test"]["roc_auc"] >= 0.98


def test_task_info_asks_the_task():
    from mlsd.models.train import task_info

    def spec_for(task):
        group = ", group: q" if task == "ranking" else ""
        return parse_spec(
            f"name: t\nproblem: {{task: {task}, target: y{group}}}\ndata: {{source: d.csv}}"
        )

    assert task_info(spec_for("regression"), []).n_classes == 0
    assert task_info(spec_for("multiclass"), ["a", "b", "c"]).n_classes == 3
    assert task_info(spec_for("binary"), ["n", "p"]).n_classes == 2
    assert task_info(spec_for("ranking"), []).definition.grouped


def test_the_leaderboard_ranks_by_the_metric_direction_and_unscored_last():
    from mlsd.evaluation.metrics import get_metric
    from mlsd.models.leaderboard import Entry, table_lines

    def entry(name, rmse):
        scores = {"train": None, "valid": {"rmse": rmse}, "test": None}
        return Entry(name=name, kind="candidate", family=name, details={}, scores=scores)

    rows = [entry("a", 2.0), entry("b", 1.0), entry("c", None)]
    ranked = sorted(rows, key=lambda e: e.rank(get_metric("rmse"), "valid"), reverse=True)
    assert [e.name for e in ranked] == ["b", "a", "c"]
    rows[1].chosen = True
    lines = table_lines(rows, "rmse")
    assert lines[2].startswith("* b") and lines[3].split()[1:4] == ["-", "-", "-"]


def test_the_gate_gives_every_reason_in_order():
    from mlsd.evaluation.metrics import get_metric
    from mlsd.models.gate import beats, gate_failures
    from mlsd.models.leaderboard import Entry

    mae = get_metric("mae")
    assert beats(mae, 1.0, 2.0, 0.0) and not beats(mae, 2.0, 2.0, 0.0)  # a tie does not beat
    assert beats(mae, 1.5, 2.0, 0.5) and not beats(mae, None, 2.0, 0.0)
    spec = parse_spec(
        "name: t\nproblem: {task: regression, target: y}\ndata: {source: d.csv}\n"
        "metrics: {primary: mae, guardrails: {r2: {min: 0.9}}}\n"
    )

    def entry(name, kind, mae_, r2):
        scores = {"train": None, "valid": None, "test": {"mae": mae_, "r2": r2}}
        return Entry(name=name, kind=kind, family=name, details={}, scores=scores)

    chosen = entry("linear", "candidate", 1.0, 0.5)
    board = [entry("baseline:mean", "baseline", 1.2, 0.0), chosen]
    behavioral = [
        {
            "name": "up",
            "kind": "directional",
            "blocking": True,
            "passed": False,
            "n": 10,
            "n_failed": 3,
            "mean_change": -0.5,
            "direction": "up",
        },
        {"name": "same", "kind": "invariance", "blocking": False, "passed": False, "n": 10},
    ]
    assert gate_failures(spec, mae, board, chosen, behavioral) == [
        "guardrail r2 >= 0.9 failed: 0.5 on test",
        "blocking behavioural test 'up' (directional) failed on 3 of 10 validation rows; "
        "mean change -0.5 where up was declared",
    ]
    spec.models.gate.beat_baselines_by = 0.5
    reasons = gate_failures(spec, mae, board, chosen, None)
    assert reasons[0].startswith("linear scores mae 1 on test, which does not beat the best")
    assert len(reasons) == 2


def test_models_params_fix_a_family_parameter_for_every_trial(tmp_path):
    extra = (
        "models:\n  candidates: [lightgbm]\n  params: {lightgbm: {num_leaves: 5}}\n"
        "  tuning: {budget_s: 2, max_trials: 4}\n"
    )
    spec, ws = make_system(tmp_path, linear_frame(), "{task: regression, target: y}", extra)
    result = train(spec, ws, progress=False)
    details = result.entry("lightgbm").details
    assert details["params"]["num_leaves"] == 5
    assert details["trials"] >= 2  # searched, but never num_leaves
