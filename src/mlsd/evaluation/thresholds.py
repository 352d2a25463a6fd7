"""Decision thresholds for binary tasks: turn a probability into a label at the point that
costs least, or that meets a precision or recall target.

Chosen on the validation split (never on test); the package's label uses the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsd.errors import MlsdError
from mlsd.evaluation.calibration import binary_inputs

RULES = ("cost", "precision", "recall", "fixed")
GRID = np.round(np.linspace(0.01, 0.99, 99), 2)  # the thresholds tried by default


class ThresholdError(MlsdError):
    """A threshold cannot be chosen as asked."""

    headline = "threshold error"


def _inputs(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    y, p = binary_inputs(y, np.asarray(p, dtype=np.float64).reshape(-1), ThresholdError)
    if not len(y):
        raise ThresholdError(
            "no labelled rows to choose a threshold on",
            hint="choose thresholds on a non-empty validation split",
        )
    return y, p


def _costs(costs: Any) -> tuple[float, float]:
    """(false positive, false negative) from a Costs section, a dict, or a pair."""
    if costs is None:
        return 1.0, 1.0
    if isinstance(costs, dict):
        return float(costs.get("false_positive", 1.0)), float(costs.get("false_negative", 1.0))
    if hasattr(costs, "false_positive"):
        return float(costs.false_positive), float(costs.false_negative)
    fp, fn = costs
    return float(fp), float(fn)


def cost_curve(
    y: Any, p: Any, fp_cost: float, fn_cost: float, grid: Any = None
) -> dict[str, list[float]]:
    """Expected cost per row, precision and recall at each threshold of ``grid`` (default
    0.01 … 0.99). A row is labelled positive when ``p >= threshold``. Precision where nothing
    is labelled positive is 1 (no false alarms)."""
    y, p = _inputs(y, p)
    grid = GRID if grid is None else np.asarray(grid, dtype=np.float64).reshape(-1)
    positive = p[None, :] >= grid[:, None]  # thresholds x rows
    is_pos = y == 1
    tp = (positive & is_pos).sum(axis=1)
    fp = (positive & ~is_pos).sum(axis=1)
    fn = is_pos.sum() - tp
    flagged = tp + fp
    precision = np.divide(tp, flagged, out=np.ones(len(grid)), where=flagged > 0)
    recall = tp / max(int(is_pos.sum()), 1)
    cost = (fp_cost * fp + fn_cost * fn) / len(y)
    return {
        "thresholds": grid.tolist(),
        "expected_cost": cost.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
    }


def choose(
    y: Any,
    p: Any,
    *,
    costs: Any = None,
    rule: str = "cost",
    target: float | None = None,
    value: float | None = None,
    grid: Any = None,
) -> dict[str, Any]:
    """Choose the decision threshold on labelled scores (the validation split).

    Rules: ``cost`` minimises the expected cost per row from ``costs`` (false positive, false
    negative; a ``Costs`` section, a dict or a pair); ``precision`` takes the lowest
    threshold whose precision reaches ``target`` (most recall at that precision); ``recall``
    the highest threshold whose recall reaches ``target`` (most precision at that recall);
    ``fixed`` uses ``value``. When a target cannot be met, the closest threshold is taken and
    ``met`` is False. Returns the threshold, the rule, its expected cost, precision and
    recall, the expected cost at 0.5 for comparison, and the cost curve.
    """
    if rule not in RULES:
        raise ThresholdError(f"unknown threshold rule {rule!r}", hint=f"use one of {RULES}")
    if rule in ("precision", "recall") and (target is None or not 0 < target <= 1):
        raise ThresholdError(
            f"rule {rule} needs a target in (0, 1], got {target!r}",
            hint=f"e.g. threshold: {{rule: {rule}, target: 0.8}}",
        )
    if rule == "fixed" and (value is None or not 0 <= value <= 1):
        raise ThresholdError(
            f"rule fixed needs a value in [0, 1], got {value!r}",
            hint="e.g. threshold: {rule: fixed, value: 0.5}",
        )
    fp_cost, fn_cost = _costs(costs)
    grid = GRID if grid is None else np.asarray(grid, dtype=np.float64).reshape(-1)
    if rule == "fixed":
        grid = np.unique(np.r_[grid, value])
    curve = cost_curve(y, p, fp_cost, fn_cost, np.unique(np.r_[grid, 0.5]))
    t = np.asarray(curve["thresholds"])
    cost = np.asarray(curve["expected_cost"])
    precision = np.asarray(curve["precision"])
    recall = np.asarray(curve["recall"])
    met = True
    if rule == "cost":
        ties = np.flatnonzero(np.isclose(cost, cost.min(), rtol=1e-12, atol=1e-15))
        i = int(ties[len(ties) // 2])  # the middle of a flat optimum, not its edge
    elif rule == "precision":
        # a threshold that flags no positive has precision 1 by convention, not by merit
        useful = recall > 0
        ok = np.flatnonzero((precision >= target) & useful)
        met = bool(len(ok))
        i = int(ok[0]) if met else int(np.argmax(np.where(useful, precision, -1.0)))
    elif rule == "recall":
        ok = np.flatnonzero(recall >= target)
        met = bool(len(ok))
        i = int(ok[-1]) if met else int(np.argmax(recall))
    else:
        i = int(np.flatnonzero(np.isclose(t, value))[0])
    half = int(np.flatnonzero(np.isclose(t, 0.5))[0])
    return {
        "threshold": float(t[i]),
        "rule": rule,
        "target": target,
        "met": met,
        "costs": {"false_positive": fp_cost, "false_negative": fn_cost},
        "expected_cost": float(cost[i]),
        "cost_at_0_5": float(cost[half]),
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "curve": curve,
    }
