"""Training benchmark: `mlsd train` against FLAML AutoML, same rows, same time budget.

    python benchmarks/bench_train.py [--budgets 30,60 | --budget 30] [--mlsd-budget 0]
                                     [--datasets bikeshare,caravan,...] [--no-write]

For each data set mlsd trains from a system.yaml in a temporary folder with the budget as its
``models.tuning.budget_s`` (the whole run's). FLAML then fits on exactly mlsd's train rows,
selects on mlsd's valid rows (holdout) within the same budget, and is scored on mlsd's test
rows by mlsd's own metrics; so is mlsd's own linear model (`models.candidates: [linear]`, the
same budget), the floor mlsd must never fall below. The difference mlsd − FLAML on test comes
with a 95% paired bootstrap interval (the test rows resampled, both scored on each
resample): an interval holding 0 is a tie. The corpus tables (tests/corpus/tables.py, read
from installed packages) start from `mlsd init`, as a new user's would.
Wall times are the whole `train()` call for mlsd (validation, baselines, tuning, packaging,
registration) and the whole `AutoML.fit()` call for FLAML; imports are warmed for both first.
``--mlsd-budget 0`` gives mlsd (and its linear floor) its defaults instead: what a user gets
without touching the spec, against FLAML at the budget. ``movielens_ratings`` (100,000 rows,
from the recbole wheel) runs only when named. Results go to BENCHMARKS.md, each budget in a
subsection of its own that a later run of the same budget and tables replaces.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
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
FLAML_METRIC = {
    "mae": "mae",
    "rmse": "rmse",
    "r2": "r2",
    "roc_auc": "roc_auc",
    "pr_auc": "ap",
    "log_loss": "log_loss",
    "accuracy": "accuracy",
}
BOOTSTRAPS = 1000
sys.path.insert(0, str(ROOT / "tests" / "corpus"))
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
    budget: float = 0.0  # FLAML's, and mlsd's unless mlsd_budget says otherwise
    mlsd_budget: float | None = None  # mlsd's own budget when it differs (0: its defaults)
    task: str = ""
    interval: tuple[float, float] | None = None  # 95% of mlsd − FLAML on test, resampled
    linear_test: float | None = None  # mlsd's own tuned linear model
    linear_interval: tuple[float, float] | None = None  # 95% of mlsd − linear
    refused: str = ""  # why mlsd's gate kept the model out of the registry (no interval then)
    total_wall: float = 0.0  # the whole row: both mlsd runs, FLAML and the bootstraps

    @property
    def time_ratio(self) -> float:
        """mlsd's wall time over FLAML's: above 1, mlsd took longer."""
        return self.mlsd_wall / self.flaml_wall

    @property
    def mlsd_wins(self) -> bool | None:
        """True if mlsd's test score is better beyond the bootstrap interval, False if worse,
        None for a tie (the interval holds 0; without one, equal to 4 digits)."""
        return _verdict(self.mlsd_test, self.flaml_test, self.interval, self.direction)

    @property
    def below_linear(self) -> bool:
        """mlsd's choice is worse than its own linear model beyond the interval."""
        if self.linear_test is None:
            return False
        return (
            _verdict(self.mlsd_test, self.linear_test, self.linear_interval, self.direction)
            is False
        )


def _verdict(a: float, b: float, interval: tuple | None, direction: str) -> bool | None:
    """Whether ``a`` beats ``b`` (True), loses (False) or ties (None)."""
    if interval is not None and interval[0] <= 0 <= interval[1]:
        return None
    if interval is None and f"{a:.4g}" == f"{b:.4g}":
        return None
    better = a > b
    return better if direction == "max" else not better


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


def corpus_system(name: str) -> Callable[[Path], SystemSpec]:
    """A table of the corpus (tests/corpus/tables.py) written as CSV, then `mlsd init` on it
    as a new user would run it: the task, the split and the metric are its choice."""

    def build(folder: Path) -> SystemSpec:
        import contextlib
        import io

        from tables import TABLES

        from mlsd.cli import main as mlsd_main

        table = next(t for t in TABLES if t.name == name)
        table.load().to_csv(folder / "data.csv", index=False)
        args = ["init", "data.csv", "--target", table.target, "--name", table.name]
        if table.time:
            args += ["--time", *table.time]
        if table.entity:
            args += ["--id", table.entity]
        with contextlib.chdir(folder), contextlib.redirect_stdout(io.StringIO()):
            code = mlsd_main(args)
        if code != 0:
            raise RuntimeError(f"mlsd init failed on {name} (exit {code})")
        return load_spec(folder / "system.yaml")

    return build


