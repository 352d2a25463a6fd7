"""mlsd.evaluation.metrics: agreement with scikit-learn, hand-computed cases, errors."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from mlsd.errors import MlsdError
from mlsd.evaluation import metrics as M
from mlsd.evaluation.metrics import (
    METRICS,
    Metric,
    MetricError,
    MetricUndefined,
    compute,
    confusion_matrix,
    default_primary,
    get_metric,
    metrics_for,
    score,
)

TOL = 1e-9
SEEDS = [0, 1, 2, 3]


# --------------------------------------------------------------------------- data makers


def binary_data(seed: int, n: int = 400, pos_rate: float = 0.5, decimals: int = 2):
    """Labels with a given positive rate and scores rounded so many of them tie."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(int)
    y[:2] = [0, 1]  # both classes always present
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1).round(decimals)
    return y, p


def multiclass_data(seed: int, n: int = 500, k: int = 4):
    """Imbalanced classes; probability rows partly drawn from a small palette (ties)."""
    rng = np.random.default_rng(seed)
    prior = np.array([0.7, 0.2, 0.08, 0.02])[:k]
    y = rng.choice(k, size=n, p=prior / prior.sum())
    y[:k] = np.arange(k)  # every class present
    proba = rng.dirichlet(np.ones(k), size=n)
    palette = np.array([[0.25] * 4, [0.4, 0.4, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]])[:, :k]
    palette /= palette.sum(axis=1, keepdims=True)
    tied = rng.random(n) < 0.3
    proba[tied] = palette[rng.integers(0, len(palette), tied.sum())]
    return y, proba


