"""The CLI as a user runs it, on both bundled examples: init → validate → broken inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def mlsd(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `mlsd` command (python -m mlsd when the script is not on PATH)."""
    script = Path(sys.executable).with_name("mlsd")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mlsd"]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLSD_HOME", None)
    return subprocess.run(
        [*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=full_env
    )


def test_bikeshare_story(example):
    folder = example("bikeshare")
    # init infers a regression on the real data and writes a spec that loads
    init = mlsd(
        "init",
        "bikeshare.csv",
        "--target",
        "bikers",
        "--time",
        "day",
        "hr",
        "-o",
        "inferred.yaml",
        cwd=folder,
    )
    assert init.returncode == 0, init.stderr
    text = (folder / "inferred.yaml").read_text()
    assert "task: regression" in text and "time: [day, hr]" in text and "# " in text
    # the inferred spec keeps casual and registered: validation blocks on leakage
    leaky = mlsd("validate", "-c", "inferred.yaml", "--json", cwd=folder)
    assert leaky.returncode == 1, leaky.stderr
    report = json.loads(leaky.stdout)
    leaks = {a["column"] for a in report["anomalies"] if a["check"] == "leakage" and a["blocking"]}
    assert leaks == {"casual", "registered"}
    assert report["split"]["method"] == "time"
    # the committed spec excludes them: it passes, with seasonal drift as warnings
    ok = mlsd("validate", cwd=folder)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASSED" in ok.stdout and "split_drift" in ok.stdout
    saved = json.loads(
        (folder / ".mlsd" / "reports" / "bike-demand" / "validation.json").read_text()
    )
    assert saved["passed"] and "casual" not in saved["features"]
    snapshot = folder / ".mlsd" / "snapshots" / saved["snapshot"]
    assert (snapshot / "profile.json").exists() and (snapshot / "schema.json").exists()


def test_caravan_story(example):
    folder = example("caravan")
    init = mlsd(
        "init", "caravan.csv", "--target", "Purchase", "-o", "inferred.yaml", "--json", cwd=folder
    )
    assert init.returncode == 0, init.stderr
    text = (folder / "inferred.yaml").read_text()
    assert "task: binary" in text and "positive_class: 'Yes'" in text
    run = mlsd("validate", "-c", "inferred.yaml", cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "class_imbalance" in run.stdout
    committed = mlsd("validate", "--json", cwd=folder)
    assert committed.returncode == 0
    report = json.loads(committed.stdout)
    assert report["split"]["method"] == "stratified"
    shares = report["split"]["stratified"]["class_shares"]
    assert abs(shares["train"]["Yes"] - shares["test"]["Yes"]) < 0.01


def test_init_refuses_to_overwrite_and_names_bad_target(example):
    folder = example("caravan")
    assert mlsd("init", "caravan.csv", "--target", "Purchase", cwd=folder).returncode == 2
    bad = mlsd("init", "caravan.csv", "--target", "Purchace", "-o", "x.yaml", cwd=folder)
    assert bad.returncode == 2
    assert "did you mean 'Purchase'" in bad.stderr and "Traceback" not in bad.stderr


TARGETS = {
    "bikeshare": ("bikers", "bikeshare.csv", "temp"),
    "caravan": ("Purchase", "caravan.csv", "MAANTHUI"),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_broken_spec_exits_2_with_location(example, name):
    folder = example(name)
    target = TARGETS[name][0]
    spec = folder / "system.yaml"
    spec.write_text(spec.read_text().replace(f"  target: {target}", f"  traget: {target}"))
    run = mlsd("validate", cwd=folder)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if "traget" in text)
    assert f"system.yaml:{line}: problem.traget: unknown key 'traget'" in run.stderr
    assert "did you mean 'target'" in run.stderr
    as_json = mlsd("validate", "--json", cwd=folder)
    assert as_json.returncode == 2
    problems = json.loads(as_json.stdout)["error"]["problems"]
    assert any(p["key"] == "problem.traget" and p["line"] == line for p in problems)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_bad_csv_with_wrong_types(example, name):
    folder = example(name)
    _, data, column = TARGETS[name]
    lines = (folder / data).read_text().splitlines()
    header = [h.strip('"') for h in lines[0].split(",")]
    at = header.index(column)
    for i in (5, 50, 500):  # a few rows with words where numbers belong
        cells = lines[i].split(",")
        cells[at] = "warm"
        lines[i] = ",".join(cells)
    (folder / data).write_text("\n".join(lines) + "\n")
    run = mlsd("validate", "--json", cwd=folder)
    assert run.returncode == 1
    report = json.loads(run.stdout)
    [mismatch] = [a for a in report["anomalies"] if a["check"] == "type_mismatch"]
    assert mismatch["column"] == column and mismatch["evidence"]["count"] == 3
    assert mismatch["evidence"]["examples"] == ["warm"] and mismatch["blocking"]
    human = mlsd("validate", cwd=folder)
    assert human.returncode == 1 and "type_mismatch" in human.stdout and "FAILED" in human.stdout


def test_missing_data_file_is_a_clean_error(example):
    folder = example("caravan")
    (folder / "caravan.csv").unlink()
    run = mlsd("validate", cwd=folder)
    assert run.returncode == 2
    assert "does not exist" in run.stderr and "Traceback" not in run.stderr


def test_schema_command_prints_json_schema(tmp_path):
    run = mlsd("schema", cwd=tmp_path)
    assert run.returncode == 0
    schema = json.loads(run.stdout)
    assert "problem" in schema["properties"] and "ProblemSpec" in schema["$defs"]


@pytest.mark.parametrize("home", ["MLSD_HOME", "spec"])
def test_workspace_overrides(example, tmp_path, home):
    folder = example("caravan")
    env = {}
    if home == "MLSD_HOME":
        env["MLSD_HOME"] = str(tmp_path / "elsewhere")
        where = tmp_path / "elsewhere"
    else:
        spec = folder / "system.yaml"
        spec.write_text(
            spec.read_text().replace("name: caravan-offers", "name: caravan-offers\nworkspace: ws")
        )
        where = folder / "ws"
    script = Path(sys.executable).with_name("mlsd")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mlsd"]
    run = subprocess.run(
        [*cmd, "validate"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (where / "reports" / "caravan-offers" / "validation.json").exists()
    assert not (folder / ".mlsd").exists()
