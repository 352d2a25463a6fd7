"""The prediction/feedback log: round trip, atomic segments, kill -9 durability, shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pytest

from mlsd.features.transforms import to_bool
from mlsd.predlog.reader import (
    CorruptSegment,
    duckdb_view,
    input_types,
    labelled,
    read_feedback,
    read_predictions,
)
from mlsd.predlog.writer import LogError, LogWriter, PredictionLog, RecentIds
from mlsd.values import category_key

HERE = Path(__file__).resolve().parent
BASE = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _lines(path: Path) -> list[dict]:
    """Every row of a finished segment; fails on a partial or unparseable line."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path.name} ends mid-line"
    return [json.loads(line) for line in data.splitlines()]


def _instances(r: int) -> int:
    return 1 + r % 3


def _fill(log: PredictionLog) -> int:
    """20 requests of 1-3 instances (ts BASE + r, versions 1 then 2) and some feedback."""
    for r in range(20):
        n = _instances(r)
        log.prediction(
            request_id=f"r{r}",
            model_version=1 if r < 10 else 2,
            inputs=[{"age": r, "city": "abc"[i]} for i in range(n)],
            outputs=[{"prediction": r % 2, "score": r / 20} for _ in range(n)],
            latency_ms=2.5,
            ts=BASE + r,
            flags=[["age out of range"], None] if r == 4 else None,
        )
    log.feedback(request_id="r1", label=1, ts=BASE + 100)  # whole request: both instances
    log.feedback(request_id="r2", label=0, instance=2, ts=BASE + 100)  # one of three
    log.feedback(request_id="r5", label=0, ts=BASE + 100)
    log.feedback(request_id="r5", label=1, ts=BASE + 200)  # the latest wins
    log.feedback(request_id="r7", label=1, ts=BASE + 300)  # newer than the specific one
    log.feedback(request_id="r7", label=0, instance=0, ts=BASE + 150)
    log.feedback(request_id="ghost", label=1, ts=BASE + 100)  # never predicted
    return sum(_instances(r) for r in range(20))


def test_round_trip_filters_join_and_known(tmp_path):
    ws = tmp_path / "ws"
    with PredictionLog(ws, flush_s=0.2) as log:
        total = _fill(log)
        assert log.flush(timeout=10)
        assert log.known("r3") and not log.known("ghost")
        assert log.stats["predictions"]["written"] == total
        assert log.stats["feedback"]["written"] == 7

    table = read_predictions(ws)
    assert table.num_rows == total
    assert table.column_names == [
        "request_id", "instance", "ts", "time", "model_version",
        "age", "city", "prediction", "score", "latency_ms", "flags",
        "experiment", "arm", "unit", "p", "group", "position",
    ]  # fmt: skip
    rows = table.to_pylist()
    first = rows[0]
    assert first["request_id"] == "r0" and first["instance"] == 0 and first["ts"] == BASE
    assert first["time"] == datetime.fromtimestamp(BASE, UTC)
    assert first["model_version"] == "1" and first["latency_ms"] == 2.5
    r2 = [row for row in rows if row["request_id"] == "r2"]
    assert [(row["instance"], row["city"], row["age"]) for row in r2] == [
        (0, "a", 2),
        (1, "b", 2),
        (2, "c", 2),
    ]
    assert r2[0]["prediction"] == 0 and r2[0]["score"] == pytest.approx(0.1)
    flags = {(row["request_id"], row["instance"]): row["flags"] for row in rows}
    assert flags[("r4", 0)] == ["age out of range"] and flags[("r4", 1)] is None

    # time window [start, end) on ts, as epoch, datetime or ISO text; model version filter
    window = read_predictions(ws, start=BASE + 5, end=BASE + 10)
    assert sorted(set(window.column("request_id").to_pylist())) == [f"r{r}" for r in range(5, 10)]
    iso = read_predictions(
        ws, start=datetime.fromtimestamp(BASE + 5, UTC), end="2023-11-14T22:13:30+00:00"
    )
    assert iso.num_rows == window.num_rows
    v2 = read_predictions(ws, model_version=2)
    assert v2.num_rows == sum(_instances(r) for r in range(10, 20))
    assert read_predictions(ws, model_version="1", start=BASE + 10).num_rows == 0
    with pytest.raises(LogError, match="start='yesterday'"):
        read_predictions(ws, start="yesterday")

    feedback = read_feedback(ws)
    assert feedback.num_rows == 7
    assert feedback.column_names == ["request_id", "instance", "label", "ts", "time", "reward"]
    assert read_feedback(ws, start=BASE + 150).num_rows == 3

    joined = labelled(ws).to_pylist()
    got = {(row["request_id"], row["instance"]): row["true_label"] for row in joined}
    assert got == {
        ("r1", 0): 1, ("r1", 1): 1,
        ("r2", 2): 0,
        ("r5", 0): 1, ("r5", 1): 1, ("r5", 2): 1,
        ("r7", 0): 1, ("r7", 1): 1,
    }  # fmt: skip
    assert joined[0]["age"] == 1 and joined[0]["label_ts"] == BASE + 100
    assert len(labelled(ws, model_version=1, end=BASE + 5)) == 3  # r1 and r2 only

    # a new process knows old ids from the finished segments, not from memory
    with PredictionLog(ws) as fresh:
        assert not fresh.known("r3", scan=False)
        assert fresh.known("r3") and fresh.known("r19") and not fresh.known("ghost")
        assert not fresh.known('r3", "x')  # quoting cannot fake a match

    for pinned in (False, True):
        con = duckdb.connect()
        duckdb_view(con, ws, pinned=pinned)
        assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == total
        assert con.execute("SELECT count(*) FROM feedback").fetchone()[0] == 7
        assert con.execute("SELECT count(*) FROM labelled").fetchone()[0] == len(joined)
        assert con.execute("SELECT avg(age) FROM predictions WHERE city = 'c'").fetchone()[0] == 9.5


