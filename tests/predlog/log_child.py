"""Child process of the kill -9 test: logs predictions at a steady rate until it is killed.

Usage: python log_child.py WORKSPACE STATUS_FILE ROWS_PER_SECOND

After each logged request (one instance) it appends "<rows logged> <epoch seconds>" to
STATUS_FILE with one O_APPEND write, so the parent knows how many rows were logged when.
"""

from __future__ import annotations

import os
import sys
import time

from mlsd.predlog.writer import PredictionLog


def main(workspace: str, status: str, rate: float) -> None:
    log = PredictionLog(workspace, flush_s=1.0)
    fd = os.open(status, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    period = 1.0 / rate
    start = time.monotonic()
    n = 0
    while True:
        # ~250 bytes a row: the writer's 8 KiB file buffer reaches the OS many times a
        # second, so the .tmp file a kill leaves behind holds rows for recovery to salvage
        log.prediction(
            request_id=f"k{n:07d}",
            model_version=1,
            inputs=[{"x": n, "pad": "p" * 120}],
            outputs=[{"prediction": n * 2}],
            latency_ms=1.0,
        )
        n += 1
        os.write(fd, f"{n} {time.time():.6f}\n".encode())
        time.sleep(max(0.0, start + n * period - time.monotonic()))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
