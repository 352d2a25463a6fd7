"""One registry of every metric mlsd reports (step 2 of ML system design).

numpy only: this module runs on the serving and monitoring path, so it imports neither pandas
nor scikit-learn. Values agree with scikit-learn where scikit-learn has the metric (the tests
check it to 1e-9).

Predictions come in the task's shape, the same array a model package emits:

- ``regression``: ``pred`` is the predicted value per row, ``(n,)``.
- ``binary``: ``pred`` is P(positive) per row, ``(n,)`` (an ``(n, 2)`` ``predict_proba``
  matrix is accepted and its second column used); class predictions are
  ``pred >= threshold``; ``y_true`` holds 0 and 1.
- ``multiclass``: ``pred`` is an ``(n, k)`` matrix of class probabilities; class predictions
  are the row-wise argmax (the first column wins a tie); ``y_true`` holds class ids 0..k-1.
- ``ranking``: ``y_true`` is the graded relevance per row (>= 0; > 0 counts as relevant),
  ``pred`` the score per row and ``groups`` the query id per row (``None``: one query).

Conventions shared by every metric:

- A ratio whose denominator is zero is 0.0, like scikit-learn's ``zero_division=0``
  (precision with no predicted positive, recall with no actual positive, specificity and fpr
  with no actual negative, fnr with no actual positive, F1 with neither).
- A metric that has no value on the input (ROC AUC with one class in ``y_true``, R² on one
  row, a ranking with no relevant row) raises :class:`MetricUndefined` when scored on its
  own and is reported as ``None`` by :func:`compute`. Bad input (no rows, lengths that
  differ, NaN or infinite values, class ids out of range) always raises :class:`MetricError`.
- Log loss clips probabilities to ``[eps, 1 - eps]`` with ``eps`` the float64 machine epsilon
  (what scikit-learn >= 1.5 does; older releases used 1e-15).
- Ranking metrics are computed per query group and averaged over the groups that hold at
  least one relevant row (a query with nothing relevant ranks every way equally well, so it
  carries no signal; scikit-learn's ``ndcg_score`` would count it as 0). Ties in scores are
  resolved by averaging over every ordering of the tied rows, i.e. each metric is its expected
  value under a random tie-break: this is exactly what scikit-learn's ``ndcg_score`` does for
  nDCG (McSherry & Najork, 2008), and mlsd applies the same rule to precision@k, recall@k,
  MRR and MAP so a constant-score baseline gets the score of a random order rather than the
  score of whatever order the rows happen to be stored in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np

from mlsd.errors import did_you_mean
from mlsd.tasks import BINARY, MULTICLASS, NAMES, RANKING, TASKS, get_task
from mlsd.tasks.metric_names import ALL, MetricError, cutoff, resolve, tasks_of

DIRECTIONS = ("max", "min")
NEEDS = ("value", "score", "label", "relevance")

# scikit-learn >= 1.5 clips log-loss probabilities at the dtype's machine epsilon.
_EPS = float(np.finfo(np.float64).eps)
# Tolerance on "each row of a probability matrix sums to 1" (float32 softmax is ~1e-7 off).
_PROBA_SUM_ATOL = 1e-6


class MetricUndefined(MetricError):
    """The metric has no value on this input (e.g. ROC AUC with one class in ``y_true``).

    :func:`compute` reports such a metric as ``None``; scoring it alone raises this.
    """

    headline = "metric undefined"


@dataclass(frozen=True)
class Metric:
    """One metric: its registry name, which way is better, and how to compute it.

    ``fn(y_true, pred, **options)`` scores one metric and raises :class:`MetricError` on bad
    input. What ``pred`` holds depends on ``needs``: ``"value"`` predicted values,
    ``"score"`` P(positive) ``(n,)`` or a class-probability matrix ``(n, k)``, ``"label"``
    predicted class ids, ``"relevance"`` per-row scores to rank by (with ``groups=`` query ids).
    Options: ``n_features=`` (adjusted_r2), ``groups=`` (ranking metrics).
    """

    name: str
    direction: str
    tasks: tuple[str, ...]
    needs: str
    description: str
    fn: Callable[..., float] = field(repr=False, compare=False)
    # Computes the metric from inputs already checked and shared by compute() (internal).
    impl: Callable[[Any], float] | None = field(repr=False, compare=False, default=None)
    k: int | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'max' or 'min', not {self.direction!r}")
        if self.needs not in NEEDS:
            raise ValueError(f"needs must be one of {NEEDS}, not {self.needs!r}")
        if not self.tasks or not set(self.tasks) <= set(NAMES):
            raise ValueError(f"tasks must be a non-empty subset of {NAMES}, not {self.tasks!r}")

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b`` (NaN or None is never better)."""
        if a is None or (isinstance(a, float) and math.isnan(a)):
            return False
        if b is None or (isinstance(b, float) and math.isnan(b)):
            return True
        return a > b if self.direction == "max" else a < b

    def worst(self) -> float:
        """The value every real score beats: ``-inf`` for "max" metrics, ``+inf`` for "min"."""
        return -math.inf if self.direction == "max" else math.inf


