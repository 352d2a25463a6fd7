"""make demo's story holds: leakage blocked then excluded, both examples validated."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_demo_tells_the_story(tmp_path):
    env = {**os.environ, "MLSD_HOME": str(tmp_path / "ws")}
    run = subprocess.run(
        [sys.executable, "-m", "mlsd.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "leakage" in out and "BLOCKED" in out
    assert out.count("→ passed") == 2
    assert "class_imbalance" in out
    assert "identical to the server's answers: True" in out
    assert "184 requests, 4,395 predictions" in out
    # step 9: the served second half drifts on temperature, and so do the predictions
    drifted = out.split("the latest window drifted on ")[1].split(";")[0].split(", ")
    assert {"temp", "atemp"} <= set(drifted)
    assert "the predictions drifted; exit code 1" in out
    assert (tmp_path / "ws" / "reports" / "bike-demand-h1" / "monitoring.html").exists()
    assert (
        tmp_path / "ws" / "reports" / "bike-demand" / "validation-without-exclusions.json"
    ).exists()
    assert (tmp_path / "ws" / "reports" / "bike-demand" / "featurizer-codes.json").exists()
