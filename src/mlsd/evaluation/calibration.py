"""Calibration: do predicted probabilities mean what they say, and a fix when they do not.

- :func:`reliability` bins the scores and compares each bin's mean score with the share of
  positives in it (the reliability diagram), and sums the gaps into the expected
  calibration error (ECE).
- :func:`confidence` says how many predictions are at least so confident, and how often
  those are right.
- :func:`choose` fits Platt scaling and isotonic regression on the validation split and keeps
  the one that lowers validation log loss, judged honestly by cross-fitting.
- The kept map from raw to calibrated probability is a :class:`mlsd.models.calibrator.Calibrator`:
  plain JSON applied with numpy only, so a package carries it to the server without
  scikit-learn (fitting it here is what needs scikit-learn).

Binary tasks only: multiclass calibration is not done (the caller says so in its report).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsd.errors import MlsdError
from mlsd.models.calibrator import METHODS, CalibrationError, Calibrator, logit

FOLDS = 5  # cross-fitting folds on valid
Z_KEEP = 2.0  # a calibrator's mean per-row gain must exceed this many standard errors


def binary_inputs(
    y: Any, p: Any, error: type[MlsdError] = CalibrationError
) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and finite positive-class scores as float vectors, else ``error``."""
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or len(p) != len(y):
        raise error(
            f"expected one score per label, got scores of shape {p.shape} for {len(y)} labels",
            hint="pass the probability of the positive class as a vector",
        )
    if not np.isin(y, (0.0, 1.0)).all():
        raise error(
            f"binary labels must be 0 or 1, got {np.unique(y)[:5].tolist()}",
            hint="encode the target with mlsd's target encoder (binary tasks only)",
        )
    if not np.isfinite(p).all():
        raise error("scores hold NaN or infinity", hint="check the model's outputs")
    return y, p


def _top_label(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, hit, predicted) per row: for a vector, the positive-class score and whether the
    row is positive; for a matrix, the top probability and whether its class is the label."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if p.ndim == 2:
        pred = p.argmax(axis=1)
        return p.max(axis=1), (pred == y).astype(np.float64), pred
    y, p = binary_inputs(y, p)
    return p, y, (p >= 0.5).astype(np.int64)


def reliability(y: Any, p: Any, bins: int = 10) -> dict[str, Any]:
    """The reliability diagram and the expected calibration error (ECE).

    ``p`` is the positive-class probability (binary) or an ``(n, k)`` probability matrix, for
    which the top-label score is used. Bins are equal-width on [0, 1]; each reports its
    edges, row count, mean score and the share of positives (top label right) in it, the
    latter two ``None`` when empty. ECE is the count-weighted mean of |mean score - share|.
    """
    score, hit, _ = _top_label(y, p)
    if bins < 1:
        raise CalibrationError(f"bins must be at least 1, got {bins}", hint="use bins=10")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, score, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    sum_score = np.bincount(index, weights=score, minlength=bins)
    sum_hit = np.bincount(index, weights=hit, minlength=bins)
    out, ece = [], 0.0
    for b in range(bins):
        n = int(count[b])
        mean = float(sum_score[b] / n) if n else None
        frac = float(sum_hit[b] / n) if n else None
        if n:
            ece += n * abs(mean - frac)
        out.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": n,
                "mean_score": mean,
                "fraction_positive": frac,
            }
        )
    return {"bins": out, "ece": float(ece / max(len(score), 1))}


def confidence(
    y: Any, p: Any, threshold: float = 0.5, levels: Sequence[float] = (0.6, 0.7, 0.8, 0.9)
) -> list[dict[str, Any]]:
    """For each confidence level: the share of predictions at least that confident and their
    accuracy (``None`` when none are). A binary prediction's confidence is the probability of
    the label it gives at ``threshold`` (``p`` when positive, ``1 - p`` when negative); a
    multiclass one's is its top probability."""
    p_arr = np.asarray(p, dtype=np.float64)
    y_arr = np.asarray(y, dtype=np.float64).reshape(-1)
    if p_arr.ndim == 2:
        conf, hit, _ = _top_label(y_arr, p_arr)
    else:
        y_arr, p_arr = binary_inputs(y_arr, p_arr)
        label = p_arr >= threshold
        conf = np.where(label, p_arr, 1.0 - p_arr)
        hit = (label == (y_arr == 1)).astype(np.float64)
    out = []
    for level in levels:
        sure = conf >= level
        n = int(sure.sum())
        out.append(
            {
                "level": float(level),
                "share": float(n / max(len(conf), 1)),
                "accuracy": float(hit[sure].mean()) if n else None,
            }
        )
    return out


