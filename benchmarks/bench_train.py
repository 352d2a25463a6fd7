"""Training benchmark: `mlsd train` against FLAML AutoML, same rows, same time budget.

    python benchmarks/bench_train.py [--budget 30] [--datasets bikeshare,caravan,...] [--no-write]

For each data set mlsd trains from a system.yaml in a temporary folder with the budget as its
``models.tuning.budget_s`` (shared by the family x class-weight variants it tunes). FLAML
then fits on exactly mlsd's train rows, selects on mlsd's valid rows (holdout) within the
same budget, and is scored on mlsd's test rows by mlsd's own metrics.
Wall times are the whole `train()` call for mlsd (validation, baselines, tuning, packaging,
registration) and the whole `AutoML.fit()` call for FLAML; imports are warmed for both first.
Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from report import write_section as replace_section  # noqa: E402

from mlsd.columns import select_features  # noqa: E402
from mlsd.data.snapshot import load_dataset, split_dataset  # noqa: E402
from mlsd.data.split import TEST, TRAIN, VALID  # noqa: E402
from mlsd.data.target import encode_target  # noqa: E402
from mlsd.evaluation.metrics import compute, get_metric  # noqa: E402
from mlsd.models.train import primary_metric, train  # noqa: E402
from mlsd.spec import SystemSpec, load_spec, parse_spec  # noqa: E402
from mlsd.workspace import Workspace  # noqa: E402

# mlsd's LightGBM runs one thread below 100k rows (every table here), so FLAML gets one job
# too. Linear models on both sides (scikit-learn) use whatever threads the BLAS library takes.
N_JOBS = 1
FLAML_METRIC = {"mae": "mae", "rmse": "rmse", "roc_auc": "roc_auc", "pr_auc": "ap"}
SECTION = "## Training (`benchmarks/bench_train.py`)"


@dataclass
class Outcome:
    """One data set's head-to-head result."""

    name: str
    rows: tuple[int, int, int]  # train, valid, test
    metric: str
    direction: str  # max | min
    variants: int
    mlsd_test: float
    mlsd_valid: float
    mlsd_wall: float
    mlsd_tuning: float
    mlsd_chosen: str
    flaml_test: float
    flaml_valid: float
    flaml_wall: float
    flaml_best: str

    @property
    def ratio(self) -> float:
        return self.mlsd_test / self.flaml_test

    @property
    def mlsd_wins(self) -> bool | None:
        """True if mlsd's test score is better, False if worse, None if equal to 4 digits."""
        if f"{self.mlsd_test:.4g}" == f"{self.flaml_test:.4g}":
            return None
        better = self.mlsd_test > self.flaml_test
        return better if self.direction == "max" else not better


# --- the systems ------------------------------------------------------------------------------


def example_system(name: str) -> Callable[[Path], SystemSpec]:
    """A bundled example's system.yaml as is (its data stays where it is)."""
    return lambda folder: load_spec(ROOT / "examples" / name / "system.yaml")


def sklearn_system(
    loader: str, problem: str, primary: str, split: str, relabel: Callable | None = None
) -> Callable[[Path], SystemSpec]:
    """A scikit-learn data set written as CSV beside a system.yaml in ``folder``."""

    def build(folder: Path) -> SystemSpec:
        import sklearn.datasets

        df = getattr(sklearn.datasets, loader)(as_frame=True).frame
        df = df.rename(columns=lambda c: c.replace(" ", "_"))
        if relabel:
            df["target"] = relabel(df["target"])
        df.to_csv(folder / "data.csv", index=False)
        text = (
            f"name: {loader.removeprefix('load_')}\nproblem: {problem}\n"
            f"metrics: {{primary: {primary}}}\n"
            f"data:\n  source: data.csv\n  split: {{method: {split}}}\n"
        )
        (folder / "system.yaml").write_text(text)
        spec = parse_spec(text)
        spec._path = folder / "system.yaml"
        return spec

    return build


SYSTEMS: dict[str, Callable[[Path], SystemSpec]] = {
    "bikeshare": example_system("bikeshare"),
    "caravan": example_system("caravan"),
    "breast_cancer": sklearn_system(
        "load_breast_cancer",
        "{task: binary, target: target, positive_class: malignant}",
        "roc_auc",
        "stratified",
        relabel=lambda t: np.where(t == 1, "benign", "malignant"),
    ),
    "diabetes": sklearn_system(
        "load_diabetes", "{task: regression, target: target}", "rmse", "random"
    ),
}


# --- the runs ----------------------------------------------------------------------------------


