"""Learning curve: would more data help? Refit the chosen model on growing shares of train.

The chosen family is refitted with its chosen parameters and seed on 20, 40 and 70% of the
training rows (the 100% point is the chosen model itself), each scored on train and valid with
the primary metric. The featurizer stays the one fitted on all of train, so the curve measures
the model's appetite for rows, not the featurizer's. The verdict reads the last step: a curve
still rising from 70 to 100% says more data is likely to help; a flat one says it is not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsd.evaluation.metrics import MetricError, compute, get_metric

FRACTIONS = (0.2, 0.4, 0.7)
MAX_ROWS = 200_000  # refits on larger tables use a sample of this size as "100%"
FLAT = 0.01  # a relative change of the valid metric below this counts as flat


def learning_curve(
    family: str,
    params: dict[str, Any],
    task: Any,
    data: Any,
    *,
    metric: str,
    full: dict[str, float | None],
    seed: int = 0,
    fractions: Sequence[float] = FRACTIONS,
    budget_s: float = 30.0,
) -> dict[str, Any]:
    """Points ``{fraction, rows, train, valid}`` and a verdict in words.

    ``data`` is the :class:`~mlsd.models.base.FitData` the chosen model was fitted on and
    ``full`` its ``{"train": .., "valid": ..}`` primary scores (the 100% point). Points that
    would end after ``budget_s`` seconds (at the last refit's cost per row) are skipped (and
    the verdict says so).
    """
    from mlsd.models.base import FitData
    from mlsd.models.families import make_model

    m = get_metric(metric)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = len(data.y)
    order = rng.permutation(n)
    points: list[dict[str, Any]] = []
    skipped = []
    per_row_s = 0.0  # the last refit's seconds per row: the next one is expected to cost as much
    for fraction in fractions:
        size = round(fraction * min(n, MAX_ROWS))
        if size < 20:
            continue
        began = time.perf_counter()
        if began - start + per_row_s * size > budget_s:
            skipped.append(fraction)
            continue
        rows = np.sort(order[:size])
        part = FitData(
            X=data.X[rows],
            y=data.y[rows],
            X_valid=data.X_valid,
            y_valid=data.y_valid,
            feature_names=data.feature_names,
            categorical=data.categorical,
        )
        try:
            model = make_model(family, task, params, seed).fit(part)
            per_row_s = (time.perf_counter() - began) / size
            points.append(
                {
                    "fraction": fraction,
                    "rows": size,
                    "train": _score(task.kind, metric, part.y, model.predict(part.X)),
                    "valid": _score(task.kind, metric, data.y_valid, model.predict(data.X_valid)),
                }
            )
        except Exception as exc:  # e.g. one class in a small sample: record and go on
            points.append({"fraction": fraction, "rows": size, "train": None, "valid": None})
            points[-1]["error"] = f"{type(exc).__name__}: {exc}"
    points.append(
        {"fraction": 1.0, "rows": n, "train": full.get("train"), "valid": full.get("valid")}
    )
    verdict, text = _verdict(points, m)
    if skipped:
        text += f" (points {skipped} skipped: the {budget_s:g} s budget ran out)"
    return {
        "metric": metric,
        "points": points,
        "verdict": verdict,
        "text": text,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _score(task: str, metric: str, y: np.ndarray, pred: np.ndarray) -> float | None:
    try:
        return compute(task, y, pred, names=[metric])[metric]
    except MetricError:
        return None


def _verdict(points: list[dict[str, Any]], metric: Any) -> tuple[str, str]:
    """``more_data_helps`` | ``flat`` | ``unclear`` and a sentence a person can act on."""
    scored = [p for p in points if p["valid"] is not None]
    if len(scored) < 2:
        return "unclear", "too few points to tell whether more data would help"
    last, before = scored[-1], scored[-2]
    sign = 1.0 if metric.direction == "max" else -1.0
    gain = sign * (last["valid"] - before["valid"])
    relative = gain / max(abs(last["valid"]), 1e-12)
    span = f"from {before['rows']:,} to {last['rows']:,} training rows"
    change = f"valid {metric.name} {before['valid']:.4g} -> {last['valid']:.4g}"
    if relative > FLAT:
        return (
            "more_data_helps",
            f"still improving {span} ({change}, {relative:+.1%}): more data is likely to help",
        )
    if relative >= -FLAT:
        return (
            "flat",
            f"flat {span} ({change}, {relative:+.1%}): more rows alone are unlikely to help "
            "much; better features or a more flexible model are the lever",
        )
    return (
        "unclear",
        f"worse {span} ({change}, {relative:+.1%}): the curve is noisy, so it cannot say "
        "whether more data would help",
    )