def test_empty_log_reads_as_empty_tables_and_views(tmp_path):
    assert read_predictions(tmp_path).num_rows == 0
    assert "request_id" in read_predictions(tmp_path).column_names
    assert read_feedback(tmp_path).num_rows == 0
    assert labelled(tmp_path).column_names[-3:] == ["true_label", "label_ts", "reward"]
    con = duckdb.connect()
    duckdb_view(con, tmp_path)
    assert con.execute("SELECT count(*) FROM labelled").fetchone()[0] == 0


def test_segments_that_do_not_parse_are_moved_aside_and_reported(tmp_path):
    with PredictionLog(tmp_path) as log:
        log.prediction(request_id="a", model_version=1, inputs=[{"x": 1}], outputs=[1], latency_ms=1)  # fmt: skip
    folder = tmp_path / "log" / "predictions"
    (good,) = folder.glob("*.jsonl")
    (folder / "copied-in.jsonl").write_text('{"request_id": "b", "instance": 0, "ts": 1}\nnot json\n')  # fmt: skip
    cut = good.read_bytes()
    (folder / "zz-cut.jsonl").write_bytes(cut[: len(cut) // 2])  # a segment cut short
    with pytest.warns(CorruptSegment) as caught:
        table = read_predictions(tmp_path)
    assert table.column("request_id").to_pylist() == ["a"]  # the good one, read
    assert sorted(w.message.segment.name for w in caught) == ["copied-in.jsonl", "zz-cut.jsonl"]
    assert all("Malformed JSON" in w.message.reason for w in caught)
    assert sorted(f.name for f in (folder / "corrupt").iterdir()) == [
        "copied-in.jsonl",
        "zz-cut.jsonl",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # set aside once: the next read is quiet
        assert read_predictions(tmp_path).num_rows == 1


def test_odd_values_are_logged_as_strict_json(tmp_path):
    class Version:
        def __str__(self) -> str:
            return "v1"

    loop: dict = {}
    loop["self"] = loop
    with LogWriter(tmp_path, "odd", flush_s=0.1) as writer:
        writer.log({"nan": float("nan"), "inf": float("-inf"), "keys": {1: 2}, "v": Version()})
        writer.log({"loop": loop})  # not serialisable: counted, skipped, the thread lives on
        writer.log({"after": True})
    assert writer.stats["errors"] == 1 and writer.stats["written"] == 2
    segments = sorted((tmp_path / "odd").glob("*.jsonl"))  # one, or more on a slow machine
    assert [row for path in segments for row in _lines(path)] == [
        {"nan": None, "inf": None, "keys": {"1": 2}, "v": "v1"},
        {"after": True},
    ]


class _Lines:
    """Captures what PredictionLog hands its predictions writer."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def log_lines(self, lines, *, errors=0):
        self.lines.extend(lines)
        self.errors = errors


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"flags": ["a_out_of_range"]},
        {"flags": [["x"], None, ["y", "z"]], "positions": [3, 7, 9]},
        {"routed": {"experiment": "e", "arm": "b", "unit": "u\n7", "p": 0.25}},
        {"routed": {"experiment": "e", "arm": "b", "unit": "u", "p": None},
         "group": 5, "ranks": [2, None, 1]},
    ],
)  # fmt: skip
def test_rows_are_encoded_per_request_as_a_dict_per_row_would_be(tmp_path, extra):
    # the row's shared fields are encoded once per request and the rows joined from bytes:
    # each line must be the JSON of the row as documented, key order included
    inputs = [
        {"a": 1, "s": 'é\n"q', "f": np.float32(2.5)},
        {1: "key not a string", "big": 2**70},
        {"a": float("nan"), "nested": {"x": [1, {"y": None}]}},
    ]
    outputs = [{"label": "y", "probability": {"y": 0.2}}, np.int64(3), float("inf")]
    log = PredictionLog(tmp_path)
    log._predictions, captured = _Lines(), log._predictions
    captured.close()
    log.prediction(
        request_id='r"1', model_version=3, inputs=inputs, outputs=outputs, latency_ms=1.25,
        ts=1_700_000_000.5, **extra,
    )  # fmt: skip
    lines = log._predictions.lines
    assert len(lines) == 3 and all(line.endswith(b"\n") for line in lines)
    flags, routed = extra.get("flags"), extra.get("routed") or {}
    for i, line in enumerate(lines):
        row = json.loads(line)
        assert list(row)[:8] == [
            "request_id", "instance", "ts", "time", "model_version", "latency_ms", "inputs",
            "output",
        ]  # fmt: skip
        assert row["request_id"] == 'r"1' and row["model_version"] == "3"
        assert row["instance"] == (extra["positions"][i] if "positions" in extra else i)
        assert row["ts"] == 1_700_000_000.5 and row["time"] == "2023-11-14T22:13:20.500000Z"
        expected_flags = (flags[i] if isinstance(flags[0], list) else flags) if flags else None
        assert row.get("flags") == expected_flags
        assert {k: row[k] for k in routed if k in row} == {k: v for k, v in routed.items()}
        if "group" in extra:
            assert row["group"] == "5" and row["position"] == extra["ranks"][i]
            assert list(row)[-2:] == ["group", "position"]
    first, second, third = (json.loads(line) for line in lines)
    assert first["inputs"] == {"a": 1, "s": 'é\n"q', "f": 2.5}
    assert second["inputs"] == {"1": "key not a string", "big": 2**70}
    assert third["inputs"] == {"a": None, "nested": {"x": [1, {"y": None}]}}
    assert [first["output"], second["output"], third["output"]] == [outputs[0], 3, None]


def test_log_lines_queues_a_requests_rows_all_or_none(tmp_path):
    writer = LogWriter(tmp_path, "block", flush_s=60, max_queue=5)
    entered, release = stall(writer)
    try:
        writer.log_lines([b'{"i":0}\n'])
        assert entered.wait(5)
        writer.log_lines([b'{"i":%d}\n' % i for i in (1, 2, 3)])
        writer.log_lines([b'{"i":%d}\n' % i for i in (4, 5, 6)])  # 3 + 3 > 5: all dropped
        writer.log_lines([b'{"i":7}\n', b'{"i":8}\n'], errors=1)
        assert writer.stats == {
            "written": 0, "dropped": 3, "segments": 0, "errors": 1, "queued": 5,
        }  # fmt: skip
    finally:
        release.set()
        writer.close()
    (segment,) = sorted((tmp_path / "block").glob("*.jsonl"))
    assert [row["i"] for row in _lines(segment)] == [0, 1, 2, 3, 7, 8]


def test_the_tap_sees_every_line_before_it_is_written_and_cannot_stop_the_log(tmp_path):
    seen: list[bytes] = []
    calls = {"n": 0}

    def tap(lines):
        calls["n"] += 1
        seen.extend(lines)
        if len(seen) >= 2:
            raise RuntimeError("a broken reader")

    with PredictionLog(tmp_path, flush_s=0.2) as log:
        log.tap(tap)
        for i in range(5):
            log.prediction(request_id=f"r{i}", model_version=1, inputs=[{"x": i}],
                           outputs=[i], latency_ms=1)  # fmt: skip
            assert log.flush(10)
        time.sleep(0.3)
        ticks = calls["n"]
    assert [json.loads(line)["request_id"] for line in seen] == [f"r{i}" for i in range(5)]
    assert ticks > 5  # every tick, lines or not: a reader hears back without traffic
    assert len(read_predictions(tmp_path)) == 5  # the reader's errors lost no row


def test_segments_appear_whole_by_rename_within_flush_s(tmp_path):
    folder = tmp_path / "log" / "predictions"
    with PredictionLog(tmp_path) as log:  # default flush_s = 1.0
        t0 = time.monotonic()
        log.prediction(
            request_id="a", model_version=1, inputs=[{"x": 1}], outputs=[1], latency_ms=1
        )
        time.sleep(0.2)
        assert len(list(folder.glob(".*.jsonl.tmp"))) == 1  # being written, hidden
        assert not list(folder.glob("*.jsonl"))  # not finished: flush_s has not passed
        while not list(folder.glob("*.jsonl")):
            assert time.monotonic() - t0 < 1.5, "the row was not visible within 1.5 s"
            time.sleep(0.02)
        assert read_predictions(tmp_path).num_rows == 1
        assert not list(folder.glob(".*.tmp"))

    # under load, a watcher never sees a finished segment change or end mid-line, and a
    # reader sees a prefix of what was logged, never a .tmp file's rows
    seen: dict[str, bytes] = {}
    problems: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for path in folder.glob("*.jsonl"):
                data = path.read_bytes()
                if seen.setdefault(path.name, data) != data:
                    problems.append(f"{path.name} changed")
                if not data.endswith(b"\n"):
                    problems.append(f"{path.name} ends mid-line")
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    logged = 1
    try:
        with PredictionLog(tmp_path, flush_s=0.1) as log:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                for _ in range(50):
                    log.prediction(
                        request_id=f"b{logged:06d}",
                        model_version=1,
                        inputs=[{"x": logged}],
                        outputs=[logged],
                        latency_ms=1,
                    )
                    logged += 1
                ids = read_predictions(tmp_path).column("request_id").to_pylist()
                assert len(ids) <= logged and ids == ["a"] + [
                    f"b{i:06d}" for i in range(1, len(ids))
                ]
    finally:
        stop.set()
        watcher.join()
    assert not problems, problems[:5]
    assert len(seen) > 3  # several segments were finished while being watched
    assert read_predictions(tmp_path).num_rows == logged


def test_max_rows_rolls_segments(tmp_path):
    with LogWriter(tmp_path, "k", flush_s=60, max_rows=10) as writer:
        for i in range(25):
            writer.log({"i": i})
        assert writer.flush(timeout=10)
        assert writer.stats["segments"] == 3
    rows = [row for path in sorted((tmp_path / "k").glob("*.jsonl")) for row in _lines(path)]
    assert rows == [{"i": i} for i in range(25)]


def test_close_drains_queue_and_is_idempotent(tmp_path):
    writer = LogWriter(tmp_path, "k", flush_s=60)  # only close() can finish the segment

    def serve(thread: int) -> None:  # like a server's request threads
        for i in range(1250):
            writer.log({"i": thread * 1250 + i})

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    writer.close()
    assert writer.stats == {
        "written": 5000,
        "dropped": 0,
        "segments": 1,
        "errors": 0,
        "queued": 0,
    }
    (segment,) = (tmp_path / "k").glob("*.jsonl")
    assert sorted(row["i"] for row in _lines(segment)) == list(range(5000))
    assert not list((tmp_path / "k").glob(".*"))
    writer.log({"late": True})  # after close: dropped, counted, no error
    assert writer.stats["dropped"] == 1 and writer.flush() is True


def test_known_ids_in_memory_are_bounded_and_older_ones_found_on_disk(tmp_path):
    with PredictionLog(tmp_path, known_capacity=32) as small:
        for i in range(200):
            small.prediction(
                request_id=f"m{i}", model_version=1, inputs=[{}], outputs=[0], latency_ms=1
            )
        remembered = [i for i in range(200) if small.known(f"m{i}", scan=False)]
        # the last 16 to 32, the newest always
        assert 16 <= len(remembered) <= 32 and remembered == list(range(200 - len(remembered), 200))
        assert small.flush(timeout=10) and small.known("m0")


def test_recent_ids_live_in_memory_allocated_once():
    ids = RecentIds(1000)
    before = [t.buffer_info() for t in ids._tables]
    for i in range(100_000):
        ids.add(f"r{i}")
        ids.add(f"r{i}")  # twice: counted once
    assert [t.buffer_info() for t in ids._tables] == before  # the same memory throughout
    held = [i for i in range(100_000) if f"r{i}" in ids]
    assert 500 <= len(held) <= 1000 and held == list(range(100_000 - len(held), 100_000))
    assert "never" not in ids


def test_a_request_logged_by_another_writer_is_known_before_its_segment_is_finished(tmp_path):
    # two servers sharing a log (replicas): feedback may reach the one that did not answer
    with PredictionLog(tmp_path, flush_s=60) as answered, PredictionLog(tmp_path) as other:
        answered.prediction(
            request_id="r-1", model_version=1, inputs=[{"a": 1}], outputs=[0], latency_ms=1
        )
        assert not list((tmp_path / "log" / "predictions").glob("*.jsonl"))  # none finished
        deadline = time.monotonic() + 5
        while not other.known("r-1"):  # in the open segment after the writer's next tick
            assert time.monotonic() < deadline, "another writer's open segment was not read"
            time.sleep(0.01)
        assert not other.known("r-2")
        assert list((tmp_path / "log" / "predictions").glob(".*.jsonl.tmp"))  # still open


def test_systems_sharing_a_workspace_keep_their_own_logs(tmp_path):
    from mlsd.workspace import Workspace

    for system, n in (("a", 3), ("b", 5)):
        with PredictionLog(Workspace(tmp_path, system)) as log:
            for i in range(n):
                log.prediction(
                    request_id=f"{system}{i}", model_version=1, inputs=[{}], outputs=[0],
                    latency_ms=1,
                )  # fmt: skip
    for system, n in (("a", 3), ("b", 5)):
        ids = read_predictions(Workspace(tmp_path, system)).column("request_id").to_pylist()
        assert sorted(ids) == [f"{system}{i}" for i in range(n)]


def stall(writer: LogWriter) -> tuple[threading.Event, threading.Event]:
    """A disk that hangs: ``writer``'s thread waits in its first write until ``release`` is
    set; ``entered`` is set once it waits there."""
    entered, release = threading.Event(), threading.Event()
    write = writer._write

    def stalled_write(lines, **options):
        if lines:
            entered.set()
            release.wait(10)
        return write(lines, **options)

    writer._write = stalled_write
    return entered, release


def test_full_queue_drops_and_counts_never_blocks(tmp_path):
    writer = LogWriter(tmp_path, "q", flush_s=60, max_queue=5)
    entered, release = stall(writer)
    try:
        writer.log({"first": True})
        assert entered.wait(5)
        t0 = time.perf_counter()
        for i in range(20):
            writer.log({"i": i})
        assert time.perf_counter() - t0 < 0.5
        assert writer.stats["dropped"] == 15 and writer.stats["queued"] == 5
    finally:
        release.set()
        writer.close()
    assert writer.stats["written"] == 6 and writer.stats["dropped"] == 15


def test_recover_salvages_complete_lines_of_dead_writers(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    # our own pid but no writer holds it: a previous incarnation (containers reuse pids)
    mine = folder / f".20240101T000000.000001-{os.getpid()}-000001.jsonl.tmp"
    mine.write_bytes(b'{"i": 0}\n{"i": 1}\n{"i": 2}\n{"i": 3, "trunc')
    # a live process (our parent) that touched its file just now: left alone
    alive = folder / f".20240101T000000.000002-{os.getppid()}-000001.jsonl.tmp"
    alive.write_bytes(b'{"i": 9}\n')
    with LogWriter(tmp_path, "p") as writer:
        assert writer.recovered == {"files": 1, "rows": 3, "dropped_lines": 1}
    assert _lines(folder / f"20240101T000000.000001-{os.getpid()}-000001.jsonl") == [
        {"i": 0},
        {"i": 1},
        {"i": 2},
    ]
    assert not mine.exists() and alive.exists()


def test_kill_9_loses_at_most_the_last_second(tmp_path):
    ws, status = tmp_path / "ws", tmp_path / "status"
    with open(tmp_path / "child.err", "wb") as err:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "log_child.py"), str(ws), str(status), "1000"],
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 20
        while not (status.exists() and status.stat().st_size):
            assert child.poll() is None, (tmp_path / "child.err").read_text()
            assert time.monotonic() < deadline, "the child never logged"
            time.sleep(0.02)
        time.sleep(2.5)
        killed_at = time.time()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()  # reaped: a zombie's pid would still look alive to recover()

    text = status.read_text()
    marks = [line.split() for line in text[: text.rfind("\n") + 1].splitlines()]
    marks = [(int(n), float(t)) for n, t in marks]
    logged = marks[-1][0]
    settled = max((n for n, t in marks if t <= killed_at - 1.5), default=0)
    assert logged > 300  # ~1000 rows/s for 2.5 s, fewer on a loaded machine

    folder = ws / "log" / "predictions"
    finished = [row for path in sorted(folder.glob("*.jsonl")) for row in _lines(path)]
    # a kill between log() and its status line may hide one logged row from the count
    assert settled <= len(finished) <= logged + 1
    expected = [f"k{i:07d}" for i in range(len(finished))]
    assert [row["request_id"] for row in finished] == expected  # in order, no gap

    salvageable = 0
    for tmp in folder.glob(".*.jsonl.tmp"):
        data = tmp.read_bytes()
        salvageable += data[: data.rfind(b"\n") + 1].count(b"\n")
    with PredictionLog(ws) as log:
        assert log.recovered["predictions"]["rows"] == salvageable
    assert not list(folder.glob(".*.tmp"))
    ids = read_predictions(ws).column("request_id").to_pylist()
    assert len(ids) == len(finished) + salvageable <= logged + 1
    assert ids == [f"k{i:07d}" for i in range(len(ids))]


def test_writer_imports_no_pandas_pyarrow_duckdb(tmp_path):
    code = f"""
import sys
from mlsd.predlog.writer import LogWriter, PredictionLog
with PredictionLog({str(tmp_path)!r}, flush_s=0.1) as log:
    log.prediction(request_id="r", model_version=1, inputs=[{{"x": 1}}], outputs=[0.5],
                   latency_ms=1.0)
    log.feedback(request_id="r", label=1)
    assert log.flush(timeout=10) and log.known("r") and not log.known("nope")
with LogWriter({str(tmp_path)!r}, "other") as writer:
    writer.log({{"a": 1}})
heavy = ("pandas", "pyarrow", "duckdb", "sklearn", "mlflow")
print(sorted(m for m in heavy if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_iso_times_match_datetime_to_the_microsecond():
    """The log's cached-second formatter rounds exactly as datetime.fromtimestamp does."""
    import random

    from mlsd.predlog.writer import _iso

    rng = random.Random(7)
    edges = (0.0, 0.5, 0.4999995, 0.9999995, 0.0000005)
    for _ in range(20_000):
        ts = rng.choice(
            [
                rng.uniform(0, 2e9),
                rng.randint(0, 2_000_000_000) + rng.choice(edges),
                -rng.uniform(0, 1e6),
            ]
        )
        assert _iso(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), ts


# What clients send, per input field of a signature, one value per instance (ABSENT: the
# field is left out). JSON inference would read the integers of both signs as HUGEINT
# (Decimal in Python), the mixes as DOUBLE or JSON and the ISO strings as timestamps.
ABSENT = object()
SENT = {
    "neg": ("numeric", [-3, 5, -(2**31), 0, None, ABSENT]),
    "big": ("numeric", [2**53 - 1, 2**53 + 1, -(2**53) - 3, 2**63 - 1, -(2**63), 2**64 - 1]),
    "huge": ("numeric", [1e300, -1e300, 5e-324, 0.1, -1.5e-7, 1.7976931348623157e308]),
    "mixed": ("numeric", [1, 2.5, -3, 4.0, -0.5, 7]),
    "junk": ("numeric", ["3.5", [1], {"a": 1}, True, None, 2]),  # only 2 is a number
    "flag": ("boolean", [True, False, None, "yes", 0, 1]),
    "code": ("categorical", [1, -2, 1.0, "1", 2.5, None]),
    "word": ("categorical", ["a", "", True, 2**70 + 1, [1], -0.0]),
    "when": ("datetime", ["2024-01-01T10:00:00Z", "2024-01-02T10:00:00+01:00", None] * 2),
}
TYPES = {name: kind for name, (kind, _) in SENT.items()}


def _read_as(kind: str, value) -> object:
    """What the model reads for ``value`` sent to a field of type ``kind`` (the server
    accepts only JSON numbers for a number)."""
    if value is None or value is ABSENT:
        return None
    if kind == "numeric":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if number else None
    if kind == "boolean":
        return bool(to_bool(np.array([value], dtype=object))[0])
    if kind == "categorical":
        return category_key(value) if not isinstance(value, list) else None
    return value


EXPECTED = {name: [_read_as(kind, v) for v in values] for name, (kind, values) in SENT.items()}


@pytest.fixture
def odd_inputs(tmp_path):
    """A log of one request whose instances send the values of SENT, with a label."""
    instances = [
        {name: values[i] for name, (_, values) in SENT.items() if values[i] is not ABSENT}
        for i in range(6)
    ]
    with PredictionLog(tmp_path, flush_s=0.05) as log:
        log.prediction(
            request_id="r", model_version=1, inputs=instances, outputs=[0.5] * 6, latency_ms=1
        )
        log.feedback(request_id="r", label=1)
    return tmp_path


def _assert_read_as_the_model_reads(table, names=tuple(SENT)) -> None:
    import pyarrow as pa

    kinds = {"numeric": pa.float64(), "boolean": pa.bool_()}
    for name in names:
        assert table.column(name).type == kinds.get(TYPES[name], pa.string()), name
        assert table.column(name).to_pylist() == EXPECTED[name], name


def test_inputs_come_back_with_their_signature_types_exactly(odd_inputs):
    _assert_read_as_the_model_reads(read_predictions(odd_inputs, inputs=TYPES))
    _assert_read_as_the_model_reads(labelled(odd_inputs, inputs=TYPES))
    for pinned in (True, False):
        con = duckdb.connect()
        duckdb_view(con, odd_inputs, pinned=pinned, inputs=TYPES)
        for view in ("predictions", "labelled"):
            table = con.sql(f"SELECT * FROM {view} ORDER BY instance").to_arrow_table()
            # a live view infers the types first: a date-time may come back in DuckDB's text
            _assert_read_as_the_model_reads(table, SENT if pinned else SENT.keys() - {"when"})
    with pytest.raises(LogError, match="unknown input types"):
        read_predictions(odd_inputs, inputs={"neg": "integer"})
    assert input_types({"inputs": [{"name": "a", "type": "numeric", "min": 0}]}) == {"a": "numeric"}


def test_inferred_types_are_remembered_per_list_of_segments(odd_inputs, monkeypatch):
    from mlsd.predlog import reader as module

    calls = []
    columns = module._columns
    monkeypatch.setattr(module, "_columns", lambda *a: calls.append(1) or columns(*a))
    read_predictions(odd_inputs)
    read_predictions(odd_inputs, inputs=TYPES)  # the same segments: inferred once
    assert len(calls) == 1
    with PredictionLog(odd_inputs, flush_s=0.05) as log:  # a new segment: inferred again
        log.prediction(request_id="s", model_version=1, inputs=[{"neg": -1}], outputs=[0],
                       latency_ms=1)  # fmt: skip
    calls.clear()
    assert read_predictions(odd_inputs, inputs=TYPES).column("neg").to_pylist()[-1] == -1.0
    assert len(calls) == 1