# --------------------------------------------------------------------------- input checks


def _array(x: Any, what: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except ValueError as exc:  # ragged nested lists
        raise MetricError(
            f"{what} is not a rectangular array — {exc}",
            hint="pass a numpy array or a flat list with one entry per row",
        ) from None
    if a.dtype == bool:
        return a.astype(np.float64)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise MetricError(
            f"{what} must be numeric — given values of type {a.dtype}",
            hint="encode classes as integers 0..k-1 and pass numbers, not strings",
        )
    return a.astype(np.float64, copy=False)


def _vector(x: Any, what: str) -> np.ndarray:
    a = _array(x, what)
    if a.ndim == 2 and a.shape[1] == 1:  # a column vector, as many models return
        a = a[:, 0]
    if a.ndim != 1:
        raise MetricError(
            f"{what} must hold one value per row — given an array of shape {a.shape}",
            hint="pass a 1-d array with one entry per row",
        )
    return a


def _check_rows(y: np.ndarray, p: np.ndarray, what: str = "pred") -> None:
    if len(y) != len(p):
        raise MetricError(
            f"length mismatch — y_true has {len(y)} rows but {what} has {len(p)}",
            hint=f"pass exactly one {what} entry per row of y_true",
        )
    if len(y) == 0:
        raise MetricError(
            "no rows to score — y_true and pred are empty",
            hint="score at least one row; check that the split or the slice is not empty",
        )


def _check_finite(a: np.ndarray, what: str) -> None:
    finite = np.isfinite(a)
    if finite.all():
        return
    bad_rows = np.flatnonzero(~finite.reshape(len(a), -1).all(axis=1))
    raise MetricError(
        f"{what} has {bad_rows.size} row(s) with NaN or infinite values (first at row "
        f"{int(bad_rows[0])})",
        hint="drop or impute those rows first; a model that outputs NaN needs fixing",
    )


def _class_ids(a: np.ndarray, what: str, k: int | None = None, limit: str = "") -> np.ndarray:
    ids = a.astype(np.int64)
    off = np.flatnonzero(ids != a)
    if off.size:
        raise MetricError(
            f"{what} must hold class ids 0..k-1 — given {a[off[0]]!r} at row {int(off[0])}",
            hint="encode the classes as integers 0..k-1 in the order of the pred columns",
        )
    if ids.size and ids.min() < 0:
        raise MetricError(
            f"{what} must hold class ids 0..k-1 — given {int(ids.min())}",
            hint="encode the classes as integers 0..k-1",
        )
    if k is not None and ids.size and ids.max() >= k:
        raise MetricError(
            f"{what} holds class {int(ids.max())} but {limit or f'there are {k} classes'}",
            hint="give one probability column per class id 0..k-1",
        )
    return ids


def _binary_ids(a: np.ndarray, what: str) -> np.ndarray:
    bad = np.flatnonzero((a != 0) & (a != 1))
    if bad.size:
        raise MetricError(
            f"binary {what} must hold 0 and 1 — given {a[bad[0]]!r} at row {int(bad[0])}",
            hint="encode the positive class as 1 and the negative class as 0",
        )
    return a.astype(np.int64)


def _safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray | float:
    """num / den with 0.0 where den == 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
    return out if out.ndim else float(out)


# --------------------------------------------------------------------------- prepared inputs


class _Regression:
    """Checked regression inputs."""

    def __init__(self, y_true: Any, pred: Any, n_features: int | None = None):
        self.y = _vector(y_true, "y_true")
        self.p = _vector(pred, "pred")
        _check_rows(self.y, self.p)
        _check_finite(self.y, "y_true")
        _check_finite(self.p, "pred")
        if n_features is not None and (
            isinstance(n_features, bool) or int(n_features) != n_features or n_features < 0
        ):
            raise MetricError(
                f"n_features must be a whole number >= 0 — given {n_features!r}",
                hint="pass the number of model inputs (columns after featurisation)",
            )
        self.n_features = None if n_features is None else int(n_features)
        self.n = len(self.y)

    @cached_property
    def residual(self) -> np.ndarray:
        return self.y - self.p


class _Classes:
    """Checked classification inputs with the work several metrics share, done once.

    ``y`` and ``labels`` are class ids in 0..k-1; ``scores`` is P(positive) ``(n,)`` for
    binary, the probability matrix ``(n, k)`` for multiclass, or None (labels only).
    """

    def __init__(self, y: np.ndarray, labels: np.ndarray, k: int, scores: np.ndarray | None):
        self.y, self.labels, self.k, self.scores = y, labels, k, scores
        self.n = len(y)

    @cached_property
    def cm(self) -> np.ndarray:
        return _confusion(self.y, self.labels, self.k)

    @cached_property
    def curve(self) -> tuple[np.ndarray, np.ndarray]:
        return _curve(self.y, self.need_scores("ROC AUC and average precision"))

    def need_scores(self, name: str) -> np.ndarray:
        if self.scores is None:
            raise MetricError(
                f"{name} needs scores or probabilities — given class labels only",
                hint="pass P(positive) (binary) or the probability matrix (multiclass)",
            )
        return self.scores

    def need_proba(self, name: str) -> np.ndarray:
        """The scores, checked to be probabilities (log_loss and brier need them)."""
        p = self.need_scores(name)
        lo, hi = float(p.min()), float(p.max())
        if lo < 0 or hi > 1:
            raise MetricError(
                f"{name} needs probabilities in [0, 1] — pred ranges from {lo:g} to {hi:g}",
                hint="pass predicted probabilities (predict_proba), not raw scores or margins",
            )
        if p.ndim == 2:
            sums = p.sum(axis=1)
            off = np.flatnonzero(np.abs(sums - 1.0) > _PROBA_SUM_ATOL)
            if off.size:
                raise MetricError(
                    f"{name} needs each row of pred to sum to 1 — row {int(off[0])} sums to "
                    f"{sums[off[0]]:.6g}",
                    hint="pass a softmax / predict_proba matrix with one column per class",
                )
        return p

    def binary_counts(self) -> tuple[int, int, int, int]:
        """(tn, fp, fn, tp) of the positive class 1."""
        tn, fp, fn, tp = (int(v) for v in self.cm.ravel())
        return tn, fp, fn, tp


def _binary_ctx(y_true: Any, pred: Any, threshold: float = 0.5) -> _Classes:
    p = _array(pred, "pred")
    if p.ndim == 2 and p.shape[1] == 2:  # predict_proba output: P(positive) is column 1
        p = p[:, 1]
    p = _vector(p, "pred")
    y = _vector(y_true, "y_true")
    _check_rows(y, p)
    _check_finite(y, "y_true")
    _check_finite(p, "pred")
    if not isinstance(threshold, int | float | np.number) or not math.isfinite(threshold):
        raise MetricError(
            f"threshold must be a finite number — given {threshold!r}",
            hint="pass a decision threshold such as 0.5",
        )
    y = _binary_ids(y, "y_true")
    return _Classes(y, (p >= threshold).astype(np.int64), 2, p)


def _multiclass_ctx(y_true: Any, pred: Any) -> _Classes:
    p = _array(pred, "pred")
    if p.ndim != 2 or p.shape[1] < 2:
        raise MetricError(
            f"multiclass pred must be an (n, k) matrix of class probabilities — given an "
            f"array of shape {p.shape}",
            hint="pass predict_proba output with one column per class id 0..k-1",
        )
    y = _vector(y_true, "y_true")
    _check_rows(y, p)
    _check_finite(y, "y_true")
    _check_finite(p, "pred")
    k = p.shape[1]
    y = _class_ids(y, "y_true", k, limit=f"pred has only {k} columns (classes 0..{k - 1})")
    return _Classes(y, np.argmax(p, axis=1).astype(np.int64), k, p)


def _label_ctx(y_true: Any, labels: Any, *, binary: bool) -> _Classes:
    y = _vector(y_true, "y_true")
    lab = _vector(labels, "pred")
    _check_rows(y, lab)
    _check_finite(y, "y_true")
    _check_finite(lab, "pred")
    if binary:
        return _Classes(_binary_ids(y, "y_true"), _binary_ids(lab, "pred"), 2, None)
    y, lab = _class_ids(y, "y_true"), _class_ids(lab, "pred")
    return _Classes(y, lab, max(int(y.max()), int(lab.max())) + 1, None)


def _score_ctx(y_true: Any, pred: Any, tasks: tuple[str, ...]) -> _Classes:
    # A matrix of 3+ columns is multiclass; a vector (or (n, 2) predict_proba) is binary,
    # which is also how scikit-learn reads an (n, 2) matrix for the Brier score.
    p = np.asarray(pred)
    multi = MULTICLASS.name in tasks and (
        BINARY.name not in tasks or (p.ndim == 2 and p.shape[1] > 2)
    )
    return _multiclass_ctx(y_true, pred) if multi else _binary_ctx(y_true, pred)


def _confusion(y: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y * k + labels, minlength=k * k).reshape(k, k).astype(np.int64)


def _curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives above each distinct score, from the highest score down.

    One sort serves both ROC AUC and average precision; tied scores form one threshold.
    """
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), len(s) - 1]
    tps = np.cumsum(y[order])[last]
    return tps, last + 1 - tps


