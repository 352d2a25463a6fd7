"""mlsd train / models / evaluate / promote / rollback on the bundled examples, as a user."""

from __future__ import annotations

import json

from test_cli_data import mlsd

JSON_KEYS = {
    "run_id",
    "model_version",
    "alias",
    "package",
    "task",
    "primary_metric",
    "chosen",
    "test",
    "baselines",
    "leaderboard",
}


def test_bikeshare_train_beats_baselines_and_registers(example):
    folder = example("bikeshare")
    run = mlsd("train", "--json", cwd=folder)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert set(out) >= JSON_KEYS
    assert out["model_version"] == 1 and out["alias"] == "champion"
    assert out["primary_metric"] == "mae"
    best_baseline = min(b["mae"] for b in out["baselines"].values())
    assert out["test"]["mae"] < best_baseline
    rows = {r["name"]: r for r in out["leaderboard"]}
    assert {"baseline:random", "baseline:zero_rule", "baseline:stump", "linear", "lightgbm"} == set(
        rows
    )
    for row in rows.values():
        assert row["train"] and row["valid"]
        assert (row["test"] is not None) == (row["kind"] == "baseline" or row["chosen"])
    # the human leaderboard
    again = mlsd("train", cwd=folder)
    assert again.returncode == 0, again.stderr
    assert "registered version 2 as challenger" in again.stdout
    assert "baseline:zero_rule" in again.stdout
    # the registry, as a user sees it
    models = json.loads(mlsd("models", "--json", cwd=folder).stdout)["versions"]
    assert [m["version"] for m in models] == [1, 2]
    promote = mlsd("promote", "2", "--reason", "newer", cwd=folder)
    assert promote.returncode == 0, promote.stderr
    history = json.loads(mlsd("models", "--history", "--json", cwd=folder).stdout)["history"]
    assert history[-1]["version"] == 2
    back = mlsd("rollback", cwd=folder)
    assert back.returncode == 0, back.stderr
    evaluated = mlsd("evaluate", "--model", "champion", "--json", cwd=folder)
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(evaluated.stdout)
    assert scores["package"].endswith(out["package"].rsplit("/", 1)[-1])
    assert abs(scores["metrics"]["mae"] - out["test"]["mae"]) < 1e-9


def test_caravan_train_and_evaluate_on_a_file(example):
    folder = example("caravan")
    run = mlsd("train", "--json", cwd=folder)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["primary_metric"] == "pr_auc"
    best = max(b["pr_auc"] for b in out["baselines"].values())
    assert out["test"]["pr_auc"] > best
    evaluated = mlsd("evaluate", "--model", "1", "--data", "caravan.csv", cwd=folder)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "5,822 rows" in evaluated.stdout and "pr_auc" in evaluated.stdout


def test_unknown_model_reference_is_a_clean_error(example):
    folder = example("caravan")
    run = mlsd("evaluate", "--model", "champion", cwd=folder)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
