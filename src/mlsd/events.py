"""The append-only event log: every decision the system takes, one row with its evidence.

Trained, registered, promoted, rolled back, drift alert, retrain triggered: each is one row of
``events`` in ``<workspace>/events.sqlite`` (stdlib ``sqlite3``, WAL mode so readers never
block the writer). Each append is one transaction, so a crash leaves the whole event or none;
triggers refuse UPDATE and DELETE, so the log is append-only for anyone using SQL too.
This module imports only the standard library: the serving path may write events.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

from mlsd.errors import MlsdError
from mlsd.timestamps import utc

FILE_NAME = "events.sqlite"  # beside mlflow.db in the workspace

# The kinds mlsd writes; other kinds are accepted (the log records, it does not judge).
TRAINED = "trained"
REGISTERED = "registered"
PROMOTED = "promoted"
ROLLED_BACK = "rolled_back"
DRIFT_ALERT = "drift_alert"
RETRAIN_TRIGGERED = "retrain_triggered"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    system TEXT NOT NULL,
    model_version TEXT NULL,
    message TEXT NOT NULL,
    evidence TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind_ts ON events (kind, ts);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
"""
_BUSY_TIMEOUT_S = 30.0  # concurrent writers (trainer, server, monitor) wait instead of failing


class EventLogError(MlsdError):
    """The event log cannot be opened, written or read."""

    headline = "event log error"


def jsonable(obj: Any, *, strict: bool = False) -> Any:
    """A strict-JSON copy of ``obj``: numpy scalars and arrays become Python numbers and
    lists, NaN and infinities become None, datetimes ISO strings. Other objects become their
    ``str`` (evidence is kept whatever it is), or with ``strict`` raise TypeError."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v, strict=strict) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj, key=str) if isinstance(obj, set | frozenset) else obj
        return [jsonable(v, strict=strict) for v in items]
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # numpy scalar or array, duck-typed
        return jsonable(obj.tolist(), strict=strict)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if strict:
        raise TypeError(f"{type(obj).__name__} value {obj!r} is not JSON")
    return str(obj)


def utc_now() -> str:
    """The current time as a UTC ISO-8601 string with microseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _normalize_ts(value: str | datetime) -> str:
    """``value`` in the log's own timestamp form, so text comparison is time comparison."""
    try:
        return utc(value).isoformat(timespec="microseconds")
    except ValueError as exc:
        raise EventLogError(
            f"since={value!r} is not an ISO-8601 time",
            hint="pass e.g. '2024-05-01' or '2024-05-01T12:00:00+00:00'",
        ) from exc


class EventLog:
    """The append-only event log in one SQLite file.

    A connection is opened per call: cheap for SQLite, safe across threads and processes.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as conn:
                # WAL: readers (dashboard, audit) never block the writer, nor it them.
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise EventLogError(
                f"cannot open the event log {self.path}: {exc}",
                hint="check that the workspace folder is writable and the file is an "
                "mlsd event log",
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in append)
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def append(
        self,
        kind: str,
        message: str,
        *,
        system: str,
        model_version: str | int | None = None,
        evidence: Mapping[str, Any] | None = None,
    ) -> int:
        """Record one event in one transaction; returns its id (ids increase with time)."""
        if not isinstance(kind, str) or not kind:
            raise EventLogError(f"event kind {kind!r} is not a name", hint="pass e.g. 'promoted'")
        text = json.dumps(jsonable(dict(evidence or {})), sort_keys=True, allow_nan=False)
        version = None if model_version is None else str(model_version)
        try:
            with closing(self._connect()) as conn:
                conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading the clock
                try:
                    cursor = conn.execute(
                        "INSERT INTO events (ts, kind, system, model_version, message, evidence)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (utc_now(), kind, system, version, str(message), text),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return int(cursor.lastrowid)
        except sqlite3.Error as exc:
            raise EventLogError(
                f"cannot append to the event log {self.path}: {exc}",
                hint="check that the workspace folder is writable and not on a network drive",
            ) from exc

    def read(
        self,
        *,
        kind: str | list[str] | tuple[str, ...] | None = None,
        since: str | datetime | None = None,
        limit: int | None = None,
        system: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events oldest first, each ``{id, ts, kind, system, model_version, message,
        evidence}``; ``kind`` (one or several), ``since`` (ISO time, inclusive) and ``system``
        filter; ``limit`` keeps the most recent ``limit`` of them (still oldest first)."""
        where, args = [], []
        if kind is not None:
            kinds = [kind] if isinstance(kind, str) else list(kind)
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        if since is not None:
            where.append("ts >= ?")
            args.append(_normalize_ts(since))
        if system is not None:
            where.append("system = ?")
            args.append(system)
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, int(limit)))
        try:
            with closing(self._connect()) as conn:
                rows = conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise EventLogError(f"cannot read the event log {self.path}: {exc}") from exc
        events = []
        for row in reversed(rows):
            event = dict(row)
            event["evidence"] = json.loads(event["evidence"])
            events.append(event)
        return events

    def __repr__(self) -> str:
        return f"EventLog({str(self.path)!r})"