def _auc_from_curve(tps: np.ndarray, fps: np.ndarray, what: str = "ROC AUC") -> float:
    pos, neg = int(tps[-1]), int(fps[-1])
    if pos == 0 or neg == 0:
        raise MetricUndefined(
            f"{what} needs both classes in y_true; given only class {1 if pos else 0}",
            hint="score on a sample that holds positives and negatives (a larger or "
            "stratified split)",
        )
    tpr = np.r_[0.0, tps / pos]
    fpr = np.r_[0.0, fps / neg]
    # Trapezoids between thresholds: a tied block is a diagonal step, i.e. average ranks.
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


# --------------------------------------------------------------------------- regression


def _rmse(c: _Regression) -> float:
    return float(np.sqrt(np.mean(c.residual**2)))


def _mae(c: _Regression) -> float:
    return float(np.mean(np.abs(c.residual)))


def _medae(c: _Regression) -> float:
    return float(np.median(np.abs(c.residual)))


def _mape(c: _Regression) -> float:
    # scikit-learn's definition: |y - p| / max(|y|, eps), so y == 0 gives a huge term.
    return float(np.mean(np.abs(c.residual) / np.maximum(np.abs(c.y), _EPS)))


def _r2(c: _Regression) -> float:
    if c.n < 2:
        raise MetricUndefined(
            f"R² needs at least two rows — given {c.n}", hint="score on more rows"
        )
    ss_res = float(np.sum(c.residual**2))
    ss_tot = float(np.sum((c.y - c.y.mean()) ** 2))
    if ss_tot == 0.0:  # constant y_true: scikit-learn's force_finite convention
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def _adjusted_r2(c: _Regression) -> float:
    if c.n_features is None:
        raise MetricUndefined(
            "adjusted R² needs the number of features — given none",
            hint="pass n_features= (the number of model inputs)",
        )
    dof = c.n - c.n_features - 1
    if dof <= 0:
        raise MetricUndefined(
            f"adjusted R² needs more rows than features + 1 — given {c.n} rows and "
            f"{c.n_features} features",
            hint="score on more rows",
        )
    return 1.0 - (1.0 - _r2(c)) * (c.n - 1) / dof


