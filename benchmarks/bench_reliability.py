"""Reliability: the bounded load test at full length, and the faults the suite injects.

    python benchmarks/bench_reliability.py [--seconds 60] [--clients 64] [--no-write]

Load: a small binary system trained twice, served by ``mlsd serve``; ``--clients`` keep-alive
connections send for ``--seconds`` a mix of valid predictions (70%), invalid ones (10%),
feedback on answered requests (15%) and bodies that are not JSON (5%), while ``mlsd
promote 2`` swaps the model halfway (tests/e2e/soak.py, the harness the CI test runs for 15
s). Then the log is read back: every answered request, every refused one and every label
must be there once. The server's resident memory is sampled every 0.25 s. The faults table
lists the tests that inject each fault and what they prove; they run in ``make test``.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from report import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests")]

import soak  # noqa: E402
from server import ServerProcess, mlsd_command  # noqa: E402
from test_soak import INVALID, VALID  # noqa: E402
from test_v2_triton import train_system, write_system  # noqa: E402

FAULTS = [
    ("`kill -9` of a writer mid-traffic", "tests/predlog/test_log.py::test_kill_9_loses_at_most_the_last_second",
     "at most the last second lost, no corrupt segment"),
    ("the log's disk full (a real 512 KB tmpfs)", "tests/e2e/test_log_disk_full.py",
     "every request answered, /readyz and /metrics degraded, no row lost once space returns"),
    ("a segment cut short or not JSON", "tests/predlog/test_log.py::test_segments_that_do_not_parse_are_moved_aside_and_reported",
     "moved to corrupt/, reported, the rest read"),
    ("SIGTERM in the middle of `mlsd predict`", "tests/e2e/test_faults.py::test_sigterm_mid_predict_leaves_no_output_and_no_temporary_file",
     "exit 143, no output, no temporary file"),
    ("two `mlsd train` at once in one workspace", "tests/e2e/test_faults.py::test_two_trainings_at_once_one_refuses_naming_the_other",
     "the second refused naming the first; the registry consistent"),
    ("the registry database locked by another process", "tests/e2e/test_faults.py (promote, train)",
     "waited for, then done; a lock held too long is a clear error"),
    ("`mlsd rollout step` killed mid-decision (SIGKILL)", "tests/e2e/test_faults.py::test_rollout_step_killed_mid_decision_leaves_aliases_and_routing_consistent",
     "aliases and routing table consistent; the next step finishes the job"),
    ("a registration or promotion SIGKILLed after each of its steps", "tests/models/test_registry.py::test_a_change_killed_midway_is_finished_or_undone_by_the_next",
     "the next change deletes a version left without its alias, records a lost event once, publishes the aliases"),
    ("hostile requests: wrong admin tokens, deep JSON, junk paths, 100 new field names, 10,000-character names, bad request ids, `../` model references", "tests/e2e/test_security.py",
     "4xx each; metric labels bounded (32 field names, then `_other`); answers and logs at most 100 problems"),
    ("fuzzed specs, CSV and Parquet files (hypothesis)", "tests/test_fuzz_inputs.py",
     "every failure an MlsdError with a message"),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from mlsd.predlog.reader import read_feedback, read_predictions, read_rejects
    from mlsd.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="mlsd-bench-reliability-") as tmp:
        folder = Path(tmp)
        train_system(write_system(folder, "binary", "serving: {poll_s: 0.5}\n"), times=2)
        server = ServerProcess(folder)
        swapped = []

        def swap():
            command = [*mlsd_command(), "promote", "2", "--reason", "bench"]
            swapped.append(subprocess.run(command, cwd=folder, capture_output=True).returncode)

        try:
            result = soak.run(
                server.port, server.proc.pid, VALID, INVALID, lambda n: "Yes" if n % 3 else "No",
                clients=args.clients, seconds=args.seconds, swap=swap,
            )  # fmt: skip
        finally:
            server.stop()
        time.sleep(0.1)
        ws = Workspace(folder / ".mlsd", "tiny-buyers")
        logged = read_predictions(ws).column("request_id").to_pylist()
        rejected = set(read_rejects(ws).column("request_id").to_pylist())
        labels = read_feedback(ws).num_rows
    lost = len(set(result.answered) - set(logged)) + len(set(result.refused) - rejected)
    lost += max(0, len(result.labelled) - labels)
    duplicated = len(logged) - len(set(logged))
    total = sum(result.statuses.values())
    by_kind = {}
    for (kind, status), n in result.statuses.items():
        by_kind.setdefault(kind, []).append(f"{n:,} x {status}")
    rss = [mb for _, mb in result.rss_mb]
    lines = [
        "## Reliability (`benchmarks/bench_reliability.py`)",
        "",
        f"Command: `python benchmarks/bench_reliability.py` on {date.today()}, "
        f"{platform.machine()}, {platform.python_version()}, 2 cores (the clients and the "
        "server share them). `make test` runs the same load for 15 s "
        "(tests/e2e/test_soak.py).",
        "",
        "| load held | figure |",
        "|---|---|",
        f"| clients, seconds | {args.clients}, {result.seconds:.0f} |",
        f"| requests answered | {total:,} ({total / result.seconds:,.0f}/s) |",
        *(f"| {kind} | {', '.join(sorted(v))} |" for kind, v in sorted(by_kind.items())),
        f"| failed valid requests, 5xx | {len(result.failures)} |",
        f"| model swap mid-run | `mlsd promote 2` exit {swapped}; answers by version "
        f"{dict(sorted(result.versions.items()))} |",
        f"| valid prediction p50 / p99 | {result.percentile(0.5):.1f} / "
        f"{result.percentile(0.99):.1f} ms (the CI bound: p99 under 250 ms) |",
        f"| resident memory | {rss[0]:.0f} MB at start, {max(rss):.0f} MB at most, growth "
        f"after warm-up {result.rss_growth():.1%} (bound: 10%) |",
        f"| log rows lost / duplicated | {lost} / {duplicated} |",
        "",
        "| fault injected | test | survived |",
        "|---|---|---|",
        *(f"| {what} | `{test}` | {proof} |" for what, test, proof in FAULTS),
    ]
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        write_section("## Reliability", section)


if __name__ == "__main__":
    main()
