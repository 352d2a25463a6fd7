"""Selection benchmark: cross-validation against one validation split, across the corpus.

    python benchmarks/bench_selection.py [--tables fair,wine,...] [--no-write]

`models.selection: auto` cross-validates when the validation split is too small to trust
(under 1,000 rows, or under 50 rows of a class) and the split is random or stratified. This
checks that rule where it applies: every corpus table (tests/corpus/tables.py) is started
from `mlsd init` as a new user would, and the tables whose spec auto would cross-validate are
trained twice at the defaults (budget 0), once with `selection: holdout` and once with
`selection: cv`, on the same split. Each pair is scored on the same test rows by the primary
metric, with a 95% paired bootstrap interval of cv − holdout (a tie when it holds 0), and the
wall time of each. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

from bench_train import (  # also puts src/ and tests/corpus/ on the path
    _verdict,
    corpus_system,
    package_predictions,
    paired_interval,
    primary_metric,
    split_rows,
)
from report import write_section

from mlsd.evaluation.metrics import get_metric
from mlsd.models.train import train
from mlsd.workspace import Workspace

SECTION = (
    "## Selection: cross-validation against a validation split (`benchmarks/bench_selection.py`)"
)


def run_table(name: str, tmp: Path) -> dict | None:
    """Both schemes on one table, or None when auto would keep the holdout there."""
    folder = tmp / name
    folder.mkdir()
    spec = corpus_system(name)(folder)
    spec.models.tuning.budget_s = 0
    metric = primary_metric(spec)
    out = {"name": name, "metric": metric}
    preds = {}
    # auto first: it says whether it cross-validates here, and if so it is the cv run
    for method in ("auto", "holdout"):
        run = spec.model_copy(deep=True)
        run.models.selection = method
        started = time.perf_counter()
        result = train(run, Workspace(folder / f"ws-{method}"), progress=False).to_dict()
        if method == "auto":
            if result["selection"]["method"] != "cv":
                return None
            method = "cv"
        out[f"{method}_s"] = time.perf_counter() - started
        out[method] = (result["test"] or {}).get(metric)
        out[f"{method}_chosen"] = result["chosen"]
        out["why"] = out.get("why") or result["selection"].get("reason")
        split = split_rows(run, Workspace(folder / f"ws-{method}"))
        preds[method] = package_predictions(result, split)
    y_test = split["y"][split["rows"]["test"]]
    out["rows"] = len(split["y"])
    direction = get_metric(metric).direction
    out["direction"] = direction
    interval = None
    if preds["cv"] is not None and preds["holdout"] is not None:
        interval = paired_interval(spec.problem.task, y_test, preds["cv"], preds["holdout"], metric)
    out["interval"] = interval
    out["cv_wins"] = _verdict(out["cv"], out["holdout"], interval, direction)
    return out


def main() -> None:
    from tables import TABLES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(t.name for t in TABLES))
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    names = [n.strip() for n in args.tables.split(",") if n.strip()]
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"{name} ...", flush=True)
            found = run_table(name, Path(tmp))
            if found is None:
                skipped.append(name)
                continue
            rows.append(found)
            print(f"  holdout {found['holdout']:.4f}  cv {found['cv']:.4f}", flush=True)
    lines = [
        "| table | rows | metric | holdout test | cv test | cv − holdout, 95% CI | verdict | "
        "holdout chose | cv chose | holdout s | cv s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        better = "higher" if r["direction"] == "max" else "lower"
        ci = "-" if r["interval"] is None else f"[{r['interval'][0]:+.4f}, {r['interval'][1]:+.4f}]"
        verdict = {True: "cv better", False: "holdout better", None: "tie"}[r["cv_wins"]]
        lines.append(
            f"| {r['name']} | {r['rows']:,} | {r['metric']} ({better} is better) | "
            f"{r['holdout']:.4f} | {r['cv']:.4f} | {r['cv'] - r['holdout']:+.4f} {ci} | "
            f"{verdict} | {r['holdout_chosen']} | {r['cv_chosen']} | {r['holdout_s']:.1f} | "
            f"{r['cv_s']:.1f} |"
        )
    wins = sum(r["cv_wins"] is True for r in rows)
    losses = sum(r["cv_wins"] is False for r in rows)
    ahead = sum(
        (r["cv"] > r["holdout"]) if r["direction"] == "max" else (r["cv"] < r["holdout"])
        for r in rows
    )
    summary = (
        f"Of {len(rows)} tables where auto cross-validates: cv better on {wins}, holdout better "
        f"on {losses}, tied on {len(rows) - wins - losses}; cv ahead by point estimate on "
        f"{ahead}. Auto keeps the holdout (time or group split, or enough rows) on: "
        f"{', '.join(skipped) or 'none'}."
    )
    print("\n".join([*lines, "", summary]))
    if not args.no_write:
        section = "\n".join(
            [
                SECTION,
                "",
                f"Command: `python benchmarks/bench_selection.py` on {date.today()}, "
                f"{platform.machine()}, {platform.python_version()}, 2 cores. Each corpus "
                "table from `mlsd init`, trained at its defaults (budget 0) with `selection: "
                "holdout` and with `selection: cv` on the same split; both scored once on the "
                "same test rows, with a 95% paired bootstrap interval of the difference.",
                "",
                *lines,
                "",
                summary,
                "",
            ]
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