# --------------------------------------------------------------------------- classification


def _accuracy(c: _Classes) -> float:
    return float(np.trace(c.cm) / c.n)


def _balanced_accuracy(c: _Classes) -> float:
    # Mean recall over the classes present in y_true (scikit-learn drops absent ones).
    support = c.cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(c.cm)[present] / support[present]))


def _precision(c: _Classes) -> float:
    _, fp, _, tp = c.binary_counts()
    return _safe_div(tp, tp + fp)


def _recall(c: _Classes) -> float:
    _, _, fn, tp = c.binary_counts()
    return _safe_div(tp, tp + fn)


def _specificity(c: _Classes) -> float:
    tn, fp, _, _ = c.binary_counts()
    return _safe_div(tn, tn + fp)


def _fpr(c: _Classes) -> float:
    tn, fp, _, _ = c.binary_counts()
    return _safe_div(fp, fp + tn)


def _fnr(c: _Classes) -> float:
    _, _, fn, tp = c.binary_counts()
    return _safe_div(fn, fn + tp)


def _f1(c: _Classes) -> float:
    _, fp, fn, tp = c.binary_counts()
    return _safe_div(2 * tp, 2 * tp + fp + fn)


def _roc_auc(c: _Classes) -> float:
    return _auc_from_curve(*c.curve)


def _pr_auc(c: _Classes) -> float:
    tps, fps = c.curve
    pos = int(tps[-1])
    if pos == 0:
        raise MetricUndefined(
            "average precision needs at least one positive in y_true; given only class 0",
            hint="score on a sample that holds positives",
        )
    precision = tps / (tps + fps)
    recall = tps / pos
    # Step-wise sum of precision over recall increments (scikit-learn's average_precision).
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _log_loss(c: _Classes) -> float:
    p = c.need_proba("log_loss")
    p_true = np.where(c.y == 1, p, 1.0 - p) if p.ndim == 1 else p[np.arange(c.n), c.y]
    return float(-np.mean(np.log(np.clip(p_true, _EPS, 1.0 - _EPS))))


def _brier(c: _Classes) -> float:
    p = c.need_proba("brier")
    if p.ndim == 1:
        return float(np.mean((p - c.y) ** 2))
    diff = p.copy()
    diff[np.arange(c.n), c.y] -= 1.0
    return float(np.mean(np.sum(diff**2, axis=1)))


def _per_class(c: _Classes, kind: str, average: str) -> float:
    cm = c.cm
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    if average == "micro":  # single-label: micro precision = recall = F1 = accuracy
        return float(tp.sum() / c.n)
    if kind == "precision":
        per = _safe_div(tp, predicted)
    elif kind == "recall":
        per = _safe_div(tp, support)
    else:
        per = _safe_div(2 * tp, predicted + support)
    # Like scikit-learn's default labels: the classes seen in y_true or in the predictions.
    present = (predicted + support) > 0
    if average == "macro":
        return float(np.mean(per[present]))
    return float(np.sum(per * support) / support.sum())


