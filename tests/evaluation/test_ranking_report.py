"""The ranking evaluation: metrics at k, per-group values and their distribution, the most
misranked groups (by hand and against scikit-learn), and the report a ranking model gets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from mlsd.evaluation import ranking
from mlsd.evaluation.metrics import compute, per_group_values

# group "a": ranked b1 (rel 2), b2 (0), b3 (1), b0 (3); group "b": the relevant item last;
# group "c": nothing relevant (left out of every mean)
Y = np.array([3, 2, 0, 1, 0, 0, 1, 0, 0], dtype=float)
P = np.array([0.1, 0.9, 0.5, 0.3, 3.0, 2.0, 1.0, 0.2, 0.4])
G = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 2)
L3, L4, L5 = math.log2(3), 2.0, math.log2(5)
NDCG_A = (2 + 0 / L3 + 1 / L4 + 3 / L5) / (3 + 2 / L3 + 1 / L4)
NDCG3_A = (2 + 1 / L4) / (3 + 2 / L3 + 1 / L4)
AP_A = (1 / 1 + 2 / 3 + 3 / 4) / 3


def test_per_group_values_by_hand_and_means_match_compute():
    ids, ndcg = per_group_values("ndcg", Y, P, G)
    assert ids.tolist() == ["a", "b", "c"]
    assert ndcg[0] == pytest.approx(NDCG_A) and ndcg[1] == pytest.approx(0.5)
    assert np.isnan(ndcg[2])
    _, mrr = per_group_values("mrr", Y, P, G)
    assert mrr[:2].tolist() == pytest.approx([1.0, 1 / 3])
    _, ap = per_group_values("map", Y, P, G)
    assert ap[:2].tolist() == pytest.approx([AP_A, 1 / 3])
    _, p3 = per_group_values("precision@3", Y, P, G)
    assert p3[:2].tolist() == pytest.approx([2 / 3, 1 / 3])

    rng = np.random.default_rng(0)
    g = rng.integers(0, 40, 1500)
    y = rng.integers(0, 4, 1500) * (rng.random(1500) < 0.4)
    p = rng.normal(size=1500).round(1)  # many ties
    for name in ("ndcg@10", "ndcg", "precision@5", "recall@20", "map@10", "map", "mrr"):
        _, values = per_group_values(name, y, p, g)
        expected = compute("ranking", y, p, names=[name], groups=g)[name]
        assert np.mean(values[~np.isnan(values)]) == expected  # exactly, not approximately
    ids, values = per_group_values("ndcg@3", y, p, g.astype(str).astype(object))
    assert len(ids) == len(values) == 40
    ids, values = per_group_values("ndcg", Y[:4], P[:4])  # no groups: one query
    assert ids.tolist() == [0] and values[0] == pytest.approx(NDCG_A)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_group_ndcg_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 25, 30)
    g = np.repeat(np.arange(30), sizes)
    y = rng.integers(0, 4, len(g)).astype(float)
    p = rng.integers(0, 5, len(g)).astype(float)  # ties averaged, as sklearn does
    for k in (1, 3, 10, None):
        name = "ndcg" if k is None else f"ndcg@{k}"
        table = ranking.group_table(y, p, g, name)
        for gid, value in zip(table["group"], table["value"], strict=True):
            rows = g == gid
            if y[rows].sum() == 0:
                assert np.isnan(value)
                continue
            expected = ndcg_score(y[rows][None], p[rows][None], k=k)
            assert value == pytest.approx(expected, abs=1e-12)


def test_metric_at_k_by_hand():
    out = ranking.metric_at_k(Y, P, G, ks=(1, 3))
    assert out["ks"] == [1, 3]
    at1, at3 = out["rows"]
    assert at1 == {
        "k": 1,
        "ndcg": pytest.approx((2 / 3 + 0) / 2),
        "precision": 0.5,
        "recall": pytest.approx((1 / 3 + 0) / 2),
        "map": pytest.approx(0.5),
    }
    assert at3["ndcg"] == pytest.approx((NDCG3_A + 0.5) / 2)
    assert at3["precision"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert at3["recall"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["ndcg"] == pytest.approx((NDCG_A + 0.5) / 2)
    assert out["map"] == pytest.approx((AP_A + 1 / 3) / 2)
    assert out["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    default = ranking.metric_at_k(Y, P, G)
    assert default["ks"] == [1, 3, 5, 10, 20] and len(default["rows"]) == 5
    nothing = ranking.metric_at_k(np.zeros(4), P[:4], G[:4])
    assert nothing["mrr"] is None and nothing["rows"][0]["ndcg"] is None


def test_per_group_distribution_and_lengths():
    out = ranking.per_group(Y, P, G, "ndcg")
    assert out["metric"] == "ndcg" and out["groups"] == 3 and out["scored_groups"] == 2
    assert out["groups_without_relevant"] == 1
    assert out["mean"] == pytest.approx(compute("ranking", Y, P, names=["ndcg"], groups=G)["ndcg"])
    assert sum(out["histogram"]["counts"]) == 2 and len(out["histogram"]["edges"]) == 11
    assert out["histogram"]["counts"][5] == 1  # 0.5 falls in [0.5, 0.6)
    assert out["quantiles"]["0.0"] == pytest.approx(0.5)
    assert out["quantiles"]["1.0"] == pytest.approx(NDCG_A)
    assert out["share_zero"] == 0.0 and out["share_perfect"] == 0.0
    lengths = out["list_length"]
    assert (lengths["min"], lengths["max"], lengths["mean"]) == (2, 4, 3.0)
    assert lengths["shorter_than_k"] is None
    assert ranking.per_group(Y, P, G, "ndcg@3")["list_length"]["shorter_than_k"] == pytest.approx(
        1 / 3
    )


def test_most_misranked_lists_the_worst_groups_with_their_items():
    frame = pd.DataFrame({"doc": [f"d{i}" for i in range(9)], "views": np.arange(9) * 10})
    worst = ranking.most_misranked(frame, Y, P, G, "ndcg", n=5, items=3)
    assert [w["group"] for w in worst] == ["b", "a"]  # "c" has nothing relevant
    b = worst[0]
    assert b["value"] == pytest.approx(0.5) and b["items"] == 3 and b["relevant"] == 1
    assert [r["row"] for r in b["ranked"]] == [4, 5, 6]
    assert [r["position"] for r in b["ranked"]] == [1, 2, 3]
    assert [r["ideal_position"] for r in b["ranked"]] == [2, 2, 1]
    assert b["ranked"][2] == {
        "position": 3,
        "row": 6,
        "score": 1.0,
        "relevance": 1.0,
        "ideal_position": 1,
        "features": {"doc": "d6", "views": 60},
    }
    a = worst[1]
    assert len(a["ranked"]) == 3  # items caps the list
    assert [r["row"] for r in a["ranked"]] == [1, 2, 3]
    assert [r["ideal_position"] for r in a["ranked"]] == [2, 4, 3]
    one = ranking.most_misranked(frame, Y, P, G, "ndcg", n=1, columns=["views"])
    assert len(one) == 1 and set(one[0]["ranked"][0]["features"]) == {"views"}
    with pytest.raises(ValueError, match="same rows"):
        ranking.most_misranked(frame.iloc[:3], Y, P, G)
