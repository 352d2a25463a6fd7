"""Drift benchmark: mlsd against Evidently's DataDriftPreset on the same 50-column windows.

    python benchmarks/bench_drift.py [--rows 100000 1000000] [--reference 100000]
                                     [--no-evidently] [--evidently-max-rows 1000000] [--no-write]

A reference table (25 numeric, 25 categorical columns) stands for the training data; mlsd
keeps only its profile. Current windows of each size are written to Parquet with the columns
a prediction log holds besides the features (request id, time, model version, output), and
carry nine known changes: five that matter (0.5 and 0.3 sd mean shifts, the spread x1.5, 3%
of rows turned into a -999 sentinel, a heavy-tailed column halved), two categorical ones
that matter (a new category taking 10%, three levels doubling) and two trivial ones (a 0.05
sd shift, one level +2 points). Each tool runs in a fresh process, so its wall time
includes reading Parquet and its peak memory is its own: mlsd reads only the profiled
columns with Arrow; Evidently (in its own venv, ``benchmarks/.venv-evidently``: it needs
pandas < 3) reads the reference and current features with pandas. Results, and the columns
each tool flags, go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVIDENTLY_VENV = ROOT / "benchmarks" / ".venv-evidently"
NUMERIC = [f"num_{i:02d}" for i in range(25)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(25)]
# column -> (what changed, whether it matters)
CHANGES = {
    "num_00": ("mean +0.5 sd", True),
    "num_01": ("mean +0.3 sd (PSI ~0.09)", True),
    "num_02": ("mean +0.05 sd", False),
    "num_03": ("spread x1.5", True),
    "num_04": ("3% of rows -> -999 sentinel", True),
    "num_20": ("heavy tail (lognormal) halved", True),
    "cat_00": ("new category, 10% of rows", True),
    "cat_01": ("3 of 20 levels double", True),
    "cat_02": ("one level +2 points", False),
}
EVIDENTLY_TIMEOUT_S = 600

EVIDENTLY_WORKER = r"""
import json, resource, sys, time
start = time.perf_counter()
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
ref_path, cur_path, numeric, categorical = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:5])
imported = time.perf_counter()
ref = pd.read_parquet(ref_path, columns=numeric + categorical)
cur = pd.read_parquet(cur_path, columns=numeric + categorical)
read = time.perf_counter()
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(cur, data_definition=definition),
    Dataset.from_pandas(ref, data_definition=definition),
)
flags = {}
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if not config["type"].endswith("ValueDrift"):
        continue
    value, threshold, method = metric["value"], config["threshold"], config["method"]
    drifted = value < threshold if "p_value" in method else value >= threshold
    flags[config["column"]] = {"drifted": bool(drifted), "method": method, "score": value}
done = time.perf_counter()
print(json.dumps({
    "import_s": imported - start, "read_s": read - imported, "compute_s": done - read,
    "total_s": done - imported, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "flags": flags,
}))
"""


def generate(rows: int, seed: int, path: Path, *, drift: bool) -> None:
    """25 numeric (20 normal with 5% missing, 5 lognormal) and 25 categorical (20 levels,
    unequal shares) columns; with ``drift``, the CHANGES above and the log's other columns."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    columns: dict[str, pa.Array] = {}
    for i, name in enumerate(NUMERIC):
        x = rng.normal(size=rows) if i < 20 else rng.lognormal(0.0, 2.0, size=rows)
        if drift and name in CHANGES:
            x = {
                "num_00": lambda v: v + 0.5,
                "num_01": lambda v: v + 0.3,
                "num_02": lambda v: v + 0.05,
                "num_03": lambda v: v * 1.5,
                "num_04": lambda v: np.where(rng.random(rows) < 0.03, -999.0, v),
                "num_20": lambda v: v / 2,
            }[name](x)
        if i < 20:
            x[rng.random(rows) < 0.05] = np.nan
        columns[name] = pa.array(x)
    levels = [f"level_{j:02d}" for j in range(20)]
    base = np.linspace(2.0, 1.0, 20)
    base /= base.sum()
    for name in CATEGORICAL:
        p = base.copy()
        if drift and name == "cat_01":
            p[[3, 7, 11]] *= 2
        if drift and name == "cat_02":
            p[5] += 0.02
        p /= p.sum()
        codes = rng.choice(20, size=rows, p=p).astype(np.int32)
        values = levels
        if drift and name == "cat_00":
            codes[rng.random(rows) < 0.1] = 20
            values = [*levels, "level_new"]
        columns[name] = pa.DictionaryArray.from_arrays(codes, pa.array(values)).dictionary_decode()
    if drift:  # what a prediction log holds besides the features; drift never reads them
        columns["request_id"] = pa.array([f"req-{i:08d}" for i in range(rows)])
        columns["ts"] = pa.array(1.7e9 + np.arange(rows, dtype=np.float64))
        columns["model_version"] = pa.array(np.full(rows, "3"))
        columns["value"] = pa.array(rng.normal(size=rows))
    pq.write_table(pa.table(columns), path)