def _roc_auc_ovr(c: _Classes) -> float:
    p = c.need_scores("roc_auc_ovr")
    present = np.flatnonzero(np.bincount(c.y, minlength=c.k) > 0)
    if present.size < 2:
        raise MetricUndefined(
            f"ROC AUC needs at least two classes in y_true; given only class {int(present[0])}",
            hint="score on a sample that holds several classes (a larger or stratified split)",
        )
    # Macro one-vs-rest over the classes present in y_true. With every class present this
    # is scikit-learn's roc_auc_score(multi_class="ovr"); scikit-learn refuses otherwise.
    aucs = [_auc_from_curve(*_curve((c.y == j).astype(np.int64), p[:, j])) for j in present]
    return float(np.mean(aucs))


# --------------------------------------------------------------------------- ranking


class _Ranking:
    """Rows sorted by (query, score desc) with per-position expected relevance under ties.

    Every ranking metric is a sum over positions of a per-position quantity, so averaging
    over tied orderings reduces to replacing each row's relevance by its tie block's mean
    (linear metrics) or to a closed form (MAP, MRR); see the module docstring.
    """

    def __init__(self, y_true: Any, pred: Any, groups: Any = None):
        rel = _vector(y_true, "y_true")
        score = _vector(pred, "pred")
        _check_rows(rel, score)
        _check_finite(rel, "y_true")
        _check_finite(score, "pred")
        if rel.min() < 0:
            raise MetricError(
                f"ranking relevance must be >= 0 — given {rel.min():g}",
                hint="use graded relevance 0 (irrelevant), 1, 2, ...",
            )
        n = len(rel)
        if groups is None:
            gid = np.zeros(n, dtype=np.int64)
        else:
            g = np.asarray(groups)
            if g.ndim != 1:
                raise MetricError(
                    f"groups must hold one query id per row — given shape {g.shape}",
                    hint="pass a 1-d array of query ids",
                )
            _check_rows(rel, g, "groups")
            if g.dtype.kind == "f" and np.isnan(g).any():
                raise MetricError(
                    "groups has missing query ids (NaN)",
                    hint="give every row the id of the query it was ranked for",
                )
            # Sorting needs only ordered ids; map other objects (mixed types) to codes first.
            gid = g if g.dtype.kind in "biufUSmM" else _group_codes(g)

        order = np.lexsort((-score, gid))
        g_sorted, s_sorted, r_sorted = gid[order], score[order], rel[order]
        new_group = np.r_[True, g_sorted[1:] != g_sorted[:-1]]
        group_start = np.flatnonzero(new_group)
        self.gidx = np.cumsum(new_group) - 1
        self.n_groups = len(group_start)
        self.pos = np.arange(n) - group_start[self.gidx] + 1  # 1-based rank in its query
        self.discount = 1.0 / np.log2(self.pos + 1.0)

        new_block = new_group | np.r_[True, s_sorted[1:] != s_sorted[:-1]]
        bidx = np.cumsum(new_block) - 1
        block_start = np.flatnonzero(new_block)
        relevant = (r_sorted > 0).astype(np.float64)
        m = np.bincount(bidx).astype(np.float64)  # rows in each tie block
        r = np.bincount(bidx, weights=relevant)  # relevant rows in each tie block
        self.exp_rel = (r / m)[bidx]
        self.exp_gain = (np.bincount(bidx, weights=r_sorted) / m)[bidx]
        self.ideal_gain = rel[np.lexsort((-rel, gid))]  # same group layout as the sort above
        self.n_rel = np.bincount(self.gidx, weights=relevant, minlength=self.n_groups)
        self.valid = self.n_rel > 0

        # Relevant rows of the query ranked above each tie block.
        before = np.cumsum(relevant) - relevant
        above = before[block_start] - before[group_start[self.gidx[block_start]]]
        p_in = self.pos - (self.pos[block_start] - 1)[bidx]  # 1-based position in its block
        m_row, r_row, above_row = m[bidx], r[bidx], above[bidx]

        # AP: E[rel at position t * (#relevant at ranks <= t) / t]; given the position holds
        # a relevant row, the p-1 earlier slots of its block hold (p-1)(r-1)/(m-1) relevant.
        same_block = np.where(m_row > 1, (p_in - 1) * (r_row - 1) / np.maximum(m_row - 1, 1), 0)
        self.ap_term = (r_row / m_row) * (above_row + 1 + same_block) / self.pos

        # MRR: the first relevant row lies in the first block holding one; for r relevant rows
        # among m in random order, P(first at p) = prod_{j<p} (m-r-j+1)/(m-j+1) * r/(m-p+1).
        rows = np.flatnonzero(((r > 0) & (above == 0))[bidx])
        mm, rr, pp = m_row[rows], r_row[rows], p_in[rows]
        factor = (mm - rr - pp + 1) / (mm - pp + 1)
        log_f = np.log(np.where(factor > 0, factor, 1.0))  # zeros only matter past p = m-r+1
        exclusive = np.cumsum(log_f) - log_f
        first = new_block[rows]
        survive = np.exp(exclusive - exclusive[first][np.cumsum(first) - 1])
        p_first = np.where(pp <= mm - rr + 1, survive * rr / (mm - pp + 1), 0.0)
        self.first = np.zeros(len(self.pos))  # P(the first relevant row is this one)
        self.first[rows] = p_first

    def per_group(self, values: np.ndarray, k: int | None) -> np.ndarray:
        if k is not None:
            values = np.where(self.pos <= k, values, 0.0)
        return np.bincount(self.gidx, weights=values, minlength=self.n_groups)

    def mean(self, per_group: np.ndarray, name: str) -> float:
        if not self.valid.any():
            raise MetricUndefined(
                f"{name} needs at least one relevant row (relevance > 0) in y_true — "
                f"given none in {self.n_groups} quer{'y' if self.n_groups == 1 else 'ies'}",
                hint="score on queries that have at least one relevant item",
            )
        return float(np.mean(per_group[self.valid]))


