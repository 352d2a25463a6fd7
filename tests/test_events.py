"""The append-only event log: order, filters, evidence round trip, append-only, concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from mlsd.events import EventLog, EventLogError, jsonable


@pytest.fixture
def log(tmp_path) -> EventLog:
    return EventLog(tmp_path / "ws" / "events.sqlite")


def test_append_and_read_in_order(log):
    ids = [
        log.append("trained", "run a", system="s"),
        log.append("registered", "version 1", system="s", model_version=1),
        log.append("promoted", "version 2", system="s", model_version="2"),
    ]
    assert ids == sorted(ids) and len(set(ids)) == 3
    events = log.read()
    assert [e["id"] for e in events] == ids
    assert [e["kind"] for e in events] == ["trained", "registered", "promoted"]
    assert [e["model_version"] for e in events] == [None, "1", "2"]
    assert events[0]["evidence"] == {} and events[0]["system"] == "s"
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps) and all(ts.endswith("+00:00") for ts in stamps)


def test_filters(log):
    for i in range(5):
        log.append("drift_alert" if i % 2 else "trained", f"event {i}", system="a" if i else "b")
    assert [e["message"] for e in log.read(kind="drift_alert")] == ["event 1", "event 3"]
    assert len(log.read(kind=["drift_alert", "trained"])) == 5
    assert [e["message"] for e in log.read(limit=2)] == ["event 3", "event 4"]  # latest, in order
    assert [e["message"] for e in log.read(system="b")] == ["event 0"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert log.read(since=future) == []
    assert len(log.read(since="2000-01-01")) == 5  # naive dates count as UTC
    middle = log.read()[2]["ts"]
    assert [e["message"] for e in log.read(since=middle)] == ["event 2", "event 3", "event 4"]
    with pytest.raises(EventLogError, match="not an ISO-8601 time"):
        log.read(since="yesterday")


def test_evidence_round_trip(log):
    evidence = {
        "psi": np.float64(0.31),
        "counts": np.array([1, 2, 3]),
        "undefined": float("nan"),
        "nested": {"ok": True, "path": Path("/tmp/x"), "when": datetime(2024, 5, 1, tzinfo=UTC)},
        "tags": ("a", "b"),
    }
    log.append("drift_alert", "psi above 0.2", system="s", evidence=evidence)
    (event,) = log.read()
    assert event["evidence"] == {
        "psi": 0.31,
        "counts": [1, 2, 3],
        "undefined": None,
        "nested": {"ok": True, "path": "/tmp/x", "when": "2024-05-01T00:00:00+00:00"},
        "tags": ["a", "b"],
    }
    assert jsonable({"x": object()})["x"].startswith("<object")
    with pytest.raises(TypeError):
        jsonable({"x": object()}, strict=True)


def test_the_log_is_append_only_and_in_wal_mode(log):
    log.append("trained", "x", system="s")
    conn = sqlite3.connect(log.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET message = 'rewritten'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
    finally:
        conn.close()
    assert log.read()[0]["message"] == "x"


def test_reopening_keeps_events(log):
    log.append("trained", "first", system="s")
    again = EventLog(log.path)
    again.append("trained", "second", system="s")
    assert [e["message"] for e in log.read()] == ["first", "second"]


def test_bad_inputs(tmp_path, log):
    with pytest.raises(EventLogError, match="not a name"):
        log.append("", "x", system="s")
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(EventLogError, match="cannot open the event log"):
        EventLog(tmp_path / "garbage.sqlite")


def _writer(path: str, name: str, count: int) -> None:
    log = EventLog(Path(path))
    for i in range(count):
        log.append("trained", f"{name}-{i}", system=name, evidence={"i": i})


def test_concurrent_appends_from_two_processes_all_land(tmp_path):
    path = tmp_path / "events.sqlite"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(path), n, 60)) for n in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    events = EventLog(path).read()
    assert len(events) == 120
    for name in ("a", "b"):
        mine = [e["evidence"]["i"] for e in events if e["system"] == name]
        assert mine == list(range(60))  # each writer's events in its own order
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
