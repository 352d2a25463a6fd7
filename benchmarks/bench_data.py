"""Data-path benchmark: snapshot + validate + split + featurize on a generated 1M x 50 table.

    python benchmarks/bench_data.py [--rows 1000000] [--no-write]

Prints wall time per stage and the process's peak memory against the in-memory size of the
table, and compares with the raw libraries doing the least equivalent work in the same run:
pandas (describe + duplicated) for validation, scikit-learn's ColumnTransformer (median
imputer + ordinal encoder) for featurization. Results go to BENCHMARKS.md.
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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from report import write_section  # noqa: E402

from mlsd.columns import select_features  # noqa: E402
from mlsd.data.snapshot import load_dataset, split_dataset  # noqa: E402
from mlsd.data.validate import validate_dataset  # noqa: E402
from mlsd.features import Featurizer  # noqa: E402
from mlsd.spec import parse_spec  # noqa: E402
from mlsd.stages import peak_memory_mb  # noqa: E402
from mlsd.workspace import Workspace  # noqa: E402


def generate(rows: int, path: Path) -> int:
    """25 numeric (5% missing) and 25 categorical (20 levels) columns, a binary target.

    Returns the size of the table in memory (Arrow buffers, strings decoded), in bytes.
    """
    rng = np.random.default_rng(0)
    columns: dict[str, pa.Array] = {}
    signal = np.zeros(rows)
    for i in range(25):
        x = rng.normal(size=rows)
        signal += x * (0.2 if i < 5 else 0.0)
        x[rng.random(rows) < 0.05] = np.nan
        columns[f"num_{i:02d}"] = pa.array(x)
    levels = np.array([f"level_{j:02d}" for j in range(20)])
    for i in range(25):
        codes = rng.integers(0, 20, rows).astype(np.int32)
        columns[f"cat_{i:02d}"] = pa.DictionaryArray.from_arrays(codes, levels).dictionary_decode()
    columns["target"] = pa.array(np.where(signal + rng.normal(size=rows) > 1.0, "yes", "no"))
    table = pa.table(columns)
    pq.write_table(table, path)
    return table.nbytes


def timed(label: str, results: dict, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    results[label] = time.perf_counter() - start
    print(f"  {label:<34}{results[label]:7.2f} s   peak RSS {peak_memory_mb():7.0f} MB", flush=True)
    return out


def raw_pandas_validation(path: Path) -> None:
    """What a hand-rolled check costs: read, describe every column, count duplicate rows."""
    df = pd.read_parquet(path)
    df.describe(include="all")
    df.isna().mean()
    df.duplicated().sum()


def sklearn_featurize(train: pd.DataFrame, full: pd.DataFrame, numeric, categorical) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OrdinalEncoder

    ct = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median", add_indicator=True), numeric),
            (
                "cat",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                    min_frequency=5,
                    max_categories=100,
                ),
                categorical,
            ),
        ]
    )
    ct.fit(train)
    ct.transform(full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument("--generate", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(generate(args.rows, Path(args.generate)))
        return

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "table.parquet"
        print(f"generating {args.rows:,} x 50 table ...", flush=True)
        # in a child process, so this process's peak memory is mlsd's alone
        child = subprocess.run(
            [sys.executable, __file__, "--rows", str(args.rows), "--generate", str(data)],
            check=True,
            capture_output=True,
            text=True,
        )
        table_mb = float(child.stdout) / 2**20
        base_rss = peak_memory_mb()
        spec = parse_spec(
            f"name: bench\nproblem: {{task: binary, target: target}}\ndata: {{source: {data}}}\n"
        )
        spec._path = tmp / "system.yaml"
        ws = Workspace(tmp / "ws")

        print("mlsd:")
        dataset = timed("load + schema + snapshot", results, load_dataset, spec, ws)
        report = timed("validate (incl. split)", results, validate_dataset, spec, dataset)
        labels, _ = split_dataset(dataset, spec)
        columns = select_features(spec, dataset.schema.types)
        frame = dataset.frame
        train = frame[labels == 0]
        inputs = {c: train[c].array for c in columns}
        fitted = timed(
            "featurizer fit (train split)",
            results,
            Featurizer(columns, spec.features, encoding="codes").fit,
            inputs,
        )
        matrix = timed(
            "featurizer transform (all rows)",
            results,
            fitted.transform,
            {c: frame[c].array for c in columns},
        )
        mlsd_peak = peak_memory_mb()
        del inputs, matrix

        print("raw libraries, same work:")
        timed("pandas read+describe+duplicated", results, raw_pandas_validation, data)
        try:
            timed(
                "sklearn ColumnTransformer fit+transform",
                results,
                sklearn_featurize,
                train,
                frame,
                [c for c in columns if c.startswith("num")],
                [c for c in columns if c.startswith("cat")],
            )
        except ImportError:
            print("  scikit-learn not installed: no featurization ratio (pip install scikit-learn)")

    validate_s = results["load + schema + snapshot"] + results["validate (incl. split)"]
    featurize_s = (
        results["featurizer fit (train split)"] + results["featurizer transform (all rows)"]
    )
    lines = [
        f"| snapshot + validate + split | {validate_s:.2f} s | "
        f"{results['pandas read+describe+duplicated']:.2f} s (pandas describe + duplicated) | "
        f"{validate_s / results['pandas read+describe+duplicated']:.2f}x |",
    ]
    if "sklearn ColumnTransformer fit+transform" in results:
        sk = results["sklearn ColumnTransformer fit+transform"]
        lines.append(
            f"| featurize fit + transform | {featurize_s:.2f} s | {sk:.2f} s "
            f"(scikit-learn ColumnTransformer) | {featurize_s / sk:.2f}x |"
        )
    summary = (
        f"rows {args.rows:,} x 50 columns; the table in memory (Arrow, as read) {table_mb:.0f} MB; "
        f"peak RSS through the mlsd stages {mlsd_peak:.0f} MB, of which {base_rss:.0f} MB is the "
        f"interpreter and imports: {(mlsd_peak - base_rss) / table_mb:.1f}x the table; "
        f"anomalies found: {len(report.anomalies)}"
    )
    print(summary)
    for line in lines:
        print(line)
    if args.no_write:
        return
    section = "\n".join(
        [
            "## Data path (`benchmarks/bench_data.py`)",
            "",
            f"Command: `python benchmarks/bench_data.py --rows {args.rows}` on {date.today()}, "
            f"{platform.machine()}, {platform.python_version()}, 2 cores.",
            "",
            "| stage | mlsd | raw library, same run | ratio (mlsd / raw) |",
            "|---|---|---|---|",
            *lines,
            "",
            "Stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in results.items()),
            "",
            summary,
            "",
        ]
    )
    write_section("## Data path", section)


if __name__ == "__main__":
    main()
