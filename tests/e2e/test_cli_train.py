"""mlsd train / models / evaluate / promote / rollback on the bundled examples, as a user."""

from __future__ import annotations

import json

from test_cli_data import mlsd

from mlsd.cli import versions_table

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
    families = {"linear", "lightgbm", "random_forest"}
    assert {"baseline:random", "baseline:zero_rule", "baseline:stump", *families} == set(rows)
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
    assert len(models[0]["metrics"]) > 20  # --json keeps every metric
    assert models[0]["family"] and models[0]["primary_metric"] == "mae"
    table = mlsd("models", cwd=folder)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["version", "alias", "created", "(UTC)"]
    assert "test mae" in lines[0] and "{" not in table.stdout  # a table, not Python dicts
    assert lines[1].split()[:2] == ["1", "champion"] and lines[2].split()[:2] == ["2", "challenger"]
    assert f"{out['test']['mae']:.4g}" in lines[1] or f"{out['test']['mae']:.4g}" in lines[2]
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


def test_models_table_is_one_readable_line_per_version():
    """`mlsd models` printed each version as a Python dict of ~36 metrics."""
    metrics = {f"{split}.{m}": 0.5 for split in ("train", "valid", "test") for m in "abcdefghijkl"}
    rows = [
        {
            "version": 1,
            "aliases": ["champion"],
            "created_at": "2026-12-02T11:32:50.123+00:00",
            "package": "/elsewhere/packages/p-1",
            "family": "lightgbm",
            "primary_metric": "mae",
            "metrics": {**metrics, "test.mae": 3.14159},
        },
        {"version": 2, "aliases": [], "created_at": None, "package": None, "metrics": {}},
    ]
    lines = versions_table(rows, "mae")
    assert len(lines) == 3
    assert lines[0].split() == [
        "version", "alias", "created", "(UTC)", "family", "test", "mae", "package"
    ]  # fmt: skip
    assert lines[1].split() == [
        "1", "champion", "2026-12-02", "11:32", "lightgbm", "3.142", "/elsewhere/packages/p-1"
    ]  # fmt: skip
    assert lines[2].split() == ["2", "-", "-", "-", "-", "-"]
    mixed = versions_table([rows[0], {**rows[1], "primary_metric": "rmse"}], "mae")
    assert "test (primary metric)" in mixed[0] and "mae 3.142" in mixed[1]