def _group_codes(g: np.ndarray) -> np.ndarray:
    """Integer codes for query ids held as Python objects (ids of mixed types cannot be sorted)."""
    codes: dict[Any, int] = {}
    try:
        return np.fromiter((codes.setdefault(v, len(codes)) for v in g), np.int64, len(g))
    except TypeError as exc:
        raise MetricError(
            f"groups must hold query ids (numbers or strings) — given {exc}",
            hint="pass one hashable query id per row",
        ) from None


def _precision_at(k: int) -> Callable[[_Ranking], float]:
    def impl(c: _Ranking) -> float:
        return c.mean(c.per_group(c.exp_rel, k) / k, f"precision@{k}")

    return impl


def _recall_at(k: int) -> Callable[[_Ranking], float]:
    def impl(c: _Ranking) -> float:
        hits = c.per_group(c.exp_rel, k)
        return c.mean(_safe_div(hits, c.n_rel), f"recall@{k}")

    return impl


def _ndcg_at(k: int | None) -> Callable[[_Ranking], float]:
    def impl(c: _Ranking) -> float:
        dcg = c.per_group(c.exp_gain * c.discount, k)
        ideal = c.per_group(c.ideal_gain * c.discount, k)
        return c.mean(_safe_div(dcg, ideal), _name("ndcg", k))

    return impl


def _map_at(k: int | None) -> Callable[[_Ranking], float]:
    def impl(c: _Ranking) -> float:
        total = c.per_group(c.ap_term, k)
        denominator = c.n_rel if k is None else np.minimum(c.n_rel, k)
        return c.mean(_safe_div(total, denominator), _name("map", k))

    return impl


def _mrr_at(k: int | None) -> Callable[[_Ranking], float]:
    def impl(c: _Ranking) -> float:
        return c.mean(c.per_group(c.first / c.pos, k), _name("mrr", k))

    return impl


def _hit_rate_at(k: int) -> Callable[[_Ranking], float]:
    def impl(c: _Ranking) -> float:
        return c.mean(c.per_group(c.first, k), f"hit_rate@{k}")

    return impl


def _name(family: str, k: int | None) -> str:
    return family if k is None else f"{family}@{k}"


# --------------------------------------------------------------------------- registry


def _make_fn(needs: str, tasks: tuple[str, ...], impl: Callable[[Any], float]) -> Callable:
    """The standalone ``Metric.fn``: check the inputs, then compute."""
    if needs == "value":

        def fn(y_true: Any, pred: Any, *, n_features: int | None = None) -> float:
            return impl(_Regression(y_true, pred, n_features))

    elif needs == "relevance":

        def fn(y_true: Any, pred: Any, *, groups: Any = None) -> float:
            return impl(_Ranking(y_true, pred, groups))

    elif needs == "label":
        binary = tasks == (BINARY.name,)

        def fn(y_true: Any, pred: Any) -> float:
            return impl(_label_ctx(y_true, pred, binary=binary))

    else:

        def fn(y_true: Any, pred: Any) -> float:
            return impl(_score_ctx(y_true, pred, tasks))

    return fn


def _metric(
    name: str,
    direction: str,
    needs: str,
    description: str,
    impl: Callable[[Any], float],
    k: int | None = None,
) -> Metric:
    """A registry entry; the tasks it scores are those that list it (``mlsd.tasks``)."""
    tasks = tasks_of(name)
    fn = _make_fn(needs, tasks, impl)
    fn.__name__ = fn.__qualname__ = re.sub(r"\W", "_", name)
    fn.__doc__ = description
    return Metric(name, direction, tasks, needs, description, fn, impl, k)