def ranking_data(seed: int, n_groups: int = 30):
    """Groups of 2..12 rows, graded relevance 0..3, scores with ties; some groups all-zero."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 13, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    rel = rng.choice(4, size=groups.size, p=[0.6, 0.2, 0.1, 0.1]).astype(float)
    score = (rel * 0.3 + rng.random(groups.size)).round(1)
    order = rng.permutation(groups.size)  # rows of a query need not be contiguous
    return rel[order], score[order], groups[order]


def query_slices(groups):
    return [np.flatnonzero(groups == g) for g in np.unique(groups)]


# --------------------------------------------------------------------------- registry


def test_registry_names_and_defaults():
    assert metrics_for("regression") == ["rmse", "mae", "r2", "adjusted_r2", "mape", "medae"]
    assert set(metrics_for("binary")) == {
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "specificity",
        "fpr",
        "fnr",
        "f1",
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
    }
    multi = set(metrics_for("multiclass"))
    assert {"accuracy", "balanced_accuracy", "log_loss", "brier", "roc_auc_ovr"} <= multi
    assert {
        f"{k}_{a}" for k in ("precision", "recall", "f1") for a in ("macro", "micro", "weighted")
    } <= multi
    assert {"ndcg@10", "precision@5", "recall@10", "mrr", "map"} <= set(metrics_for("ranking"))
    for task in M.TASKS:
        for name in metrics_for(task):
            assert task in METRICS[name].tasks
            assert METRICS[name].needs in M.NEEDS
        assert default_primary(task) in metrics_for(task)
    assert [default_primary(t) for t in ("regression", "binary", "multiclass", "ranking")] == [
        "rmse",
        "roc_auc",
        "log_loss",
        "ndcg@10",
    ]


def test_directions_better_and_worst():
    for name in ("rmse", "mae", "mape", "medae", "log_loss", "brier", "fpr", "fnr"):
        assert METRICS[name].direction == "min", name
    for name in ("r2", "adjusted_r2", "roc_auc", "pr_auc", "f1", "accuracy", "ndcg@10", "mrr"):
        assert METRICS[name].direction == "max", name
    rmse, auc = get_metric("rmse"), get_metric("roc_auc")
    assert rmse.better(1.0, 2.0) and not rmse.better(2.0, 1.0) and not rmse.better(1.0, 1.0)
    assert auc.better(0.9, 0.8) and not auc.better(0.8, 0.9) and not auc.better(0.8, 0.8)
    assert rmse.worst() == math.inf and auc.worst() == -math.inf
    assert rmse.better(1e300, rmse.worst()) and auc.better(-1e300, auc.worst())
    assert not auc.better(float("nan"), 0.5) and auc.better(0.5, None)
    with pytest.raises(ValueError):
        Metric("x", "up", ("binary",), "score", "", lambda y, p: 0.0)


def test_parameterised_names():
    m = get_metric("NDCG@3")
    assert (m.name, m.k, m.tasks, m.direction) == ("ndcg@3", 3, ("ranking",), "max")
    assert get_metric("precision@7").k == 7
    assert get_metric("recall@20") is METRICS["recall@20"]
    assert get_metric("map@4").name == "map@4"
    assert get_metric("precision").tasks == ("binary",)  # no cutoff: binary precision
    for bad in ("ndcg@0", "ndcg@x", "precision@", "map@-1"):
        with pytest.raises(MetricError, match="cutoff"):
            get_metric(bad)


# --------------------------------------------------------------------------- regression


@pytest.mark.parametrize("seed", SEEDS)
def test_regression_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(10, 3, 300)
    y[:5] = 0.0  # mape divides by max(|y|, eps) here, as scikit-learn does
    pred = y + rng.normal(0, 2, 300)
    got = compute("regression", y, pred, n_features=4)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), abs=TOL)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), abs=TOL)
    assert got["r2"] == pytest.approx(skm.r2_score(y, pred), abs=TOL)
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, pred), rel=TOL)
    assert got["medae"] == pytest.approx(skm.median_absolute_error(y, pred), abs=TOL)
    r2 = skm.r2_score(y, pred)
    assert got["adjusted_r2"] == pytest.approx(1 - (1 - r2) * 299 / 295, abs=TOL)


def test_regression_by_hand():
    y, pred = [1.0, 2.0, 3.0, 4.0, 5.0], [1.5, 2.0, 2.0, 4.5, 5.0]
    # y - p = -0.5, 0, 1, -0.5, 0: ss_res = 1.5; ss_tot = 10
    assert METRICS["r2"].fn(y, pred) == pytest.approx(0.85)
    assert METRICS["adjusted_r2"].fn(y, pred, n_features=2) == pytest.approx(1 - 0.15 * 4 / 2)
    assert METRICS["rmse"].fn(y, pred) == pytest.approx(math.sqrt(1.5 / 5))
    assert METRICS["medae"].fn(y, pred) == pytest.approx(0.5)
    # constant y_true: scikit-learn's force_finite convention
    assert METRICS["r2"].fn([2, 2, 2], [2, 2, 2]) == 1.0
    assert METRICS["r2"].fn([2, 2, 2], [1, 2, 3]) == 0.0


def test_adjusted_r2_undefined_without_features_or_rows():
    y, pred = [1.0, 2.0, 3.0], [1.0, 2.5, 2.5]
    with pytest.raises(MetricUndefined, match="n_features"):
        METRICS["adjusted_r2"].fn(y, pred)
    with pytest.raises(MetricUndefined, match="more rows"):
        METRICS["adjusted_r2"].fn(y, pred, n_features=2)
    out = compute("regression", y, pred)
    assert out["adjusted_r2"] is None and out["r2"] is not None
    with pytest.raises(MetricError, match="n_features"):
        compute("regression", y, pred, n_features=-1)


# --------------------------------------------------------------------------- binary


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("pos_rate", [0.5, 0.05])
def test_binary_matches_sklearn(seed, pos_rate):
    y, p = binary_data(seed, pos_rate=pos_rate)
    threshold = 0.5
    labels = (p >= threshold).astype(int)
    got = compute("binary", y, p, threshold=threshold)
    expect = {
        "accuracy": skm.accuracy_score(y, labels),
        "balanced_accuracy": skm.balanced_accuracy_score(y, labels),
        "precision": skm.precision_score(y, labels, zero_division=0),
        "recall": skm.recall_score(y, labels, zero_division=0),
        "specificity": skm.recall_score(y, labels, pos_label=0, zero_division=0),
        "f1": skm.f1_score(y, labels, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p, labels=[0, 1]),
        "brier": skm.brier_score_loss(y, p),
    }
    for name, value in expect.items():
        assert got[name] == pytest.approx(value, abs=TOL), name
    assert got["fpr"] == pytest.approx(1 - expect["specificity"], abs=TOL)
    assert got["fnr"] == pytest.approx(1 - expect["recall"], abs=TOL)
    # the same through Metric.fn: label metrics take labels, score metrics take scores
    assert METRICS["f1"].fn(y, labels) == pytest.approx(expect["f1"], abs=TOL)
    assert METRICS["roc_auc"].fn(y, p) == pytest.approx(expect["roc_auc"], abs=TOL)


def test_binary_extreme_probabilities_log_loss():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])  # confidently wrong rows hit the clip
    assert METRICS["log_loss"].fn(y, p) == pytest.approx(skm.log_loss(y, p), rel=TOL)
    assert math.isfinite(METRICS["log_loss"].fn(y, p))


def test_binary_by_hand():
    y = [1, 1, 0, 0, 0]
    p = [0.9, 0.2, 0.7, 0.1, 0.3]  # at 0.5: TP=1 FN=1 FP=1 TN=2
    got = compute("binary", y, p)
    assert got["specificity"] == pytest.approx(2 / 3)
    assert got["fpr"] == pytest.approx(1 / 3)
    assert got["fnr"] == pytest.approx(1 / 2)
    assert got["precision"] == pytest.approx(1 / 2)
    # of the 2 x 3 positive-negative pairs, 0.9 wins 3 and 0.2 wins 1 (against 0.1)
    assert got["roc_auc"] == pytest.approx(4 / 6)
    at_03 = compute("binary", y, p, threshold=0.3, names=["recall", "fpr"])
    assert at_03 == {"recall": 0.5, "fpr": pytest.approx(2 / 3)}


def test_zero_division_is_zero():
    y, p = [1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4]  # nothing predicted positive
    got = compute("binary", y, p, names=["precision", "recall", "f1", "fnr"])
    assert got == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "fnr": 1.0}
    got = compute("binary", [0, 0], [0.7, 0.1], names=["recall", "fnr", "precision"])
    assert got == {"recall": 0.0, "fnr": 0.0, "precision": 0.0}


def test_predict_proba_matrix_accepted_for_binary():
    y, p = binary_data(5)
    both = np.column_stack([1 - p, p])
    assert compute("binary", y, both) == compute("binary", y, p)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=40).filter(
        lambda rows: len({r[0] for r in rows}) == 2
    )
)
def test_auc_and_ap_match_sklearn_on_heavy_ties(rows):
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=float) / 5
    got = compute("binary", y, s, names=["roc_auc", "pr_auc"])
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=TOL)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, s), abs=TOL)


def test_binary_million_rows_is_fast():
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = (rng.random(n) < 0.1).astype(np.int64)
    p = rng.random(n).round(4)
    compute("binary", y[:1000], p[:1000])  # warm up
    start = time.perf_counter()
    out = compute("binary", y, p)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"compute on 1M rows took {elapsed:.2f} s"
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=TOL)


# --------------------------------------------------------------------------- multiclass


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_matches_sklearn(seed):
    y, proba = multiclass_data(seed)
    labels = proba.argmax(axis=1)
    k = proba.shape[1]
    got = compute("multiclass", y, proba)
    expect = {
        "accuracy": skm.accuracy_score(y, labels),
        "balanced_accuracy": skm.balanced_accuracy_score(y, labels),
        "log_loss": skm.log_loss(y, proba, labels=list(range(k))),
        "brier": skm.brier_score_loss(y, proba, labels=list(range(k))),
        "roc_auc_ovr": skm.roc_auc_score(y, proba, multi_class="ovr"),
    }
    for kind, fn in (("precision", skm.precision_score), ("recall", skm.recall_score)):
        for avg in ("macro", "micro", "weighted"):
            expect[f"{kind}_{avg}"] = fn(y, labels, average=avg, zero_division=0)
    for avg in ("macro", "micro", "weighted"):
        expect[f"f1_{avg}"] = skm.f1_score(y, labels, average=avg, zero_division=0)
    for name, value in expect.items():
        assert got[name] == pytest.approx(value, abs=TOL), name
    assert METRICS["f1_macro"].fn(y, labels) == pytest.approx(expect["f1_macro"], abs=TOL)
    assert METRICS["log_loss"].fn(y, proba) == pytest.approx(expect["log_loss"], abs=TOL)


def test_multiclass_class_never_predicted_or_absent():
    # class 2 never predicted (zero_division) and class 3 absent from y_true and predictions
    y = np.array([0, 1, 2, 0, 1, 2])
    labels = np.array([0, 1, 1, 0, 0, 1])
    proba = np.eye(4)[labels] * 0.7 + 0.075
    got = compute("multiclass", y, proba)
    for kind, fn in (("precision", skm.precision_score), ("f1", skm.f1_score)):
        for avg in ("macro", "weighted"):
            expect = fn(y, labels, average=avg, zero_division=0)
            assert got[f"{kind}_{avg}"] == pytest.approx(expect, abs=TOL)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, labels))
    # one-vs-rest over the classes present in y_true (scikit-learn would refuse class 3)
    expect = np.mean([skm.roc_auc_score(y == j, proba[:, j]) for j in range(3)])
    assert got["roc_auc_ovr"] == pytest.approx(expect, abs=TOL)


def test_confusion_matrix_matches_sklearn():
    y, proba = multiclass_data(7)
    labels = proba.argmax(axis=1)
    cm = confusion_matrix(y, labels, 4)
    assert cm.dtype == np.int64 and cm.shape == (4, 4)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, labels, labels=range(4)))
    np.testing.assert_array_equal(
        confusion_matrix([0, 1], [1, 1], 3), [[0, 1, 0], [0, 1, 0], [0] * 3]
    )
    with pytest.raises(MetricError, match="n_classes is 2"):
        confusion_matrix([0, 2], [0, 1], 2)


# --------------------------------------------------------------------------- ranking

# Two queries written out (rows listed best score first), plus a query with nothing relevant.
#   q "a": relevance by rank 1, 0, 1, 0     q "b": relevance by rank 0, 0, 2     q "c": 0, 0
TOY_GROUPS = ["a", "a", "a", "a", "b", "b", "b", "c", "c"]
TOY_REL = [1, 0, 1, 0, 0, 0, 2, 0, 0]
TOY_SCORE = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 2.0, 1.0]


def test_module_imports_neither_pandas_nor_sklearn():
    code = (
        "import sys, mlsd.evaluation.metrics as m; "
        "m.compute('binary', [0, 1], [0.2, 0.7]); "
        "assert not {'pandas', 'sklearn', 'scipy'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ranking_toy_by_hand():
    perm = np.array([8, 3, 0, 6, 1, 5, 2, 7, 4])  # row order must not matter
    rel, sc, gr = (np.asarray(a)[perm] for a in (TOY_REL, TOY_SCORE, TOY_GROUPS))
    got = compute(
        "ranking",
        rel,
        sc,
        groups=gr,
        names=["precision@2", "recall@2", "mrr", "map", "map@2", "ndcg@2", "ndcg"],
    )
    # q "c" has no relevant row: skipped. Per query a / b:
    #   P@2 1/2 / 0    R@2 1/2 / 0    RR 1 / 1/3    AP (1 + 2/3)/2 / (1/3)/1    AP@2 1/2 / 0
    assert got["precision@2"] == pytest.approx(0.25)
    assert got["recall@2"] == pytest.approx(0.25)
    assert got["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    assert got["map"] == pytest.approx((5 / 6 + 1 / 3) / 2)
    assert got["map@2"] == pytest.approx(0.25)
    # nDCG@2: a = 1 / (1 + 1/log2(3)), b = 0
    assert got["ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3))) / 2)
    ndcg_a = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_b = (2 / math.log2(4)) / 2
    assert got["ndcg"] == pytest.approx((ndcg_a + ndcg_b) / 2)


def test_ranking_ties_by_hand():
    # one query, both rows tied: each order is equally likely
    got = compute("ranking", [1, 0], [3.0, 3.0], names=["precision@1", "mrr", "map", "ndcg"])
    assert got["precision@1"] == pytest.approx(0.5)
    assert got["mrr"] == pytest.approx(0.75)
    assert got["map"] == pytest.approx(0.75)
    assert got["ndcg"] == pytest.approx((1 + 1 / math.log2(3)) / 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_ndcg_matches_sklearn_with_ties(seed):
    rel, sc, gr = ranking_data(seed)
    got = compute("ranking", rel, sc, groups=gr, names=["ndcg@1", "ndcg@3", "ndcg@10", "ndcg"])
    for name, k in (("ndcg@1", 1), ("ndcg@3", 3), ("ndcg@10", 10), ("ndcg", None)):
        per_query = [
            skm.ndcg_score([rel[i]], [sc[i]], k=k) for i in query_slices(gr) if rel[i].max() > 0
        ]
        assert got[name] == pytest.approx(np.mean(per_query), abs=TOL), name


@pytest.mark.parametrize("seed", SEEDS)
def test_map_matches_sklearn_average_precision_without_ties(seed):
    rel, _, gr = ranking_data(seed)
    sc = np.random.default_rng(seed + 100).permutation(rel.size).astype(float)  # no ties
    per_query = [
        skm.average_precision_score(rel[i] > 0, sc[i]) for i in query_slices(gr) if rel[i].max() > 0
    ]
    assert score("map", "ranking", rel, sc, groups=gr) == pytest.approx(np.mean(per_query), abs=TOL)


def _brute_force(rel, sc, k):
    """Average each metric over every ordering of the tied rows of one query."""
    blocks = [np.flatnonzero(sc == v) for v in sorted(set(sc), reverse=True)]
    n_rel = int((rel > 0).sum())
    totals = np.zeros(5)
    count = 0
    for perms in itertools.product(*(itertools.permutations(b) for b in blocks)):
        r = rel[np.concatenate(perms)]
        hit = r > 0
        precision_at = np.cumsum(hit) / np.arange(1, len(r) + 1)
        ap = np.sum(precision_at * hit) / n_rel
        ap_k = np.sum((precision_at * hit)[:k]) / min(n_rel, k)
        rr = 1 / (np.argmax(hit) + 1)
        p_k = hit[:k].sum() / k
        r_k = hit[:k].sum() / n_rel
        totals += [p_k, r_k, rr, ap, ap_k]
        count += 1
    return totals / count


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=7).filter(
        lambda rows: any(r[0] > 0 for r in rows)
    ),
    st.integers(1, 4),
)
def test_ranking_tie_averaging_equals_brute_force(rows, k):
    rel = np.array([r[0] for r in rows], dtype=float)
    sc = np.array([r[1] for r in rows], dtype=float)
    names = [f"precision@{k}", f"recall@{k}", "mrr", "map", f"map@{k}"]
    got = compute("ranking", rel, sc, names=names)
    expect = _brute_force(rel, sc, k)
    assert [got[n] for n in names] == pytest.approx(list(expect), abs=TOL)


def test_ranking_groups_none_is_one_query_and_undefined_without_relevant():
    rel, sc = [0, 2, 1], [0.1, 0.9, 0.5]
    assert compute("ranking", rel, sc) == compute("ranking", rel, sc, groups=[7, 7, 7])
    out = compute("ranking", [0, 0], [0.3, 0.1], groups=[1, 1])
    assert set(out.values()) == {None}
    with pytest.raises(MetricUndefined, match="relevant"):
        METRICS["ndcg@10"].fn([0, 0], [0.3, 0.1])
    with pytest.raises(MetricError, match=">= 0"):
        compute("ranking", [-1, 1], [0.3, 0.1])
    with pytest.raises(MetricError, match="length mismatch"):
        compute("ranking", [0, 1], [0.3, 0.1], groups=[1])
    with pytest.raises(MetricError, match="missing query ids"):
        compute("ranking", [0, 1], [0.3, 0.1], groups=[1.0, np.nan])
    mixed = compute("ranking", [0, 1, 1], [0.3, 0.1, 0.2], groups=np.array([1, "1", None], object))
    assert mixed["mrr"] == pytest.approx(1.0)  # three queries; the first has no relevant row


# --------------------------------------------------------------------------- compute


def test_compute_is_json_safe_and_reports_undefined_as_none():
    y, p = [1, 1, 1], [0.2, 0.6, 0.9]  # one class only: ROC AUC undefined
    out = compute("binary", y, p)
    assert out["roc_auc"] is None
    assert out["pr_auc"] == 1.0
    assert list(out) == metrics_for("binary")
    json.dumps(out, allow_nan=False)
    assert all(v is None or type(v) is float for v in out.values())
    assert compute("binary", [0, 0], [0.1, 0.2], names="pr_auc") == {"pr_auc": None}
    assert list(compute("regression", [1, 2], [1, 2], names=["mae", "rmse"])) == ["mae", "rmse"]


def test_score_raises_where_compute_reports_none():
    with pytest.raises(MetricUndefined) as err:
        score("roc_auc", "binary", [1, 1, 1], [0.2, 0.6, 0.9])
    assert "ROC AUC needs both classes in y_true; given only class 1" in str(err.value)
    with pytest.raises(MetricUndefined, match="given only class 0"):
        METRICS["roc_auc"].fn([0, 0], [0.2, 0.6])
    with pytest.raises(MetricUndefined, match="at least two classes"):
        score("roc_auc_ovr", "multiclass", [1, 1], [[0.2, 0.8], [0.5, 0.5]])
    assert score("precision", "binary", [1, 0, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.5)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("task", "y", "pred"),
    [
        ("regression", [], []),
        ("binary", [], []),
        ("multiclass", [], np.zeros((0, 3))),
        ("ranking", [], []),
    ],
)
def test_empty_input(task, y, pred):
    with pytest.raises(MetricError, match="no rows to score"):
        compute(task, y, pred)


def test_empty_input_through_fn():
    for name in ("rmse", "roc_auc", "accuracy", "ndcg@10", "log_loss"):
        with pytest.raises(MetricError, match="no rows to score"):
            METRICS[name].fn([], [])


def test_length_mismatch():
    with pytest.raises(MetricError, match="y_true has 3 rows but pred has 2"):
        compute("binary", [0, 1, 1], [0.1, 0.9])
    with pytest.raises(MetricError, match="length mismatch"):
        METRICS["mae"].fn([1.0, 2.0], [1.0])
    with pytest.raises(MetricError, match="length mismatch"):
        score("log_loss", "multiclass", [0, 1], np.full((3, 2), 0.5))


def test_nan_and_bad_values():
    with pytest.raises(MetricError, match=r"NaN or infinite values \(first at row 1\)"):
        compute("binary", [0, 1], [0.5, np.nan])
    with pytest.raises(MetricError, match="NaN"):
        compute("multiclass", [0, 1], [[0.5, 0.5], [np.nan, 0.5]])
    with pytest.raises(MetricError, match="y_true"):
        METRICS["rmse"].fn([1.0, np.inf], [1.0, 2.0])
    with pytest.raises(MetricError, match="must hold 0 and 1"):
        compute("binary", [0, 2], [0.1, 0.9])
    with pytest.raises(MetricError, match="only 2 columns"):
        compute("multiclass", [0, 2], [[0.5, 0.5], [0.1, 0.9]])
    with pytest.raises(MetricError, match="class ids"):
        compute("multiclass", [0, 0.5], [[0.5, 0.5], [0.1, 0.9]])
    with pytest.raises(MetricError, match="numeric"):
        compute("binary", ["yes", "no"], [0.1, 0.9])
    with pytest.raises(MetricError, match=r"\(n, k\) matrix"):
        compute("multiclass", [0, 1], [0.1, 0.9])


def test_probabilities_are_checked_only_where_needed():
    y, margin = [0, 1, 1], [-2.0, 0.5, 3.0]  # raw scores: fine for AUC, wrong for log loss
    assert METRICS["roc_auc"].fn(y, margin) == 1.0
    with pytest.raises(MetricError, match=r"probabilities in \[0, 1\]"):
        compute("binary", y, margin)
    rows = [[0.5, 0.2, 0.2], [0.2, 0.3, 0.2]]  # rows do not sum to 1
    assert score("roc_auc_ovr", "multiclass", [0, 1], rows) == 1.0
    with pytest.raises(MetricError, match="sum to 1"):
        score("log_loss", "multiclass", [0, 1], rows)


def test_unknown_metric_suggests_the_closest_name():
    with pytest.raises(MetricError) as err:
        get_metric("roc_acu")
    assert isinstance(err.value, MlsdError)
    assert err.value.headline == "unknown metric"
    assert "did you mean 'roc_auc'" in str(err.value)
    with pytest.raises(MetricError) as err:
        compute("binary", [0, 1], [0.2, 0.8], names=["f1", "presicion"])
    assert "did you mean 'precision'" in err.value.message
    assert "pr_auc" in err.value.hint and "rmse" not in err.value.hint  # the binary list


def test_metric_for_another_task_is_refused():
    with pytest.raises(MetricError, match="does not apply to a multiclass task") as err:
        compute("multiclass", [0, 1], [[0.6, 0.4], [0.3, 0.7]], names=["roc_auc"])
    assert "roc_auc_ovr" in str(err.value)
    with pytest.raises(MetricError, match="unknown task"):
        compute("clasification", [0, 1], [0.2, 0.8])
    with pytest.raises(MetricError, match="unknown task"):
        metrics_for("rank")