def fit(y: Any, p: Any, method: str) -> Calibrator:
    """Fit a ``platt`` or ``isotonic`` calibrator on labels ``y`` (0/1) and scores ``p``."""
    y, p = binary_inputs(y, p)
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000)  # no penalty
        lr.fit(logit(p).reshape(-1, 1), y.astype(int))
        return Calibrator("platt", {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        # never exactly 0 or 1: one surprising row would cost an infinite log loss
        floor = 0.5 / len(y)
        iso = IsotonicRegression(y_min=floor, y_max=1.0 - floor, out_of_bounds="clip")
        iso.fit(p, y)
        return Calibrator(
            "isotonic",
            {"x": iso.X_thresholds_.astype(float).tolist(), "y": iso.y_thresholds_.tolist()},
        )
    raise CalibrationError(f"unknown calibration method {method!r}", hint=f"use one of {METHODS}")


def _folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold id per row, stratified: each fold gets its share of positives."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for cls in (0.0, 1.0):
        rows = rng.permutation(np.flatnonzero(y == cls))
        fold[rows] = np.arange(len(rows)) % k
    return fold


def _row_losses(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Each row's log loss (clipped as mlsd.evaluation.metrics' log_loss clips)."""
    eps = float(np.finfo(np.float64).eps)
    return -np.log(np.clip(np.where(y == 1, p, 1.0 - p), eps, 1.0 - eps))


def choose(
    y_valid: Any, p_valid: Any, method: str = "auto", *, seed: int = 0
) -> tuple[Calibrator | None, dict[str, Any]]:
    """Fit calibrators on the validation split; keep the one that lowers its log loss.

    ``method`` is ``auto`` (try Platt and isotonic), ``platt``, ``isotonic`` or ``none``. The
    comparison is honest: each method's log loss is measured by 5-fold cross-fitting on valid
    (each row calibrated by a map fitted on the other four folds), so a flexible map such as
    isotonic cannot win by memorising the rows it is scored on. The kept method is then
    refitted on all of valid. It is kept only when its mean per-row gain in log loss exceeds
    twice its standard error (the rows are paired, raw and calibrated): a gain within noise
    is not worth a component in the package. Returns the calibrator (``None`` when nothing beats the raw
    scores) and a report: ``log_loss`` per method, ``kept`` and ``reason``.
    """
    if method not in ("auto", "none", *METHODS):
        raise CalibrationError(
            f"unknown calibration method {method!r}", hint="use auto, platt, isotonic or none"
        )
    y, p = binary_inputs(y_valid, p_valid)
    report: dict[str, Any] = {"method": method, "rows": len(y), "folds": FOLDS}
    raw_rows = _row_losses(y, p)
    losses: dict[str, float | None] = {"none": float(raw_rows.mean())}
    report["log_loss"] = losses
    if method == "none":
        report.update(kept="none", reason="calibration is off in the spec")
        return None, report
    positives = int(y.sum())
    if min(positives, len(y) - positives) < FOLDS:
        report.update(
            kept="none", reason=f"valid has {positives} positives of {len(y)}: too few to fit on"
        )
        return None, report
    tried = list(METHODS) if method == "auto" else [method]
    fold = _folds(y, FOLDS, seed)
    gains: dict[str, np.ndarray] = {}
    for name in tried:
        out_of_fold = np.empty_like(p)
        for k in range(FOLDS):
            held = fold == k
            out_of_fold[held] = fit(y[~held], p[~held], name).apply(p[held])
        rows = _row_losses(y, out_of_fold)
        losses[name] = float(rows.mean())
        gains[name] = raw_rows - rows
    best = min(tried, key=lambda m: losses[m])
    # paired: the same rows scored raw and calibrated; a gain within noise is not kept
    gain = float(gains[best].mean())
    se = float(gains[best].std(ddof=1) / np.sqrt(len(y)))
    report.update(gain=gain, gain_se=se)
    if gain <= Z_KEEP * se:
        report.update(
            kept="none",
            reason=f"no method lowered the cross-fitted valid log loss by more than "
            f"{Z_KEEP:g} standard errors (best: {best}, {gain:.3g} ± {se:.2g})",
        )
        return None, report
    calibrator = fit(y, p, best)
    report.update(
        kept=best,
        reason=f"{best} lowered the cross-fitted valid log loss from "
        f"{losses['none']:.4g} to {losses[best]:.4g}",
        calibrator=calibrator.to_json(),
    )
    return calibrator, report
