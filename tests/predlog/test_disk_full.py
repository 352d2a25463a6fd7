"""The log on a disk that fills up, for real (a small tmpfs): no partial segment, the rows
held in memory and written when space returns, the bound kept, the trouble reported."""

from __future__ import annotations

import json
import time

from conftest import fill
from mlsd.predlog.writer import LogWriter


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def rows(folder) -> list[int]:
    """Every row of the finished segments, oldest segment first; each must parse."""
    out = []
    for segment in sorted(folder.glob("*.jsonl")):
        for line in segment.read_bytes().splitlines():
            out.append(json.loads(line)["i"])
    return out


def test_a_full_disk_holds_rows_and_writes_them_when_space_returns(small_disk, tmp_path):
    disk = small_disk(tmp_path / "disk", size_kb=256)
    writer = LogWriter(disk, "predictions", flush_s=0.2, max_queue=30)
    try:
        for i in range(5):
            writer.log({"i": i, "pad": "x" * 100})
        assert writer.flush(5) and writer.health == {"ok": True}
        filler = fill(disk)
        for i in range(5, 55):  # 50 rows while full: 30 are kept, the 20 newest dropped
            writer.log({"i": i, "pad": "x" * 100})
        assert wait_for(lambda: not writer.health["ok"])
        health = writer.health
        assert health["error"] == "No space left on device" and health["since"]
        assert wait_for(lambda: writer.health.get("held") == 30)
        assert not writer.flush(0.5)  # the held rows are not in a segment yet
        assert rows(disk / "predictions") == list(range(5))  # nothing partial, nothing more
        assert not list((disk / "predictions").glob(".*.tmp"))  # cut back to nothing
        filler.unlink()
        assert writer.flush(5)  # written within a retry once space returned
        assert writer.health == {"ok": True}
    finally:
        writer.close()
    assert rows(disk / "predictions") == list(range(35))  # in order, once each
    stats = writer.stats
    assert stats["written"] == 35 and stats["dropped"] == 20 and stats["errors"] >= 1


def test_closing_on_a_full_disk_counts_what_it_could_not_write(small_disk, tmp_path):
    disk = small_disk(tmp_path / "disk", size_kb=256)
    writer = LogWriter(disk, "predictions", flush_s=0.2)
    writer.log({"i": 0})
    assert writer.flush(5)
    fill(disk)
    for i in range(1, 4):
        writer.log({"i": i})
    started = time.monotonic()
    writer.close()  # one last try, then the rows are counted lost: it does not hang
    assert time.monotonic() - started < 5
    assert rows(disk / "predictions") == [0]
    assert writer.stats["written"] == 1 and writer.stats["dropped"] == 3
    assert not list((disk / "predictions").glob(".*.tmp"))