def split_rows(spec: SystemSpec, ws: Workspace) -> dict[str, Any]:
    """mlsd's own split of the spec's data: frame, encoded y, row indices and feature types."""
    dataset = load_dataset(spec, ws)
    labels, _ = split_dataset(dataset, spec)
    y, classes = encode_target(dataset.frame, spec)
    known = ~np.isnan(y)
    rows = {
        name: np.flatnonzero(known & (labels == code))
        for name, code in (("train", TRAIN), ("valid", VALID), ("test", TEST))
    }
    columns = select_features(spec, dataset.schema.types)
    return {"frame": dataset.frame, "y": y, "classes": classes, "rows": rows, "columns": columns}


def flaml_frame(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """mlsd's feature columns as FLAML takes them: categoricals as pandas categories."""
    out = {}
    for name, kind in columns.items():
        col = frame[name]
        if kind == "categorical":
            out[name] = col.astype("category")
        elif kind == "datetime":
            out[name] = pd.to_datetime(col).astype("int64").astype(float) / 1e9
        else:  # numeric, boolean
            out[name] = pd.to_numeric(col, errors="coerce").astype(float)
    return pd.DataFrame(out, index=frame.index)


def run_flaml(spec: SystemSpec, split: dict[str, Any], budget: float, metric: str) -> dict:
    """FLAML AutoML on mlsd's rows; scores by mlsd's metrics on valid and test."""
    from flaml import AutoML

    task = spec.problem.task
    X = flaml_frame(split["frame"], split["columns"])
    parts = {s: X.iloc[r] for s, r in split["rows"].items()}
    ys = {s: split["y"][r] for s, r in split["rows"].items()}
    if task != "regression":
        ys = {s: v.astype(int) for s, v in ys.items()}
    automl = AutoML()
    start = time.perf_counter()
    automl.fit(
        X_train=parts["train"],
        y_train=ys["train"],
        X_val=parts["valid"],
        y_val=ys["valid"],
        task="regression" if task == "regression" else "classification",
        metric=FLAML_METRIC[metric],
        eval_method="holdout",
        time_budget=budget,
        seed=spec.seed,
        n_jobs=N_JOBS,
        verbose=0,
        mlflow_logging=False,  # mlflow is installed for mlsd; keep FLAML out of it
    )
    wall = time.perf_counter() - start
    scores = {}
    for s in ("valid", "test"):
        if task == "regression":
            pred = automl.predict(parts[s])
        else:  # P(positive); the positive class is 1 in mlsd's encoding
            pred = automl.predict_proba(parts[s])[:, list(automl.classes_).index(1)]
        scores[s] = compute(task, ys[s], np.asarray(pred, dtype=float), names=[metric])[metric]
    return {"wall": wall, "best": automl.best_estimator, **scores}


def run_one(name: str, budget: float, tmp: Path) -> Outcome:
    """mlsd then FLAML on one data set, with the same split and budget."""
    folder = tmp / name
    folder.mkdir()
    spec = SYSTEMS[name](folder)
    metric = primary_metric(spec)
    spec.models.tuning.budget_s = budget  # the whole search's, shared by the variants

    print(f"{name}: mlsd, {budget:.0f} s ...", flush=True)
    ws = Workspace(folder / "ws")
    start = time.perf_counter()
    result = train(spec, ws, progress=False).to_dict()
    mlsd_wall = time.perf_counter() - start
    chosen = next(e for e in result["leaderboard"] if e["chosen"])
    candidates = [e for e in result["leaderboard"] if e["kind"] == "candidate"]
    tuning = sum(e["fit_s"] for e in candidates)

    split = split_rows(spec, ws)  # the split mlsd recorded and trained on
    print(f"{name}: FLAML, {budget:.0f} s ...", flush=True)
    flaml = run_flaml(spec, split, budget, metric)
    return Outcome(
        name=name,
        rows=tuple(len(split["rows"][s]) for s in ("train", "valid", "test")),
        metric=metric,
        direction=get_metric(metric).direction,
        variants=len(candidates),
        mlsd_test=result["test"][metric],
        mlsd_valid=chosen["valid"][metric],
        mlsd_wall=mlsd_wall,
        mlsd_tuning=tuning,
        mlsd_chosen=result["chosen"],
        flaml_test=flaml["test"],
        flaml_valid=flaml["valid"],
        flaml_wall=flaml["wall"],
        flaml_best=flaml["best"],
    )


# --- the report --------------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> list[str]:
    lines = [
        "| data set | metric | mlsd test | FLAML test | ratio mlsd/FLAML | mlsd wall | "
        "FLAML wall | time ratio | mlsd chosen | FLAML best |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        better = "higher" if o.direction == "max" else "lower"
        lines.append(
            f"| {o.name} | {o.metric} ({better} is better) | {o.mlsd_test:.4f} | "
            f"{o.flaml_test:.4f} | {o.ratio:.3f} ({'>' if o.direction == 'max' else '<'} 1: "
            f"mlsd better) | {o.mlsd_wall:.1f} s | {o.flaml_wall:.1f} s | "
            f"{o.mlsd_wall / o.flaml_wall:.2f}x | {o.mlsd_chosen} | {o.flaml_best} |"
        )
    return lines


def details(o: Outcome) -> str:
    return (
        f"{o.name}: rows train/valid/test {'/'.join(map(str, o.rows))}; mlsd tuned "
        f"{o.variants} variants in {o.mlsd_tuning:.1f} s of tuning ({o.mlsd_wall:.1f} s wall); "
        f"valid {o.metric}: mlsd {o.mlsd_valid:.4f}, "
        f"FLAML {o.flaml_valid:.4f}"
    )


def verdict(o: Outcome, budget: float) -> str:
    """One plain sentence: who won on test, and whether mlsd met the goal on this data set."""
    gap = abs(o.mlsd_test - o.flaml_test) / abs(o.flaml_test) * 100
    scores = f"{o.metric} {o.mlsd_test:.4f} vs {o.flaml_test:.4f}"
    if o.mlsd_wins is None:
        quality = f"mlsd and FLAML tie on test ({scores})"
    elif o.mlsd_wins:
        quality = f"mlsd beats FLAML on test ({scores}, a {gap:.1f}% gap)"
    else:
        quality = f"FLAML beats mlsd on test ({scores}, a {gap:.1f}% gap)"
    in_time = o.mlsd_wall <= o.flaml_wall
    speed = (
        f"mlsd took {o.mlsd_wall:.1f} s against FLAML's {o.flaml_wall:.1f} s "
        f"(budget {budget:.0f} s)"
    )
    met = o.mlsd_wins is not False and in_time
    return f"**{o.name}**: {quality}; {speed}: goal {'met' if met else 'not met'}."


def write_section(args: argparse.Namespace, outcomes: list[Outcome]) -> None:
    """Replace (or append) the Training section of BENCHMARKS.md."""
    import flaml

    section = "\n".join(
        [
            SECTION,
            "",
            f"Command: `python benchmarks/bench_train.py --budget {args.budget:g} --datasets "
            f"{','.join(o.name for o in outcomes)}` on {date.today()}, {platform.machine()}, "
            f"{platform.python_version()}, {os.cpu_count()} cores; FLAML {flaml.__version__}.",
            "",
            "Same train/valid/test rows (mlsd's split) and the same feature columns for both; "
            f"the same time budget ({args.budget:g} s: mlsd's `models.tuning.budget_s`, shared "
            f"by the variants it tunes, FLAML gets it as `time_budget`, holdout on mlsd's valid "
            f"rows, {N_JOBS} job); both scored on test by mlsd's metrics. Wall time is the whole "
            "`train()` for mlsd (validation, baselines, tuning, packaging, registration) and the "
            "whole "
            "`AutoML.fit()` for FLAML. Goal: at least as good as FLAML on each data set, in no "
            "more time.",
            "",
            *table(outcomes),
            "",
            *(f"- {details(o)}" for o in outcomes),
            "",
            *(f"- {verdict(o, args.budget)}" for o in outcomes),
            "",
        ]
    )
    replace_section("## Training", section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per tool and data set")
    parser.add_argument("--datasets", default=",".join(SYSTEMS), help="comma-separated")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        parser.error(f"unknown data sets {unknown}; choose from {', '.join(SYSTEMS)}")
    try:
        import flaml.automl  # noqa: F401  (warms FLAML's imports: lightgbm, xgboost, sklearn)
    except ImportError:
        sys.exit("FLAML is not installed: pip install -e '.[bench]'")
    import lightgbm  # noqa: F401  (warms mlsd's heavy imports, as FLAML's are above)
    import mlflow  # noqa: F401
    import optuna  # noqa: F401

    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            outcomes.append(run_one(name, args.budget, Path(tmp)))
    print()
    for line in [*table(outcomes), "", *map(details, outcomes), ""]:
        print(line)
    for o in outcomes:
        print(verdict(o, args.budget))
    if not args.no_write:
        write_section(args, outcomes)


if __name__ == "__main__":
    main()