_FAMILIES = {
    "precision": ("max", "fraction of the top {k} that is relevant", _precision_at),
    "recall": ("max", "fraction of the relevant rows found in the top {k}", _recall_at),
    "ndcg": ("max", "normalised discounted cumulative gain of the top {k}", _ndcg_at),
    "map": ("max", "mean average precision over the top {k}", _map_at),
    "mrr": ("max", "reciprocal rank of the first relevant row in the top {k}, else 0", _mrr_at),
    "hit_rate": ("max", "whether any relevant row is in the top {k}", _hit_rate_at),
}


@lru_cache(maxsize=512)
def _ranking_metric(family: str, k: int | None) -> Metric:
    direction, text, factory = _FAMILIES[family]
    if k is None:
        text = text.replace("the top {k}", "the whole list")
    description = text.format(k=k) + " (per query, averaged over queries; ties averaged)"
    return _metric(_name(family, k), direction, "relevance", description, factory(k), k)


def _build_registry() -> dict[str, Metric]:
    ms = [
        _metric("rmse", "min", "value", "root mean squared error", _rmse),
        _metric("mae", "min", "value", "mean absolute error", _mae),
        _metric("r2", "max", "value", "coefficient of determination R²", _r2),
        _metric(
            "adjusted_r2",
            "max",
            "value",
            "R² adjusted for the number of features: 1 - (1 - R²)(n - 1)/(n - p - 1)",
            _adjusted_r2,
        ),
        _metric(
            "mape",
            "min",
            "value",
            "mean absolute percentage error as a fraction: mean |y - p| / max(|y|, eps)",
            _mape,
        ),
        _metric("medae", "min", "value", "median absolute error", _medae),
        _metric("accuracy", "max", "label", "fraction of rows classified right", _accuracy),
        _metric(
            "balanced_accuracy",
            "max",
            "label",
            "mean recall over the classes present in y_true",
            _balanced_accuracy,
        ),
        _metric("precision", "max", "label", "TP / (TP + FP); 0 if none", _precision),
        _metric("recall", "max", "label", "TP / (TP + FN), sensitivity; 0 if none", _recall),
        _metric("specificity", "max", "label", "TN / (TN + FP); 0 if none", _specificity),
        _metric("fpr", "min", "label", "false positive rate FP / (FP + TN)", _fpr),
        _metric("fnr", "min", "label", "false negative rate FN / (FN + TP)", _fnr),
        _metric("f1", "max", "label", "harmonic mean of precision and recall", _f1),
        _metric("roc_auc", "max", "score", "area under the ROC curve", _roc_auc),
        _metric(
            "pr_auc",
            "max",
            "score",
            "area under the precision-recall curve (average precision)",
            _pr_auc,
        ),
        _metric(
            "log_loss",
            "min",
            "score",
            "mean negative log-likelihood (natural log)",
            _log_loss,
        ),
        _metric(
            "brier",
            "min",
            "score",
            "mean squared error of the probabilities (multiclass: summed over classes)",
            _brier,
        ),
    ]
    for kind in ("precision", "recall", "f1"):
        for average in ("macro", "micro", "weighted"):
            ms.append(
                _metric(
                    f"{kind}_{average}",
                    "max",
                    "label",
                    f"{kind} per class, {average}-averaged",
                    lambda c, kind=kind, average=average: _per_class(c, kind, average),
                )
            )
    ms.append(
        _metric(
            "roc_auc_ovr",
            "max",
            "score",
            "ROC AUC one class against the rest, macro-averaged over the classes in y_true",
            _roc_auc_ovr,
        )
    )
    for task in TASKS.values():  # ndcg@10 and its kin, as each task lists them
        for name in task.metrics:
            family, k = cutoff(name)
            if family in task.cutoff_metrics:
                ms.append(_ranking_metric(family, k))
    registry = {m.name: m for m in ms}
    missing = [name for name in ALL if name not in registry]
    if missing:  # a task lists a metric nobody wrote
        raise RuntimeError(f"metrics listed by a task but not implemented: {missing}")
    return registry


METRICS: dict[str, Metric] = _build_registry()


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise MetricError(
            f"unknown task {task!r}{did_you_mean(task, NAMES)}",
            hint=f"use one of: {', '.join(NAMES)}",
            headline="unknown task",
        )


def get_metric(name: str, task: str | None = None) -> Metric:
    """The registered metric called ``name`` (case-insensitive).

    Ranking metrics take a cutoff: ``"precision@5"``, ``"recall@20"``, ``"ndcg@10"``,
    ``"map@10"`` (``"ndcg"`` and ``"map"`` alone score the whole list). With ``task`` the
    metric must also apply to that task. Raises :class:`MetricError` ("unknown metric") with
    the closest names and the metrics available.
    """
    if task is not None:
        _check_task(task)
    canonical = resolve(name, None if task is None else TASKS[task])
    metric = METRICS.get(canonical)
    return metric if metric is not None else _ranking_metric(*cutoff(canonical))


