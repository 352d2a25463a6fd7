"""Retrain triggers: each judged with its reason and evidence, fired or not."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from loop_helpers import champion, frame, serve, system

from mlsd.errors import SpecError
from mlsd.loop.triggers import evaluate
from mlsd.models import aliases
from mlsd.spec import parse_spec
from mlsd.workspace import write_json

DAY = 86400.0


def _fake_champion(ws, name: str, created: float) -> None:
    """A published champion whose package says when it was built (all triggers read)."""
    folder = ws.folder("packages") / "p1"
    write_json(
        folder / "manifest.json",
        {"created_at": datetime.fromtimestamp(created, UTC).isoformat()},
    )
    aliases.publish(ws.root, name, {"champion": 1}, {1: str(folder)})


def test_schedule_fires_when_the_champion_is_old_enough(tmp_path):
    spec, ws = system(tmp_path, frame(50, 0), "retraining: {triggers: [{schedule: 7d}]}\n")
    created = time.time() - 10 * DAY
    _fake_champion(ws, spec.name, created)
    (young,) = evaluate(spec, ws, now=created + 3 * DAY)
    assert not young["fired"] and "3.0 days old, less than 7d" in young["reason"]
    (old,) = evaluate(spec, ws, now=created + 8 * DAY)
    assert old["fired"] and old["evidence"]["age_days"] == pytest.approx(8)


def test_new_labels_counts_labels_that_arrived_after_the_champion(tmp_path):
    spec, ws = system(tmp_path, frame(50, 0), "retraining: {triggers: [{new_labels: 30}]}\n")
    serve(ws, frame(20, 1))  # labelled before the champion: not new
    _fake_champion(ws, spec.name, time.time())
    serve(ws, frame(25, 2))
    serve(ws, frame(10, 3), labelled=False)  # served, no label yet
    (quiet,) = evaluate(spec, ws)
    assert not quiet["fired"] and quiet["evidence"]["new_labels"] == 25
    serve(ws, frame(5, 4))
    (fired,) = evaluate(spec, ws)
    assert fired["fired"] and "30 labelled rows arrived" in fired["reason"]


def test_drift_and_performance_read_the_champions_latest_window(tmp_path):
    extra = (
        "monitoring: {window: {rows: 300}, log_to_mlflow: false}\n"
        "retraining: {triggers: [drift, performance]}\n"
    )
    spec, ws = champion(tmp_path, frame(1500, 0), extra)
    quiet = evaluate(spec, ws)
    assert [t["fired"] for t in quiet] == [False, False]
    assert "no predictions" in quiet[0]["reason"]  # no traffic yet: nothing to judge
    serve(ws, frame(300, 1), predict=True)
    assert [t["fired"] for t in evaluate(spec, ws)] == [False, False]
    shifted = frame(300, 2, coef=(-3.0, 2.0, 0.5, 1.0))
    shifted["a"] += 3.0
    serve(ws, shifted, predict=True)
    drift, performance = evaluate(spec, ws)
    assert drift["fired"] and "drift alert(s)" in drift["reason"]
    assert "in the champion's latest window" in drift["reason"]
    assert any(a["subject"] == "a" for a in drift["evidence"]["alerts"])
    assert performance["fired"] and performance["evidence"]["alerts"][0]["kind"] == (
        "performance_alert"
    )


def test_unknown_triggers_are_spec_errors_with_a_suggestion():
    base = "name: x\nproblem: {task: regression, target: y}\ndata: {source: a.csv}\n"
    with pytest.raises(SpecError, match="unknown trigger 'shedule' — did you mean 'schedule'"):
        parse_spec(base + "retraining: {triggers: [{shedule: 7d}]}\n")
    with pytest.raises(SpecError, match="needs a positive number of rows"):
        parse_spec(base + "retraining: {triggers: [{new_labels: many}]}\n")
    with pytest.raises(SpecError, match=r"one of \{expanding: true\}"):
        parse_spec(base + "retraining: {window: {sliding: 9d, rows: 10}}\n")


def _alert(kind: str, subject: str, version: str = "1"):
    from mlsd.monitoring.alerts import Alert

    window = {"index": 0, "start": "x", "end": "y", "start_ts": 1.0, "end_ts": 2.0, "n": 500}
    return Alert(kind, "check", subject, f"{subject} moved", version, window)


def test_an_alert_trigger_says_how_many_of_the_windows_alerts_it_counts(tmp_path):
    """ "ALERTS in the latest window (7)" stood next to "trigger drift: FIRED (6 alert(s))":
    the trigger counts its own kind only, and now says of how many."""
    from mlsd.monitoring.result import MonitorResult

    spec, ws = system(tmp_path, frame(50, 0), "retraining: {triggers: [drift, performance]}\n")
    _fake_champion(ws, spec.name, time.time())
    latest = [_alert("drift_alert", f"f{i}") for i in range(6)]
    latest += [_alert("quality_alert", "missing"), _alert("drift_alert", "g", version="2")]
    result = MonitorResult({"models": []}, latest, latest)
    drift, performance = evaluate(spec, ws, monitor_result=result)
    assert drift["fired"] and drift["reason"].startswith(
        "6 drift alert(s) of the 7 alert(s) in the champion's latest window"
    )
    assert drift["evidence"]["alerts_in_window"] == 7 and len(drift["evidence"]["alerts"]) == 6
    assert not performance["fired"] and performance["evidence"]["alerts_in_window"] == 7
