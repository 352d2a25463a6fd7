"""Behavioural tests: does the model react to its inputs as the team says it must?

Declared in ``evaluation.tests`` of ``system.yaml`` and run on the validation rows:

- ``perturbation``: small Gaussian noise on numeric inputs (``scale`` x the column's standard
  deviation) changes the output by at most ``tolerance``;
- ``invariance``: replacing a feature that must not matter with other rows' values leaves the
  output unchanged (within ``tolerance``);
- ``directional``: raising a numeric feature by ``delta`` moves the output in the declared
  direction: no row moves the other way by more than ``tolerance``, and the mean moves the
  declared way.

Each test passes or fails with up to five failing examples (the row's inputs, the output
before and after). A failed ``blocking`` test stops registration (the caller decides).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import MlsdError, did_you_mean
from mlsd.spec import BehavioralTestSpec
from mlsd.tasks import get_task

MAX_EXAMPLES = 5
DEFAULT_TOLERANCE = {"perturbation": 0.05, "invariance": 1e-9, "directional": 0.0}
Predict = Callable[[pd.DataFrame], np.ndarray]


class BehavioralError(MlsdError):
    """A behavioural test cannot run as declared."""

    headline = "invalid behavioural test"
    exit_code = 2


def _as_spec(test: Any) -> BehavioralTestSpec:
    return test if isinstance(test, BehavioralTestSpec) else BehavioralTestSpec.model_validate(test)


def _where(frame: pd.DataFrame, test: BehavioralTestSpec) -> np.ndarray:
    """Boolean mask of the rows the test's ``where`` expression selects."""
    if not test.where:
        return np.ones(len(frame), dtype=bool)
    try:
        mask = frame.eval(test.where)
    except Exception as exc:  # pandas raises many types for a bad expression
        raise BehavioralError(
            f"test {test.label!r}: where {test.where!r} cannot be evaluated: {exc}",
            hint="write a condition on columns, e.g. `temp < 0.6` or `weathersit == 'clear'`",
        ) from exc
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (len(frame),):
        raise BehavioralError(
            f"test {test.label!r}: where {test.where!r} is not a true/false condition per row",
            hint="compare a column with a value, e.g. `temp < 0.6`",
        )
    return mask


def check(tests: list, columns: Mapping[str, str], frame: pd.DataFrame) -> None:
    """Refuse, before any training, a test naming a column the data does not have, a
    directional or perturbation test on a non-numeric feature, or a bad ``where``."""
    for raw in tests:
        test = _as_spec(raw)
        if test.feature is not None:
            if test.feature not in frame.columns:
                raise BehavioralError(
                    f"test {test.label!r} names feature {test.feature!r}, which is not a column "
                    f"of the data{did_you_mean(test.feature, frame.columns)}",
                    hint=f"use one of: {', '.join(map(str, frame.columns[:20]))}",
                )
            if test.kind in ("directional", "perturbation"):
                if test.feature not in columns:
                    raise BehavioralError(
                        f"test {test.label!r}: the model does not use {test.feature!r} (it is "
                        "excluded or not a feature), so moving it cannot move the output",
                        hint="test a feature the model uses, or make it an invariance test",
                    )
                if columns[test.feature] != "numeric":
                    raise BehavioralError(
                        f"test {test.label!r}: {test.kind} tests move a numeric feature; "
                        f"{test.feature!r} is {columns[test.feature]}",
                        hint="use an invariance test for a categorical feature",
                    )
        _where(frame.head(50), test)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return None if pd.isna(value) else str(value)