def mlsd_worker(profile_path: str, current_path: str) -> None:
    """Run in a fresh process: read the profiled columns of the window, test them, print JSON."""
    import resource

    start = time.perf_counter()
    import pyarrow.parquet as pq
    import scipy.stats  # noqa: F401  (imported lazily by mlsd; not counted, like Evidently's)

    sys.path.insert(0, str(ROOT / "src"))
    from mlsd.monitoring.drift import detect

    imported = time.perf_counter()
    profile = json.loads(Path(profile_path).read_text())
    names = set(pq.read_schema(current_path).names)
    wanted = [c for c in profile["columns"] if c in names]  # the log's other columns stay on disk
    categorical = [c for c in wanted if profile["columns"][c]["type"] == "categorical"]
    # categories as Arrow dictionaries: counted by code, their strings never materialised
    table = pq.read_table(current_path, columns=wanted, read_dictionary=categorical)
    read = time.perf_counter()
    result = detect(profile, table)
    done = time.perf_counter()
    flags = {
        c["column"]: {
            "drifted": c["drifted"],
            "method": c["method"],
            "score": c["distance"],
            "p_adjusted": c["p_adjusted"],
        }
        for c in result.columns
    }
    print(
        json.dumps(
            {
                "import_s": imported - start,
                "read_s": read - imported,
                "compute_s": done - read,
                "total_s": done - imported,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "flags": flags,
            }
        )
    )


def run(cmd: list[str], timeout: float | None = None) -> dict | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        sys.stderr.write(exc.stderr[-3000:])
        raise
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensure_evidently() -> Path | None:
    python = EVIDENTLY_VENV / "bin" / "python"
    if python.exists():
        return python
    print(f"creating {EVIDENTLY_VENV} (evidently 0.7, pandas < 3)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "evidently==0.7.*", "pandas<3", "pyarrow"],
            check=True,
        )
    except subprocess.CalledProcessError:
        return None
    return python


def flag_table(results: dict[str, dict], rows: int) -> list[str]:
    """Markdown rows: the changed columns, then how many unchanged columns each tool flags."""
    tools = [t for t in ("mlsd", "evidently") if results.get(t)]
    lines = [
        "| column | change | matters | " + " | ".join(tools) + " |",
        "|---|---|---|" + "---|" * len(tools),
    ]
    for column, (change, matters) in CHANGES.items():
        cells = []
        for tool in tools:
            flag = results[tool]["flags"][column]
            mark = "**flagged**" if flag["drifted"] else "-"
            cells.append(f"{mark} ({_method(flag['method'])} {flag['score']:.3g})")
        lines.append(
            f"| {column} | {change} | {'yes' if matters else 'no'} | {' | '.join(cells)} |"
        )
    unchanged = [c for c in NUMERIC + CATEGORICAL if c not in CHANGES]
    cells = [
        f"{sum(results[t]['flags'][c]['drifted'] for c in unchanged)} of {len(unchanged)}"
        for t in tools
    ]
    lines.append(f"| the other {len(unchanged)} | none | no | {' | '.join(cells)} |")
    right = {
        t: sum(results[t]["flags"][c]["drifted"] == m for c, (_, m) in CHANGES.items())
        + sum(not results[t]["flags"][c]["drifted"] for c in unchanged)
        for t in tools
    }
    lines.append(
        f"| **right calls, {rows:,} rows** | | | "
        + " | ".join(f"{right[t]} of {len(CHANGES) + len(unchanged)}" for t in tools)
        + " |"
    )
    return lines


