"""A real `mlsd serve` whose log disk fills up (a small tmpfs mounted on the log folder):
every request is still answered, /readyz and /metrics say the log is degraded, and the
rows sent meanwhile reach the log, whole, once space returns."""

from __future__ import annotations

import time

from server import ServerProcess
from test_v2_triton import train_system, write_system

from conftest import fill
from mlsd.predlog.reader import read_predictions
from mlsd.workspace import Workspace


def test_the_server_answers_through_a_full_log_disk_and_loses_no_row(small_disk, tmp_path):
    folder = tmp_path / "sys"
    folder.mkdir()
    train_system(write_system(folder, "binary", "serving: {log_flush_s: 0.2}\n"))
    disk = small_disk(folder / ".mlsd" / "log", size_kb=512)
    row = {"x": 0.3, "n": 4, "flag": True, "color": "red"}
    server = ServerProcess(folder)
    try:
        client = server.client
        assert (
            client.call("POST", "/v1/predict", {"instances": [row]}, {"x-request-id": "r0"})[0]
            == 200
        )
        time.sleep(0.5)  # r0 in a finished segment
        filler = fill(disk)
        for i in range(1, 41):
            status, body, _ = client.call(
                "POST", "/v1/predict", {"instances": [row]}, {"x-request-id": f"r{i}"}
            )
            assert status == 200, body  # the disk is full, the caller never knows
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, ready, _ = client.call("GET", "/readyz")
            if ready["log"]["status"] == "degraded":
                break
            time.sleep(0.1)
        assert status == 200 and ready["status"] == "ready"  # still in rotation
        trouble = ready["log"]["writers"]["predictions"]
        assert trouble["ok"] is False and trouble["error"] == "No space left on device"
        _, text, _ = client.call("GET", "/metrics")
        assert 'mlsd_log_degraded{log="predictions"} 1.0' in text
        filler.unlink()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if client.call("GET", "/readyz")[1]["log"]["status"] == "ok":
                break
            time.sleep(0.1)
        _, text, _ = client.call("GET", "/metrics")
        assert 'mlsd_log_degraded{log="predictions"} 0.0' in text
    finally:
        server.stop()
    logged = read_predictions(Workspace(folder / ".mlsd", "tiny-buyers"))
    ids = logged.column("request_id").to_pylist()
    assert sorted(ids, key=lambda r: int(r[1:])) == [f"r{i}" for i in range(41)]
    assert not list(disk.rglob(".*.tmp"))
