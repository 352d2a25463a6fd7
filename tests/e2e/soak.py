"""Bounded load on a real `mlsd serve`: ``clients`` keep-alive connections for ``seconds``,
mixing valid and invalid predictions, feedback and malformed bodies, while a callback swaps
the model mid-run; the server's resident memory sampled all along. Used by the reliability
test (a short run in CI) and ``benchmarks/bench_reliability.py`` (the full minute)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# what each client sends, in turn: 14 valid predictions, 2 invalid ones, 3 feedbacks and
# one body that is not JSON, in every 20 requests
MIX = ["predict"] * 14 + ["invalid"] * 2 + ["feedback"] * 3 + ["garbage"]


@dataclass
class Soak:
    """What a run sent and got back."""

    answered: list[str] = field(default_factory=list)  # request ids of valid predictions
    refused: list[str] = field(default_factory=list)  # request ids of invalid ones (4xx)
    labelled: list[str] = field(default_factory=list)  # request ids whose feedback was taken
    failures: list[tuple[str, int, str]] = field(default_factory=list)  # kind, status, body
    latencies_ms: list[float] = field(default_factory=list)  # valid predictions
    statuses: Counter = field(default_factory=Counter)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB)
    versions: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def rss_growth(self, warmup_share: float = 0.2) -> float:
        """The largest resident memory after warm-up over the memory at its end, less 1."""
        start = self.seconds * warmup_share
        after = [mb for t, mb in self.rss_mb if t >= start]
        return max(after) / after[0] - 1 if after else 0.0


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _request(reader, writer, port: int, path: str, body: bytes, rid: str):
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Request-Id: {rid}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


def run(
    port: int,
    pid: int,
    valid: list[dict],
    invalid: list[dict],
    label: Callable[[int], Any],
    *,
    clients: int = 64,
    seconds: float = 60.0,
    swap: Callable[[], None] | None = None,
) -> Soak:
    """Send the mix for ``seconds`` from ``clients`` connections; ``swap`` runs in a thread
    halfway through. ``valid``/``invalid`` are instances sent one per request; ``label(i)``
    the label sent as feedback for a request answered earlier."""
    out = Soak()
    ids = itertools.count()
    started = time.monotonic()
    stop_at = started + seconds

    async def client(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for turn in itertools.count(index):
                if time.monotonic() >= stop_at:
                    return
                kind = MIX[turn % len(MIX)]
                n = next(ids)
                rid = f"s{n}"
                path = "/v1/predict"
                if kind == "predict":
                    body = json.dumps({"instances": [valid[n % len(valid)]]}).encode()
                elif kind == "invalid":
                    body = json.dumps({"instances": [invalid[n % len(invalid)]]}).encode()
                elif kind == "feedback":
                    if not out.answered:
                        continue
                    target = out.answered[n % len(out.answered)]
                    path = "/v1/feedback"
                    body = json.dumps({"request_id": target, "label": label(n)}).encode()
                else:
                    body = b'{"instances": [{"x": '
                sent = time.perf_counter()
                status, answer = await _request(reader, writer, port, path, body, rid)
                out.statuses[(kind, status)] += 1
                if kind == "predict":
                    if status == 200:
                        out.answered.append(rid)
                        out.latencies_ms.append((time.perf_counter() - sent) * 1000)
                        out.versions[json.loads(answer)["model_version"]] += 1
                    else:
                        out.failures.append((kind, status, answer.decode()[:300]))
                elif kind == "feedback":
                    if status < 300:
                        out.labelled.append(target)
                    else:
                        out.failures.append((kind, status, answer.decode()[:300]))
                elif 400 <= status < 500:  # invalid or garbage: refused, as it must be
                    if kind == "invalid":
                        out.refused.append(rid)
                else:
                    out.failures.append((kind, status, answer.decode()[:300]))
        finally:
            writer.close()

    async def sample() -> None:
        while time.monotonic() < stop_at:
            out.rss_mb.append((time.monotonic() - started, rss_mb(pid)))
            await asyncio.sleep(0.25)

    async def main() -> None:
        await asyncio.gather(sample(), *(client(i) for i in range(clients)))

    swapper = None
    if swap is not None:
        swapper = threading.Timer(seconds / 2, swap)
        swapper.start()
    try:
        asyncio.run(main())
    finally:
        if swapper is not None:
            swapper.join()
    out.seconds = time.monotonic() - started
    return out
