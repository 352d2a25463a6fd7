"""The loop itself: iterations of monitor → retrain --if-needed, a failing iteration
reported while the loop goes on, SIGTERM ending it between iterations, the CLI's lines
and JSON objects. Real parts: a trained champion, a real prediction log, MLflow on SQLite."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from loop_helpers import champion, frame, serve, system

from mlsd.cli import main
from mlsd.errors import MlsdError
from mlsd.loop.run import run_iteration, run_loop
from mlsd.models import aliases

EXTRA = "retraining: {triggers: [performance], window: {rows: 500}}\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A champion with no traffic yet: the first iteration has nothing to monitor."""
    spec, ws = champion(tmp_path_factory.mktemp("run"), frame(1000, 0), EXTRA)
    quiet = run_iteration(spec, ws, index=1)
    # then the world changes: traffic with a new concept, labelled, answered badly (0.0)
    serve(ws, frame(600, 1, coef=(-3.0, 2.0, 0.5, 1.0)))
    seen: list = []
    loop = run_loop(spec, ws, interval_s=0.01, max_iterations=2, on_iteration=seen.append)
    return {"spec": spec, "ws": ws, "quiet": quiet, "loop": loop, "seen": seen}


def test_nothing_to_monitor_is_a_state_not_a_failure(served):
    quiet = served["quiet"]
    assert quiet.error is None and quiet.exit_code == 0
    assert quiet.monitor["ran"] is False and "no predictions" in quiet.monitor["reason"]
    assert quiet.retrain["needed"] is False
    (trigger,) = quiet.retrain["triggers"]
    assert trigger["name"] == "performance" and not trigger["fired"]
    assert trigger["reason"].startswith("not monitored")
    assert "nothing to monitor yet" in quiet.line() and "not needed" in quiet.line()


def test_a_performance_drop_retrains_once_then_the_new_champion_is_left_alone(served):
    first, second = served["loop"]
    assert served["seen"] == served["loop"]  # each iteration handed over as it ended
    assert [first.index, second.index] == [1, 2]
    assert first.monitor["ran"] and any(
        a["kind"] == "performance_alert" for a in first.monitor["latest_alerts"]
    )
    assert first.retrain["promoted"] and first.exit_code == 0
    assert first.retrain["challenger_version"] == 2
    assert "retrain (performance): challenger v2" in first.line() and "PROMOTED" in first.line()
    # the next iteration monitors the new champion: it served nothing yet, so no trigger
    assert second.error is None and second.retrain["needed"] is False
    assert aliases.read(served["ws"].root, served["spec"].name)["aliases"]["champion"] == 2
    json.dumps([first.to_dict(), second.to_dict()])  # --json prints these as they are


def test_a_failing_iteration_is_reported_and_the_loop_goes_on(tmp_path):
    spec, ws = system(tmp_path / "s", frame(200, 0), EXTRA)  # never trained: no champion
    done = run_loop(spec, ws, interval_s=0.01, max_iterations=3)
    assert [it.index for it in done] == [1, 2, 3]
    for it in done:
        assert it.error["type"] == "RetrainDataError" and "no champion" in it.error["message"]
        assert it.error["hint"] and it.exit_code == 2
        assert "FAILED: cannot retrain" in it.line()


def test_a_stop_ends_the_loop_between_iterations(tmp_path):
    spec, ws = system(tmp_path / "s", frame(200, 0), EXTRA)
    stop = threading.Event()
    done = run_loop(spec, ws, interval_s=60, on_iteration=lambda it: stop.set(), stop=stop)
    assert len(done) == 1  # the 60 s wait was cut short by the stop


def test_a_zero_interval_without_a_bound_is_refused(tmp_path):
    spec, ws = system(tmp_path / "s", frame(200, 0), EXTRA)
    with pytest.raises(MlsdError, match="interval must be positive"):
        run_loop(spec, ws, interval_s=0)


def test_cli_bad_interval_is_exit_2(tmp_path, capsys):
    system(tmp_path / "s", frame(200, 0), EXTRA)
    code = main(["loop", "-c", str(tmp_path / "s" / "system.yaml"), "--interval", "soon"])
    assert code == 2
    assert "bad loop interval" in capsys.readouterr().err


def test_cli_sigterm_stops_the_loop_after_the_iteration(tmp_path):
    system(tmp_path / "s", frame(200, 0), EXTRA)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlsd", "loop", "-c", "system.yaml", "--interval", "1h"],
        cwd=tmp_path / "s",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    header = proc.stdout.readline()
    assert "every 1h" in header
    first = proc.stdout.readline()  # the first iteration ended; the loop now waits an hour
    assert "#1" in first and "FAILED" in first
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert time.time() - started < 10 and out == ""  # no second iteration