def movielens_system(folder: Path) -> SystemSpec:
    """MovieLens 100k's ratings as a regression table of 100,000 rows (the rating from the
    user, the movie and what was known of both before it; ids and times left out), read from
    the installed recbole wheel: the largest table here."""
    from mlsd.datasets.movielens import ranking_table

    table = ranking_table().drop(columns=["user_id", "item_id", "timestamp"])
    table.to_csv(folder / "data.csv", index=False)
    text = (
        "name: movielens_ratings\nproblem: {task: regression, target: rating}\n"
        "metrics: {primary: rmse}\ndata:\n  source: data.csv\n  split: {method: random}\n"
    )
    (folder / "system.yaml").write_text(text)
    spec = parse_spec(text)
    spec._path = folder / "system.yaml"
    return spec


CORPUS = ("fair", "anes96", "phishing", "wine", "penguins", "image_segments", "randhie", "star98")
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
    **{name: corpus_system(name) for name in CORPUS},
    "movielens_ratings": movielens_system,
}
STANDARD = tuple(n for n in SYSTEMS if n != "movielens_ratings")  # the default run's tables


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
    scores, preds = {}, {}
    for s in ("valid", "test"):
        if task == "regression":
            pred = automl.predict(parts[s])
        elif task == "binary":  # P(positive); the positive class is 1 in mlsd's encoding
            pred = automl.predict_proba(parts[s])[:, list(automl.classes_).index(1)]
        else:  # every class's probability, in mlsd's class order (0..k-1)
            proba = automl.predict_proba(parts[s])
            pred = np.zeros((len(proba), len(split["classes"])))
            pred[:, np.asarray(automl.classes_, dtype=int)] = proba
        preds[s] = np.asarray(pred, dtype=float)
        scores[s] = compute(task, ys[s], preds[s], names=[metric])[metric]
    return {"wall": wall, "best": automl.best_estimator, "pred": preds["test"], **scores}


def package_predictions(result: dict, split: dict[str, Any]) -> np.ndarray | None:
    """The registered package's outputs on the test rows (None when nothing was registered)."""
    from mlsd.features import frame_inputs
    from mlsd.models import package

    if not result.get("package"):
        return None
    loaded = package.load(result["package"])
    rows = split["frame"].iloc[split["rows"]["test"]]
    return loaded.predict_matrix(frame_inputs(rows, split["columns"]))


def paired_interval(
    task: str, y: np.ndarray, a: np.ndarray, b: np.ndarray, metric: str, seed: int = 0
) -> tuple[float, float] | None:
    """The 95% percentile interval of metric(a) − metric(b) over test rows resampled."""
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(BOOTSTRAPS):
        idx = rng.integers(0, len(y), len(y))
        one = compute(task, y[idx], a[idx], names=[metric])[metric]
        two = compute(task, y[idx], b[idx], names=[metric])[metric]
        if one is not None and two is not None and np.isfinite(one - two):
            diffs.append(one - two)
    if len(diffs) < BOOTSTRAPS // 2:
        return None
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def check_package(
    name: str, task: str, y: np.ndarray, pred: np.ndarray | None, scored: Any, metric: str
) -> None:
    """Warn when the package's test predictions do not score what train() reported: the
    interval would then be about another model than the row's point estimate."""
    if pred is None or scored is None:
        return
    again = compute(task, y, pred, names=[metric])[metric]
    if again is None or not np.isclose(again, scored, rtol=1e-6, atol=1e-9):
        print(f"{name}: WARNING package scores {again} on test, train() said {scored}", flush=True)