def _scores(predict: Predict, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(predict(frame), dtype=np.float64)


def _outputs(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-d outputs to compare: a multiclass matrix becomes the probability of the class
    predicted before the change."""
    if before.ndim == 2:
        cls = before.argmax(axis=1)
        rows = np.arange(len(before))
        return before[rows, cls], after[rows, cls]
    return before, after


def _perturb(
    test: BehavioralTestSpec,
    rows: pd.DataFrame,
    frame: pd.DataFrame,
    columns: Mapping[str, str],
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, list[str]]:
    changed = rows.copy()
    if test.kind == "perturbation":
        names = (
            [test.feature] if test.feature else [c for c, t in columns.items() if t == "numeric"]
        )
        for name in names:
            values = pd.to_numeric(frame[name], errors="coerce").astype(float)
            std = float(np.nanstd(values)) or 1.0
            noise = rng.normal(0.0, test.scale * std, size=len(rows))
            changed[name] = pd.to_numeric(rows[name], errors="coerce").astype(float) + noise
        return changed, names
    name = test.feature
    if test.kind == "invariance":
        # other rows' values of the feature (from all the rows, so it really changes)
        pick = rng.integers(0, len(frame), size=len(rows))
        changed[name] = frame[name].iloc[pick].to_numpy()
        if isinstance(rows[name].dtype, pd.CategoricalDtype):
            changed[name] = pd.Categorical(changed[name], dtype=rows[name].dtype)
        return changed, [name]
    values = pd.to_numeric(frame[name], errors="coerce").astype(float)
    delta = test.delta if test.delta is not None else 0.1 * (float(np.nanstd(values)) or 1.0)
    changed[name] = pd.to_numeric(rows[name], errors="coerce").astype(float) + delta
    return changed, [name]


def run_one(
    test: Any,
    predict: Predict,
    frame: pd.DataFrame,
    columns: Mapping[str, str],
    task: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Run one test on ``frame`` (see :func:`run`)."""
    test = _as_spec(test)
    rng = np.random.default_rng(seed)
    mask = _where(frame, test)
    candidates = np.flatnonzero(mask)
    result: dict[str, Any] = {
        "name": test.label,
        "kind": test.kind,
        "feature": test.feature,
        "direction": test.direction,
        "where": test.where,
        "blocking": test.blocking,
    }
    if not len(candidates):
        # nothing to test is not a pass: the declared condition selects no row
        return {**result, "passed": False, "n": 0, "failures": [], "note": "no row matches"}
    pick = np.sort(rng.choice(candidates, size=min(test.rows, len(candidates)), replace=False))
    rows = frame.iloc[pick]
    changed, names = _perturb(test, rows, frame, columns, rng)
    before, after = _outputs(_scores(predict, rows), _scores(predict, changed))
    diff = after - before
    tolerance = test.tolerance
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE[test.kind]
        if test.kind == "perturbation" and not get_task(task).classification:
            # outputs in the target's unit: 5% of the spread of the outputs
            tolerance = 0.05 * (float(np.std(before)) or 1.0)
    if test.kind == "directional":
        sign = 1.0 if test.direction == "up" else -1.0
        violation = np.maximum(-sign * diff - tolerance, 0.0)
        mean_change = float(np.mean(diff))
        moved = sign * mean_change > 0
        result["mean_change"] = mean_change
    else:
        violation = np.maximum(np.abs(diff) - tolerance, 0.0)
        moved = True
    failing = np.flatnonzero(violation > 0)
    share = len(failing) / len(rows)
    passed = bool(share <= test.max_failure_share and moved)
    worst = failing[np.argsort(-violation[failing], kind="stable")][:MAX_EXAMPLES]
    if not len(worst) and not moved:  # no row went the wrong way, but nothing moved the right way
        worst = np.arange(min(MAX_EXAMPLES, len(rows)))
    examples = []
    for i in worst:
        row = {c: _jsonable(rows[c].iloc[i]) for c in columns if c in rows.columns}
        row["changed"] = {n: _jsonable(changed[n].iloc[i]) for n in names if n in changed}
        row["before"], row["after"] = float(before[i]), float(after[i])
        examples.append(row)
    return {
        **result,
        "passed": passed,
        "n": len(rows),
        "n_failed": len(failing),
        "tolerance": tolerance,
        "failures": examples,
    }


def run(
    tests: list,
    predict: Predict,
    frame: pd.DataFrame,
    columns: Mapping[str, str],
    task: str,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run every declared test; one JSON-ready result per test.

    ``predict(frame) -> scores`` is the packaged model's scorer (the positive-class
    probability, the value, or a multiclass probability matrix); ``frame`` holds the rows to
    test on (the validation split), ``columns`` the model's input columns and their types.
    Each result: ``name, kind, feature, where, blocking, passed, n`` (rows tested),
    ``n_failed``, ``tolerance``, ``failures`` (at most five: the row's inputs, ``changed``
    values, ``before`` and ``after``), and for directional tests ``mean_change``.
    """
    return [
        run_one(test, predict, frame, columns, task, seed=seed + i) for i, test in enumerate(tests)
    ]