def _method(name: str) -> str:
    short = {
        "Wasserstein distance (normed)": "W/sd",
        "Jensen-Shannon distance": "JS",
        "K-S p_value": "KS p",
        "chi-square p_value": "chi2 p",
        "ks": "D",
        "chi2": "JS",
        "wasserstein": "W/sd",
    }
    return short.get(name, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--evidently-max-rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("PROFILE", "CURRENT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        mlsd_worker(*args.worker)
        return

    import pandas as pd

    sys.path.insert(0, str(ROOT / "src"))
    from mlsd.data.profile import profile

    evidently = None if args.no_evidently else ensure_evidently()
    measured: dict[int, dict[str, dict | None]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_drift_") as tmp:
        folder = Path(tmp)
        ref_path = folder / "reference.parquet"
        generate(args.reference, 0, ref_path, drift=False)
        start = time.perf_counter()
        ref = pd.read_parquet(ref_path)
        prof = profile(
            ref, dict.fromkeys(NUMERIC, "numeric") | dict.fromkeys(CATEGORICAL, "categorical")
        )
        profile_s = time.perf_counter() - start
        del ref
        profile_path = folder / "profile.json"
        profile_path.write_text(json.dumps(prof))
        print(
            f"reference {args.reference:,} rows profiled in {profile_s:.2f} s "
            f"({profile_path.stat().st_size / 1e3:.0f} kB of JSON)",
            flush=True,
        )
        for rows in args.rows:
            cur_path = folder / f"current-{rows}.parquet"
            generate(rows, 1, cur_path, drift=True)
            size_mb = cur_path.stat().st_size / 1e6
            print(f"\n{rows:,} current rows ({size_mb:.0f} MB Parquet)", flush=True)
            results: dict[str, dict | None] = {}
            results["mlsd"] = run(
                [sys.executable, __file__, "--worker", str(profile_path), str(cur_path)]
            )
            _show("mlsd", results["mlsd"])
            if evidently and rows <= args.evidently_max_rows:
                cmd = [
                    str(evidently),
                    "-c",
                    EVIDENTLY_WORKER,
                    str(ref_path),
                    str(cur_path),
                    json.dumps(NUMERIC),
                    json.dumps(CATEGORICAL),
                ]
                results["evidently"] = run(cmd, timeout=EVIDENTLY_TIMEOUT_S)
                if results["evidently"] is None:
                    notes.append(
                        f"Evidently did not finish {rows:,} rows within {EVIDENTLY_TIMEOUT_S} s"
                    )
                _show("evidently", results["evidently"])
            elif evidently:
                notes.append(f"Evidently skipped at {rows:,} rows (--evidently-max-rows)")
            measured[rows] = results
            for line in flag_table(results, rows):
                print(line)
    if args.no_write:
        return
    write_report(args, measured, profile_s, prof, notes)


def _show(tool: str, result: dict | None) -> None:
    if result is None:
        print(f"  {tool:<10} did not finish", flush=True)
        return
    print(
        f"  {tool:<10} {result['total_s']:7.2f} s (read {result['read_s']:.2f} + drift "
        f"{result['compute_s']:.2f}; imports {result['import_s']:.2f} not counted)   "
        f"peak RSS {result['peak_mb']:6.0f} MB   flags "
        f"{sorted(c for c, f in result['flags'].items() if f['drifted'])}",
        flush=True,
    )


def write_report(args, measured: dict, profile_s: float, prof: dict, notes: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import write_section

    command = "python benchmarks/bench_drift.py --rows " + " ".join(str(r) for r in args.rows)
    lines = [
        "## Drift (`benchmarks/bench_drift.py`)",
        "",
        f"Command: `{command}` on {date.today()}, {platform.machine()}, "
        f"{platform.python_version()}, {os.cpu_count()} cores. Reference {args.reference:,} "
        f"rows x 50 columns (25 numeric, 25 categorical), profiled once at training time in "
        f"{profile_s:.2f} s; mlsd reads only that profile, Evidently the reference rows.",
        "",
        "| current rows x 50 | mlsd (read + drift) | mlsd peak RSS | Evidently DataDriftPreset "
        "(read + drift) | Evidently peak RSS | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for rows, results in measured.items():
        m, e = results.get("mlsd"), results.get("evidently")
        ev, ev_mb, ratio = "-", "-", "-"
        if e:
            ev = f"{e['total_s']:.2f} s ({e['read_s']:.2f} + {e['compute_s']:.2f})"
            ev_mb = f"{e['peak_mb']:.0f} MB"
            ratio = f"{e['total_s'] / m['total_s']:.1f}x"
        lines.append(
            f"| {rows:,} | {m['total_s']:.2f} s ({m['read_s']:.2f} + {m['compute_s']:.2f}) | "
            f"{m['peak_mb']:.0f} MB | {ev} | {ev_mb} | {ratio} |"
        )
    imports = {
        tool: max(r[tool]["import_s"] for r in measured.values() if r.get(tool))
        for tool in ("mlsd", "evidently")
        if any(r.get(tool) for r in measured.values())
    }
    lines += [
        "",
        "Each tool runs in a fresh process; imports are not counted (at most "
        + ", ".join(f"{tool} {s:.1f} s" for tool, s in imports.items())
        + " here). Jensen-Shannon: mlsd in base 2, Evidently in base e (x1.2 smaller).",
    ]
    for rows, results in measured.items():
        lines += ["", f"Columns flagged at {rows:,} rows (distance or score in brackets):", ""]
        lines += flag_table(results, rows)
    lines += [
        "",
        "mlsd flags a column when its Benjamini-Hochberg-corrected p-value is under 0.01 and a "
        "distance is material (KS D >= 0.05 or Wasserstein >= 0.1 sd; Jensen-Shannon >= 0.05); "
        "Evidently, with more than 1,000 reference rows, when Wasserstein / sd >= 0.1 or "
        "Jensen-Shannon >= 0.1, whatever the window size.",
    ]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    write_section("## Drift (", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
