"""Alerts reach the event log once and a webhook on 127.0.0.1; a dead webhook never crashes."""

from __future__ import annotations

import socket
import time

import pytest

from mlsd.events import EventLog
from mlsd.monitoring.alerts import DRIFT_ALERT, KINDS, QUALITY_ALERT, Alert, publish
from webhook import Receiver


def alert(check: str = "feature_drift", subject: str = "temp", start: float = 0.0) -> Alert:
    return Alert(
        kind=DRIFT_ALERT if check.endswith("drift") else QUALITY_ALERT,
        check=check,
        subject=subject,
        message=f"feature {subject} drifted",
        model_version="2",
        window={"index": 0, "start_ts": start, "end_ts": start + 86400, "n": 500},
        evidence={"statistic": 0.3, "p_adjusted": 1e-9, "distance": 0.3, "n_current": 500},
    )


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_keys_identify_an_alert_across_runs():
    assert alert().key == alert().key
    assert alert().key != alert(start=86400).key  # another window
    assert alert().key != alert(subject="atemp").key
    assert alert().key != alert("missing_rate").key


def test_each_alert_is_recorded_once_and_sent_once(tmp_path, receiver):
    events = EventLog(tmp_path / "events.sqlite")
    alerts = [alert(), alert(subject="atemp"), alert("missing_rate", "hum")]
    first = publish(alerts, events=events, system="bikes", webhook=receiver.url)
    assert first == {
        "recorded": 3,
        "already_recorded": 0,
        "webhook": {"url": receiver.url, "sent": 3, "failed": 0, "error": None},
    }
    rows = events.read(kind=list(KINDS))
    assert [r["kind"] for r in rows] == [DRIFT_ALERT, DRIFT_ALERT, QUALITY_ALERT]
    assert rows[0]["system"] == "bikes" and rows[0]["model_version"] == "2"
    assert rows[0]["evidence"]["evidence"]["p_adjusted"] == 1e-9
    assert rows[0]["evidence"]["window"]["n"] == 500
    assert [b["subject"] for b in receiver.bodies] == ["temp", "atemp", "hum"]
    assert receiver.bodies[0]["system"] == "bikes"
    assert receiver.bodies[0]["key"] == alerts[0].key

    again = publish(
        [*alerts, alert(start=86400)], events=events, system="bikes", webhook=receiver.url
    )
    assert again["recorded"] == 1 and again["already_recorded"] == 3
    assert again["webhook"]["sent"] == 1 and len(receiver.bodies) == 4
    # another system's identical alert is its own
    other = publish([alert()], events=events, system="cars")
    assert other == {"recorded": 1, "already_recorded": 0, "webhook": None}


def test_a_dead_or_failing_webhook_is_reported_not_raised(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    events = EventLog(tmp_path / "events.sqlite")
    started = time.perf_counter()
    out = publish(
        [alert(), alert(subject="hum")], events=events, system="s", webhook=dead, timeout=1.0
    )
    assert time.perf_counter() - started < 5
    assert out["recorded"] == 2  # the event log has them whatever the webhook does
    hook = out["webhook"]
    assert hook["sent"] == 0 and hook["failed"] == 2 and "Connection" in hook["error"]

    failing = Receiver(status=500)
    try:
        out = publish([alert(subject="x")], events=events, system="s", webhook=failing.url)
    finally:
        failing.close()
    assert out["webhook"]["failed"] == 1 and "500" in out["webhook"]["error"]