def run_one(name: str, budget: float, tmp: Path, mlsd_budget: float | None = None) -> Outcome:
    """mlsd, its linear model alone, then FLAML on one data set, same split and budget (mlsd
    at ``mlsd_budget`` instead when given: 0 is its defaults, what a user gets untouched)."""
    own = budget if mlsd_budget is None else mlsd_budget
    folder = tmp / f"{name}-{budget:g}-{own:g}"
    folder.mkdir()
    began = time.perf_counter()
    spec = SYSTEMS[name](folder)
    metric = primary_metric(spec)
    spec.models.tuning.budget_s = own  # the whole run's, shared by the variants

    print(f"{name}: mlsd, {own:.0f} s ...", flush=True)
    ws = Workspace(folder / "ws")
    start = time.perf_counter()
    result = train(spec, ws, progress=False).to_dict()
    mlsd_wall = time.perf_counter() - start
    chosen = next(e for e in result["leaderboard"] if e["chosen"])
    candidates = [e for e in result["leaderboard"] if e["kind"] == "candidate"]
    tuning = sum(e["fit_s"] for e in candidates)

    split = split_rows(spec, ws)  # the split mlsd recorded and trained on
    y_test = split["y"][split["rows"]["test"]]
    task = spec.problem.task
    ours = package_predictions(result, split)
    check_package(name, task, y_test, ours, result["test"][metric], metric)

    print(f"{name}: mlsd linear only, {own:.0f} s ...", flush=True)
    alone = spec.model_copy(deep=True)
    alone.models.candidates = ["linear"]
    linear = train(alone, Workspace(folder / "ws-linear"), progress=False).to_dict()
    linear_pred = package_predictions(linear, split)
    check_package(
        f"{name} linear", task, y_test, linear_pred, (linear["test"] or {}).get(metric), metric
    )

    print(f"{name}: FLAML, {budget:.0f} s ...", flush=True)
    flaml = run_flaml(spec, split, budget, metric)
    interval = linear_interval = None
    if ours is not None:
        interval = paired_interval(task, y_test, ours, flaml["pred"], metric)
        if linear_pred is not None:
            linear_interval = paired_interval(task, y_test, ours, linear_pred, metric)
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
        budget=budget,
        mlsd_budget=mlsd_budget,
        task=task,
        interval=interval,
        linear_test=(linear["test"] or {}).get(metric),
        linear_interval=linear_interval,
        refused="; ".join(result["reasons"]),
        total_wall=time.perf_counter() - began,
    )


