"""Realised and estimated performance of a served model, per monitoring window.

Realised figures need the truth: they are computed on exactly the predictions that have
feedback (late labels), with the spec's primary metric and guardrails, and compared with
the package's offline test score (concept drift shows as a drop). Before labels arrive,
a binary classifier's calibrated scores still say how well it is expected to do:
confidence-based performance estimation (CBPE, as NannyML does) takes each score as the
probability that the instance is positive and sums the expected confusion matrix at the
package's threshold. Estimated and realised figures are reported apart, never mixed.
Regression and multiclass are not estimated here (CBPE needs calibrated class
probabilities and a threshold; regression has neither).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mlsd.evaluation.metrics import compute, get_metric
from mlsd.tasks import Task

ESTIMATED = ("accuracy", "precision", "recall", "f1")
# ranking, beside the primary metric: with click feedback, precision@k is CTR@k
RANKED = ("ndcg@10", "mrr", "precision@1", "precision@5", "precision@10")


def extra_metrics(task: Task) -> tuple[str, ...]:
    """What is reported beside the primary metric and guardrails: the metrics CBPE
    estimates (to set them side by side), or a ranking's."""
    return ESTIMATED if task.thresholded else RANKED if task.grouped else ()


def realised(
    task: str,
    y_true: np.ndarray,
    pred: np.ndarray,
    *,
    primary: str,
    guardrails: Mapping[str, Any],
    threshold: float = 0.5,
    offline: float | None = None,
    max_drop: float = 0.1,
    extra: Sequence[str] = (),
    groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics on labelled rows: ``{n, metrics, primary, guardrails}``.

    ``primary`` gives ``{metric, value, offline, drop, passed}`` where ``drop`` is how much
    worse than the package's offline test score ``offline`` the value is, as a share of it
    (positive = worse), and ``passed`` is ``drop <= max_drop``. ``guardrails`` maps a metric
    to a bound (``min``/``max``); each gives ``{metric, value, min, max, passed}``.
    ``extra`` names more metrics to report (e.g. those CBPE estimates, to set them side by
    side). ``groups``: each row's group, for a ranking task.
    """
    names = list(dict.fromkeys([primary, *guardrails, *extra]))
    values = compute(task, y_true, pred, names=names, threshold=threshold, groups=groups)
    metric = get_metric(primary, task)
    value = values.get(metric.name)
    drop = None
    if value is not None and offline is not None and offline != 0:
        worse = (offline - value) if metric.direction == "max" else (value - offline)
        drop = worse / abs(offline)
    rails = []
    for name, bound in guardrails.items():
        got = values.get(get_metric(name, task).name)
        low = getattr(bound, "min", None) if not isinstance(bound, Mapping) else bound.get("min")
        high = getattr(bound, "max", None) if not isinstance(bound, Mapping) else bound.get("max")
        ok = got is not None and (low is None or got >= low) and (high is None or got <= high)
        rails.append({"metric": name, "value": got, "min": low, "max": high, "passed": ok})
    return {
        "n": len(y_true),
        **({} if groups is None else {"groups": len(np.unique(groups))}),
        "metrics": values,
        "primary": {
            "metric": metric.name,
            "direction": metric.direction,
            "value": value,
            "offline": offline,
            "drop": drop,
            "max_drop": max_drop,
            "passed": drop is None or drop <= max_drop,
        },
        "guardrails": rails,
    }


def cbpe(scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Expected binary performance from calibrated scores P(positive), without labels.

    Each row predicted positive (score >= threshold) is a true positive with probability
    ``score`` and a false positive otherwise; each row predicted negative is a false
    negative with probability ``score``. The expected counts give accuracy, precision,
    recall and F1 (ratios of expectations, as NannyML's CBPE). Missing scores are left out.
    Returns ``{n, method, expected_confusion, metrics}``.
    """
    p = np.asarray(scores, dtype=np.float64)
    p = p[np.isfinite(p)]
    n = len(p)
    if n == 0:
        return {"n": 0, "method": "cbpe", "expected_confusion": None, "metrics": {}}
    positive = p >= threshold
    tp = float(p[positive].sum())
    fp = float((1 - p[positive]).sum())
    fn = float(p[~positive].sum())
    tn = float((1 - p[~positive]).sum())

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else 0.0

    return {
        "n": n,
        "method": "cbpe",
        "expected_confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "metrics": {
            "accuracy": (tp + tn) / n,
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
        },
    }
