"""Realised metrics on labelled rows, and CBPE's estimate from calibrated scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd.evaluation.metrics import compute
from mlsd.monitoring.performance import cbpe, realised
from mlsd.spec import Bound
from mlsd.tasks import get_task


def test_cbpe_matches_realised_figures_when_scores_are_calibrated():
    rng = np.random.default_rng(0)
    scores = rng.beta(0.6, 2.5, size=40_000)  # skewed, like a rare positive class
    y = (rng.random(scores.size) < scores).astype(float)  # calibrated by construction
    threshold = 0.3
    estimate = cbpe(scores, threshold)
    actual = compute("binary", y, scores, names=list(estimate["metrics"]), threshold=threshold)
    assert estimate["n"] == scores.size
    for name, value in estimate["metrics"].items():
        assert value == pytest.approx(actual[name], abs=0.01), name
    confusion = estimate["expected_confusion"]
    assert sum(confusion.values()) == pytest.approx(scores.size)


def test_cbpe_is_wrong_when_scores_are_not_calibrated_which_is_why_it_is_shown_apart():
    rng = np.random.default_rng(1)
    scores = rng.beta(0.6, 2.5, size=20_000)
    y = (rng.random(scores.size) < scores**2).astype(float)  # true rate far below the score
    estimate = cbpe(scores, 0.5)["metrics"]["precision"]
    actual = compute("binary", y, scores, names=["precision"], threshold=0.5)["precision"]
    assert estimate - actual > 0.1


def test_cbpe_ignores_missing_scores_and_handles_none():
    out = cbpe(np.array([0.9, np.nan, 0.1]), 0.5)
    assert out["n"] == 2
    assert out["metrics"]["accuracy"] == pytest.approx(0.9)
    assert cbpe(np.array([]), 0.5) == {
        "n": 0,
        "method": "cbpe",
        "expected_confusion": None,
        "metrics": {},
    }


def test_truth_encodes_labels_as_the_metrics_want_them():
    """The monitor reads feedback labels with the task's truth()."""
    binary, multiclass, regression = (get_task(t) for t in ("binary", "multiclass", "regression"))
    got = binary.truth(["Yes", "No", "maybe", None, "yes"], ["No", "Yes"])
    assert got[:2].tolist() == [1.0, 0.0] and math.isnan(got[2]) and math.isnan(got[3])
    assert got[4] == 1.0  # case of a yes/no word does not matter
    assert binary.truth([1, 0, True, "1", 1.0], [0, 1]).tolist() == [1, 0, 1, 1, 1]
    assert multiclass.truth(["b", "c", "a", "z"], ["a", "b", "c"])[:3].tolist() == [1, 2, 0]
    reg = regression.truth([1, "2.5", None, "x"], None)
    assert reg[:2].tolist() == [1.0, 2.5] and np.isnan(reg[2:]).all()


def test_realised_primary_drop_and_guardrails():
    rng = np.random.default_rng(2)
    y = rng.normal(100, 20, 500)
    pred = y + rng.normal(0, 10, 500)
    out = realised(
        "regression",
        y,
        pred,
        primary="mae",
        guardrails={"r2": Bound(min=0.9), "rmse": Bound(max=50)},
        offline=6.0,
        max_drop=0.1,
    )
    mae = float(np.abs(y - pred).mean())
    assert out["n"] == 500 and out["metrics"]["mae"] == pytest.approx(mae)
    head = out["primary"]
    assert head["direction"] == "min" and head["drop"] == pytest.approx((mae - 6.0) / 6.0)
    assert head["passed"] is False  # about 8 against 6: a third worse
    rails = {r["metric"]: r for r in out["guardrails"]}
    assert rails["r2"]["passed"] is False and rails["r2"]["min"] == 0.9
    assert rails["rmse"]["passed"] is True and rails["rmse"]["max"] == 50

    # a "max" metric: higher than offline is no drop at all
    yb = rng.integers(0, 2, 400).astype(float)
    scores = np.clip(yb * 0.6 + rng.random(400) * 0.4, 0, 1)
    better = realised("binary", yb, scores, primary="roc_auc", guardrails={}, offline=0.7)
    assert better["primary"]["drop"] < 0 and better["primary"]["passed"] is True
    unknown = realised("binary", yb, scores, primary="roc_auc", guardrails={}, offline=None)
    assert unknown["primary"]["drop"] is None and unknown["primary"]["passed"] is True
