"""make demo's story holds: leakage blocked then excluded, both examples validated, and the
closed loop on bikeshare: drift flagged, a retrain handed to a canary that promotes it on
live traffic, the server following it, and the error on October-December lower for the new
champion than for the old."""

from __future__ import annotations

import os
import re
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
        timeout=420,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "leakage" in out and "BLOCKED" in out
    assert out.count("→ passed") == 2
    assert "class_imbalance" in out
    # step 7: July-September through the real server, nothing failed
    assert "92 requests, 2,192 predictions" in out and "0 failed;" in out
    # step 9: the served summer drifts on temperature; the drift trigger fires
    drifted = out.split("the latest window drifted on ")[1].split(";")[0].split(", ")
    assert {"temp", "atemp"} <= set(drifted)
    assert "trigger drift: FIRED" in out
    # the gate: the challenger beats the champion on the fresh holdout, with a CI below 0
    gate = re.search(r"MAE champion \(version (\d+)\) ([\d.]+), challenger \(version (\d+)", out)
    assert gate, out
    old, new = gate.group(1), gate.group(3)
    assert re.search(r"difference -[\d.]+, 95% CI \[-[\d.]+, -[\d.]+\]", out)
    assert f"version {new} is handed to the canary rollout" in out
    # step 8: the canary walks its steps on live traffic and promotes the new version
    decisions = re.findall(r"\d\d (?:Oct|Nov|Dec)  (advance to \d+%|PROMOTED|[A-Z_]+:)", out)
    assert decisions == ["advance to 50%", "advance to 100%", "PROMOTED"], out
    promoted = re.search(r"PROMOTED: MAE difference \+[\d.]+ .*CI \[([-+][\d.]+), ", out)
    assert promoted and float(promoted.group(1)) > 0, out  # shown better, not only not worse
    assert f"version {new} is the champion, the routing table is gone" in out
    # October-December: both versions answered during the canary, then only the new one
    served = re.search(
        rf"2,203 requests, 2,203 predictions, answered by version {old} \(([\d,]+)\), "
        rf"version {new} \(([\d,]+)\); 0 failed \(0 in the whole replay\)",
        out,
    )
    assert served, out
    assert int(served.group(2).replace(",", "")) > int(served.group(1).replace(",", ""))
    # the error drops on the following months, measured on the same rows for both versions
    before, after = map(
        float, re.search(r"MAE ([\d.]+), the new \(version \d+\) ([\d.]+)", out).groups()
    )
    assert after < before * 0.9, (before, after)
    assert f"old champion (version {old})" in out
    assert f"batch scores of version {new} are identical to the server's answers: True" in out
    assert f"mlsd ui --workspace {tmp_path / 'ws'}" in out  # where to look next
    if "user 196's top 5" in out:  # the recommender shares the workspace: its explorer
        assert "list: http://127.0.0.1:8080/systems/movielens-recs/explore?user=196" in out
    reports = tmp_path / "ws" / "reports"
    assert (reports / "bike-demand-h1" / "monitoring.html").exists()
    assert (reports / "bike-demand-h1" / "retrain.html").exists()
    assert list((reports / "bike-demand-h1").glob("rollout-*-canary-v*.html"))
    assert (reports / "bike-demand" / "validation-without-exclusions.json").exists()
    assert (reports / "bike-demand" / "featurizer-codes.json").exists()
    # step 3 on MovieLens 100k (make test installs the recbole wheel): the gate is honest
    rec = out.split("MovieLens 100k as a recommender")[1]
    valid = {
        name: float(v)
        for name, v in re.findall(r"^\s+(popularity|itemknn|ease|als|funnel)\s+([\d.]+)", rec, re.M)
    }
    assert set(valid) == {"popularity", "itemknn", "ease", "als", "funnel"}, rec
    kept = re.search(r"(\w+) is kept|the funnel beats", rec)
    best = max(valid, key=valid.get)
    assert kept and (kept.group(1) == best if kept.group(1) else best == "funnel"), rec
    assert "candidate recall@100 on test" in rec and "user 196's top 5: " in rec
    assert (reports / "movielens-recs" / "evaluation.html").exists()