# --- the report --------------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> list[str]:
    lines = [
        "| data set | task | metric | rows train/valid/test | mlsd test | FLAML test | "
        "mlsd − FLAML, 95% CI | verdict | mlsd linear test | mlsd wall | FLAML wall | "
        "time ratio | mlsd chosen | FLAML best |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        better = "higher" if o.direction == "max" else "lower"
        ci = "-" if o.interval is None else f"[{o.interval[0]:+.4f}, {o.interval[1]:+.4f}]"
        verdict = {True: "mlsd better", False: "FLAML better", None: "tie"}[o.mlsd_wins]
        if o.refused:  # no package to resample: the verdict is the point estimates'
            verdict += f" (not registered: {o.refused})"
        linear = "-" if o.linear_test is None else f"{o.linear_test:.4f}"
        if o.below_linear:
            linear += " (mlsd below it)"
        lines.append(
            f"| {o.name} | {o.task} | {o.metric} ({better} is better) | "
            f"{'/'.join(map(str, o.rows))} | {o.mlsd_test:.4f} | {o.flaml_test:.4f} | "
            f"{o.mlsd_test - o.flaml_test:+.4f} {ci} | {verdict} | {linear} | "
            f"{o.mlsd_wall:.1f} s | {o.flaml_wall:.1f} s | {o.time_ratio:.2f} | "
            f"{o.mlsd_chosen} | {o.flaml_best} |"
        )
    return lines


def title(budget: float, mlsd_budget: float | None) -> str:
    """The subsection of one budget: ``Budget 30 s``, or mlsd's own beside FLAML's."""
    if mlsd_budget is None:
        return f"Budget {budget:g} s"
    own = "its defaults (budget 0)" if mlsd_budget == 0 else f"{mlsd_budget:g} s"
    return f"mlsd at {own}, FLAML at {budget:g} s"


def summary(outcomes: list[Outcome], budget: float, skipped: dict | None = None) -> str:
    """Wins, ties and losses at one budget, where mlsd took longer or fell below linear, and
    the tables that did not run (``skipped``: name to reason)."""
    wins = sum(o.mlsd_wins is True for o in outcomes)
    ties = sum(o.mlsd_wins is None for o in outcomes)
    losses = [o.name for o in outcomes if o.mlsd_wins is False]
    slower = [o.name for o in outcomes if o.mlsd_wall > o.flaml_wall]
    below = [o.name for o in outcomes if o.below_linear]
    at = title(budget, outcomes[0].mlsd_budget if outcomes else None)
    return (
        f"{at}: mlsd better on {wins}, tied on {ties}, worse on {len(losses)}"
        + (f" ({', '.join(losses)})" if losses else "")
        + f" of {len(outcomes)} tables; more wall time than FLAML on "
        + (", ".join(slower) if slower else "none")
        + "; below its own linear model on "
        + (", ".join(below) if below else "none")
        + "."
        + "".join(f" Not run: {name} ({why})." for name, why in (skipped or {}).items())
    )


def write_section(
    budgets: list[float],
    names: list[str],
    outcomes: list[Outcome],
    skipped: dict,
    mlsd_budget: float | None = None,
) -> None:
    """Replace this run's budget subsections of the Training section of BENCHMARKS.md, each
    with the command that produced it; subsections of other budgets stay."""
    import flaml

    runs = {}
    for budget in budgets:
        mine = [o for o in outcomes if o.budget == budget]
        command = (
            f"`python benchmarks/bench_train.py --budgets {budget:g}"
            + ("" if mlsd_budget is None else f" --mlsd-budget {mlsd_budget:g}")
            + f" --datasets {','.join(names)}` on {date.today()}, {platform.machine()}, "
            f"{platform.python_version()}, {os.cpu_count()} cores; FLAML {flaml.__version__}."
        )
        heading = f"### {title(budget, mlsd_budget)}"
        if names != list(STANDARD):  # a run on other tables keeps its own subsection
            heading += f": {', '.join(names)}"
        runs[heading] = "\n".join(
            [
                heading,
                "",
                f"Command: {command}",
                "",
                *table(mine),
                "",
                summary(mine, budget, skipped.get(budget)),
                "",
            ]
        )
    kept = _subsections()
    kept.update(runs)  # a subsection run again is replaced in place; a new one is appended
    section = "\n".join(
        [
            SECTION,
            "",
            "Same train/valid/test rows (mlsd's split) and the same feature columns for both; "
            "the same time budget (mlsd's `models.tuning.budget_s`, the whole run's; FLAML's "
            f"`time_budget`, holdout on mlsd's valid rows, {N_JOBS} job); both scored on test by "
            "mlsd's metrics. The difference comes with a 95% paired bootstrap interval over "
            f"the test rows ({BOOTSTRAPS} resamples): an interval holding 0 is a tie. `mlsd "
            "linear` is mlsd with `models.candidates: [linear]` at the same budget, the floor. "
            "Wall time is the whole `train()` for mlsd (validation, baselines, tuning, "
            "packaging, registration) and the whole `AutoML.fit()` for FLAML. Goal: at least "
            "as good as FLAML on each table (a tie counts), in no more wall time, and never "
            "below mlsd's own linear model. The corpus tables start from `mlsd init`. A "
            "subsection titled `mlsd at …, FLAML at …` gives mlsd (and its linear floor) a "
            "budget of its own: at 0, the defaults a user gets without touching the spec.",
            "",
            *kept.values(),
        ]
    )
    replace_section("## Training", section)


def _subsections() -> dict[str, str]:
    """The ``### `` subsections of the Training section now in BENCHMARKS.md, by heading."""
    from report import BENCHMARKS

    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    start = text.find(SECTION)
    if start < 0:
        return {}
    end = text.find("\n## ", start + 1)
    body = text[start : end if end >= 0 else len(text)]
    found = {}
    for part in body.split("\n### ")[1:]:
        heading = "### " + part.splitlines()[0]
        found[heading] = ("### " + part).rstrip("\n") + "\n"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budgets", default="30", help="seconds per tool and data set, comma-separated"
    )
    parser.add_argument("--budget", type=float, help="one budget (same as --budgets N)")
    parser.add_argument(
        "--datasets",
        default=",".join(STANDARD),
        help=f"comma-separated, from {', '.join(SYSTEMS)} (default all but movielens_ratings)",
    )
    parser.add_argument(
        "--mlsd-budget",
        type=float,
        help="mlsd's own budget against FLAML's (0: mlsd's defaults, untouched by the user)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    if args.budget is not None:
        budgets = [args.budget]
    else:
        budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
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

    outcomes: list[Outcome] = []
    skipped: dict[float, dict[str, str]] = {}  # budget -> table -> why it did not run
    with tempfile.TemporaryDirectory() as tmp:
        for budget in budgets:
            for name in names:
                # One table that breaks (mlsd, FLAML or the loader) must not lose an hour of
                # others' results: it is reported as not run, with the error.
                try:
                    outcome = run_one(name, budget, Path(tmp), args.mlsd_budget)
                except Exception as exc:
                    first = (str(exc).splitlines() or [""])[0]
                    why = f"{type(exc).__name__}: {first}"
                    skipped.setdefault(budget, {})[name] = why
                    print(f"{name}: not run at {budget:g} s, {why}", flush=True)
                    traceback.print_exc()  # the whole story, on stderr
                    continue
                outcomes.append(outcome)
                print(table([outcome])[-1], flush=True)
                print(f"{name}: {outcome.total_wall:.0f} s for the whole row", flush=True)
    print()
    for budget in budgets:
        mine = [o for o in outcomes if o.budget == budget]
        print("\n".join([*table(mine), "", summary(mine, budget, skipped.get(budget)), ""]))
    if not args.no_write:
        write_section(budgets, names, outcomes, skipped, args.mlsd_budget)


if __name__ == "__main__":
    main()
