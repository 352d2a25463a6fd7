"""Champion against challenger on the same fresh holdout, with the uncertainty of the gap.

Both packages score exactly the same rows through their own featurizer, model, calibration
and decision threshold (``Package.predict_matrix``, as they would serve). The difference of
the primary metric gets a paired bootstrap interval: each resample draws the same rows for
both models, so the interval measures the gap between them, not the noise of each. A
ranking is resampled by whole groups (a cluster bootstrap): its metrics are means over
groups, and the rows of one group are not independent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from mlsd.evaluation.metrics import MetricError, compute, get_metric, metrics_for
from mlsd.features import frame_inputs
from mlsd.spec import SystemSpec
from mlsd.tasks import get_task

BOOTSTRAP = 1000  # paired resamples behind the interval of the difference
MIN_BOOTSTRAP = 200  # large holdouts: fewer resamples (a sorted metric on 100k rows: 14 ms)
ROW_BUDGET = 20_000_000  # resamples x rows scored per model
LEVEL = 0.95


def score_package(
    folder: str | Path, table: pa.Table, target: str, group: str | None = None
) -> dict[str, Any]:
    """Load and verify the package in ``folder``; its outputs and labels on ``table``:
    ``{y, pred, keep, threshold, task, n_features, groups}`` (rows without a label dropped;
    ``groups``: the ``group`` column's values for a ranking, else None)."""
    from mlsd.evaluation.evaluate import package_labels, typed_like
    from mlsd.models import package as packages

    package = packages.load(folder)
    meta = package.meta
    frame = typed_like(package, table)
    y = package_labels(frame[target], meta)
    keep = ~np.isnan(y)
    frame = frame[keep]
    pred = package.predict_matrix(frame_inputs(frame, package.featurizer.input_columns))
    threshold = float(meta.get("threshold", 0.5))
    return {
        "y": y[keep],
        "pred": pred,
        "keep": keep,
        "threshold": threshold,
        "task": meta["task"],
        "n_features": len(package.featurizer.feature_names),
        "groups": None if group is None else frame[group].astype(str).to_numpy(),
    }


def _metric(
    scored: dict, rows: np.ndarray | None, name: str, groups: np.ndarray | None = None
) -> float | None:
    y, pred = scored["y"], scored["pred"]
    if rows is not None:
        y, pred = y[rows], pred[rows]
    try:
        values = compute(
            scored["task"], y, pred, names=[name], threshold=scored["threshold"], groups=groups
        )
    except MetricError:
        return None
    return values[name]


def _resample(rng: np.random.Generator, groups: np.ndarray | None, n: int):
    """One bootstrap draw: row indices and, for groups, the drawn groups' new ids (a group
    drawn twice counts as two groups)."""
    if groups is None:
        return rng.integers(0, n, size=n), None
    codes, _ = pd.factorize(groups)
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    pick = rng.integers(0, len(sizes), size=len(sizes))
    lengths = sizes[pick]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return order[np.repeat(starts[pick], lengths) + offsets], np.repeat(
        np.arange(len(pick)), lengths
    )


def paired_bootstrap(
    champion: dict, challenger: dict, metric: str, *, seed: int, n: int = BOOTSTRAP
) -> tuple[float | None, float | None, int]:
    """Percentile interval of (challenger − champion) on ``metric`` over ``n`` paired
    resamples of the rows, or of the groups for a ranking (fewer, down to 200, when the
    rows are many); returns (low, high,
    resamples where the metric was defined for both)."""
    rng = np.random.default_rng(seed)
    rows = len(champion["y"])
    n = min(n, max(MIN_BOOTSTRAP, ROW_BUDGET // max(rows, 1)))
    diffs = []
    for _ in range(n):
        pick, groups = _resample(rng, champion.get("groups"), rows)
        a = _metric(champion, pick, metric, groups)
        b = _metric(challenger, pick, metric, groups)
        if a is not None and b is not None:
            diffs.append(b - a)
    if len(diffs) < n // 2:  # e.g. ROC AUC on resamples with one class: no honest interval
        return None, None, len(diffs)
    low, high = np.quantile(diffs, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high), len(diffs)


def compare(
    spec: SystemSpec,
    champion_package: str | Path,
    challenger_package: str | Path,
    holdout: pa.Table,
    *,
    n_bootstrap: int = BOOTSTRAP,
) -> dict[str, Any]:
    """Score both packages on ``holdout`` and compare them on the spec's primary metric.

    Returns ``{metric, direction, champion, challenger, difference, gain, ci_low, ci_high,
    level, n_holdout, margin, beats, champion_metrics, challenger_metrics}``: ``difference``
    is challenger − champion, ``gain`` the same in the metric's better direction (positive:
    the challenger is better), ``beats`` whether the gain clears ``beat_champion_by``.
    """
    from mlsd.models.gate import beats
    from mlsd.models.train import primary_metric

    target = spec.problem.target
    name = primary_metric(spec)
    metric = get_metric(name)
    group = spec.problem.group if get_task(spec.problem.task).grouped else None
    champ = score_package(champion_package, holdout, target, group)
    chall = score_package(challenger_package, holdout, target, group)
    if not np.array_equal(champ["keep"], chall["keep"]):  # same rows, or no comparison
        raise MetricError("champion and challenger read different labelled rows")
    wanted = [name, *(get_metric(g).name for g in spec.metrics.guardrails)]
    everything = list(dict.fromkeys([*metrics_for(champ["task"]), *wanted]))
    scores = {
        who: compute(
            s["task"],
            s["y"],
            s["pred"],
            names=everything,
            threshold=s["threshold"],
            n_features=s["n_features"],
            groups=s["groups"],
        )
        for who, s in (("champion", champ), ("challenger", chall))
    }
    a, b = scores["champion"][name], scores["challenger"][name]
    difference = None if a is None or b is None else b - a
    gain = (
        None if difference is None else (difference if metric.direction == "max" else -difference)
    )
    low, high, used = paired_bootstrap(champ, chall, name, seed=spec.seed, n=n_bootstrap)
    margin = spec.retraining.beat_champion_by
    return {
        "metric": name,
        "direction": metric.direction,
        "champion": a,
        "challenger": b,
        "difference": difference,
        "gain": gain,
        "ci_low": low,
        "ci_high": high,
        "level": LEVEL,
        "bootstrap": used,
        "n_holdout": len(champ["y"]),
        "margin": margin,
        "beats": bool(beats(metric, b, a, margin)),
        "champion_metrics": scores["champion"],
        "challenger_metrics": scores["challenger"],
    }