def metrics_for(task: str) -> list[str]:
    """The metric names reported by default for ``task``: every scalar metric that applies."""
    _check_task(task)
    return list(TASKS[task].metrics)


def default_primary(task: str) -> str:
    """The primary offline metric used when the spec names none."""
    _check_task(task)
    return TASKS[task].default_metric


def _context(
    task: str,
    y_true: Any,
    pred: Any,
    *,
    threshold: float,
    n_features: int | None,
    groups: Any,
) -> Any:
    prediction = get_task(task).prediction
    if prediction == "value":
        return _Regression(y_true, pred, n_features)
    if prediction == "score":
        return _binary_ctx(y_true, pred, threshold)
    if prediction == "probabilities":
        return _multiclass_ctx(y_true, pred)
    return _Ranking(y_true, pred, groups)


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def compute(
    task: str,
    y_true: Any,
    pred: Any,
    *,
    names: Sequence[str] | str | None = None,
    threshold: float = 0.5,
    n_features: int | None = None,
    groups: Any = None,
) -> dict[str, float | None]:
    """Evaluate many metrics at once from one prediction array in the task's shape.

    ``names`` defaults to :func:`metrics_for` ``(task)``. The inputs are checked once and the
    shared work (confusion matrix, the one sort behind ROC AUC and average precision, the
    ranking sort) is done once. Returns ``{name: value}`` in the order asked, values plain
    floats; a metric undefined on this input (ROC AUC with one class, adjusted R² without
    ``n_features``) is ``None``. Bad input raises :class:`MetricError`.
    """
    _check_task(task)
    if names is None:
        names = metrics_for(task)
    elif isinstance(names, str):
        names = [names]
    metrics = [get_metric(name, task) for name in names]
    ctx = _context(task, y_true, pred, threshold=threshold, n_features=n_features, groups=groups)
    out: dict[str, float | None] = {}
    for metric in metrics:
        try:
            out[metric.name] = _json_float(metric.impl(ctx))
        except MetricUndefined:
            out[metric.name] = None
    return out


def score(
    name: str,
    task: str,
    y_true: Any,
    pred: Any,
    *,
    threshold: float = 0.5,
    n_features: int | None = None,
    groups: Any = None,
) -> float:
    """One metric from a prediction array in the task's shape (as :func:`compute` takes).

    Unlike :func:`compute`, a metric undefined on the input raises :class:`MetricUndefined`.
    """
    metric = get_metric(name, task)
    ctx = _context(task, y_true, pred, threshold=threshold, n_features=n_features, groups=groups)
    return float(metric.impl(ctx))


def per_group_values(
    name: str, y_true: Any, pred: Any, groups: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """One ranking metric per query group: ``(group ids, values)``.

    Groups come in sorted id order (first-appearance order for ids held as Python objects);
    ``groups=None`` is one query with id 0. A group with no relevant row has no value (NaN):
    the mean of the other values is exactly what :func:`compute` reports for ``name``.
    """
    metric = get_metric(name, RANKING.name)
    ctx = _Ranking(y_true, pred, groups)
    seen: list[np.ndarray] = []

    def keep(per_group: np.ndarray, what: str) -> float:  # the impl's per-group array
        seen.append(per_group)
        return 0.0

    ctx.mean = keep  # type: ignore[method-assign]
    metric.impl(ctx)
    values = np.where(ctx.valid, np.asarray(seen[-1], dtype=np.float64), np.nan)
    if groups is None:
        ids: np.ndarray = np.zeros(1, dtype=np.int64)
    else:
        g = np.asarray(groups)
        if g.dtype.kind in "biufUSmM":
            ids = np.unique(g)
        else:
            ids = np.empty(ctx.n_groups, dtype=object)
            ids[:] = list(dict.fromkeys(g.tolist()))
    return ids, values


def confusion_matrix(y_true: Any, labels: Any, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): int64 ``(n_classes, n_classes)``, rows = true."""
    if isinstance(n_classes, bool) or int(n_classes) != n_classes or n_classes < 1:
        raise MetricError(
            f"n_classes must be a whole number >= 1 — given {n_classes!r}",
            hint="pass the number of classes k (ids 0..k-1)",
        )
    k = int(n_classes)
    y = _vector(y_true, "y_true")
    lab = _vector(labels, "labels")
    if len(y) != len(lab):
        raise MetricError(
            f"length mismatch — y_true has {len(y)} rows but labels has {len(lab)}",
            hint="pass one predicted class per row of y_true",
        )
    _check_finite(y, "y_true")
    _check_finite(lab, "labels")
    limit = f"n_classes is {k}"
    return _confusion(
        _class_ids(y, "y_true", k, limit=limit), _class_ids(lab, "labels", k, limit=limit), k
    )
