"""The corpus as a table: every step of mlsd on each real table of ``tests/corpus``.

Runs the corpus test (``pytest tests/corpus``) in a fresh temp folder, reads the figures each
table recorded (``corpus.json``) and writes the "Corpus" section of BENCHMARKS.md: rows, task,
chosen model, primary test metric against the best baseline, and the outcome of validate,
train, serve, monitor and the planted faults.

    python benchmarks/bench_corpus.py
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def row(f: dict) -> str:
    """One table's line of the report."""
    validate = f.get("validate", "-")
    validate = "pass" if validate == "pass" else "FAIL"
    warnings = len(f.get("warnings", []))
    train = "registered" if f.get("registered") else "FAIL"
    false = f.get("false_alarms")
    monitor = "-" if false is None else f"{false} false alarms"
    if f.get("time_alerts"):
        monitor += f" ({f['time_alerts']} on time/predictions)"
    return (
        f"| {f['table']} | {f['rows']:,} | {f['task']} | {f.get('model', '-')} | "
        f"{f.get('metric', '-')} {_fmt(f.get('score'))} vs {_fmt(f.get('best_baseline'))} | "
        f"{validate} ({warnings} warnings) | {train} | {f.get('serve', '-')} | {monitor} | "
        f"{f.get('planted_leaks', '-')} | {f.get('planted_drift', '-')} | "
        f"{f.get('planted_missing', '-')} |"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/corpus", f"--basetemp={tmp}/t"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
        figures = json.loads((Path(tmp) / "t" / "corpus.json").read_text())
    print(summary)
    lines = [
        "## Corpus (`benchmarks/bench_corpus.py`)",
        "",
        f"Command: `python benchmarks/bench_corpus.py` on {date.today()}, "
        f"{platform.machine()}, {platform.python_version()}, {os.cpu_count()} cores: "
        f"`pytest tests/corpus` ({summary}). Each table: `mlsd init` on 80% "
        "of its rows, `validate`, `train` (default parameters, no tuning), a real server "
        "answering the other 20%, `mlsd predict` on them (equal to the online answers), "
        "`mlsd monitor` on that traffic; then planted faults: a copy, a monotone transform "
        "and two summed parts of the target (leakage errors), one feature shifted by 0.5 sd "
        "in served traffic (drift alert), the same feature sent as missing (quality alert).",
        "",
        "| table | rows | task | model | primary test metric vs best baseline | validate | "
        "train | serve | monitor | planted leaks | planted drift | planted missing |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[row(f) for f in sorted(figures, key=lambda f: (f["task"], f["table"]))],
        "",
        "On tables with a time column the traffic is drawn from every period while the "
        "reference of the time columns and of the predictions is the training and validation "
        "periods: alerts there are real differences and are counted apart.",
    ]
    for line in lines[4:-2]:
        print(line)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import write_section

    write_section("## Corpus (", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
