"""Candidate generators on generated interactions with a known structure (users like the
items of their own cluster), the per-user split, and full-catalogue evaluation against
hand-computed metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlsd.errors import DataError
from mlsd.recsys.evaluate import ranking_scores, top_items
from mlsd.recsys.generators import ALS, BPR, EASE, GENERATORS, ItemKNN, Popularity, Recent
from mlsd.recsys.interactions import TEST, TRAIN, VALID, Interactions, split_per_user


def clustered(users=300, items=200, clusters=5, like=0.25, stray=0.01, seed=0) -> pd.DataFrame:
    """Each user and item in one of ``clusters``; a user has an item of their own cluster
    with probability ``like``, any other with ``stray``. Items of cluster 0 are the most
    popular overall (its users are the most numerous): popularity alone is a poor guess for
    the other clusters' users."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.choice(clusters, size=users, p=[0.4, 0.15, 0.15, 0.15, 0.15])
    item_cluster = rng.integers(0, clusters, size=items)
    p = np.where(user_cluster[:, None] == item_cluster[None, :], like, stray)
    u, i = np.nonzero(rng.random((users, items)) < p)
    return pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"i{x}" for x in i]})


@pytest.fixture(scope="module")
def split():
    frame = clustered()
    data = Interactions.from_frame(frame, "user", "item")
    labels = split_per_user(data.user_codes, seed=1)
    train, test = data.matrix(labels != TEST), data.matrix(labels == TEST)
    return data, train, test


def test_the_split_cuts_each_user_by_the_shares_and_the_seed_decides():
    codes = np.repeat(np.arange(50), np.arange(3, 53))  # users with 3..52 rows
    labels = split_per_user(codes, seed=7)
    for user, n in enumerate(range(3, 53)):
        got = labels[codes == user]
        assert (got == TEST).sum() == max(int(0.1 * n), 1)
        assert (got == VALID).sum() == max(int(0.1 * n), 1 if n - max(int(0.1 * n), 1) >= 3 else 0)
        assert (got == TRAIN).sum() >= 1
    assert (split_per_user(codes, seed=7) == labels).all()
    assert (split_per_user(codes, seed=8) != labels).any()
    with pytest.raises(DataError, match="summing to 1"):
        split_per_user(codes, (0.8, 0.3, 0.1))


def test_missing_ids_are_refused_and_repeated_pairs_count_once():
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": [1, 1, 2]})
    data = Interactions.from_frame(frame, "user", "item")
    assert data.shape == (2, 2) and data.matrix().sum() == 2
    with pytest.raises(DataError, match="no column 'items'"):
        Interactions.from_frame(frame, "user", "items")
    with pytest.raises(DataError, match="1 interactions have no 'user'"):
        Interactions.from_frame(pd.DataFrame({"user": ["a", None], "item": [1, 2]}), "user", "item")


def test_ranking_scores_match_the_formulas_by_hand():
    import scipy.sparse as sp

    # one user, relevant items {0, 2, 5}; the list is [0, 9, 2]
    relevant = sp.csr_matrix((np.ones(3), ([0, 0, 0], [0, 2, 5])), shape=(1, 10))
    top = np.array([[0, 9, 2]])
    got = ranking_scores(top, relevant, np.array([0]), ["ndcg@3", "recall@3", "precision@3"])
    dcg = 1 + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert got["ndcg@3"] == pytest.approx(dcg / ideal)
    assert got["recall@3"] == pytest.approx(2 / 3)  # item 5, missed, still counts
    assert got["precision@3"] == pytest.approx(2 / 3)


def test_top_items_never_lists_what_the_user_has(split):
    data, train, _ = split
    users = np.arange(data.shape[0])
    top = top_items(EASE(100).fit(train), users, 20, exclude=train)
    assert top.shape == (len(users), 20)
    for u in users[:50]:
        assert not set(top[u]) & set(train[u].indices)
        assert len(set(top[u])) == 20


def test_every_personal_generator_beats_popularity_on_clustered_users(split):
    data, train, test = split
    users = np.arange(data.shape[0])
    recall = {}
    for g in (Popularity(), ItemKNN(50), EASE(100), ALS(factors=16, iterations=10), BPR(16)):
        top = top_items(g.fit(train), users, 10, exclude=train)
        recall[g.name] = ranking_scores(top, test, users, ["recall@10"])["recall@10"]
    for name in ("itemknn", "ease", "als"):
        assert recall[name] > recall["popularity"] + 0.1, recall
    assert recall["bpr"] > recall["popularity"], recall
    assert set(GENERATORS) == {*recall, "recent"}  # recent: the next test, with times


def test_recent_popularity_follows_what_is_in_fashion_now():
    """Items 0-49 were the hits of the first half of the time range, 50-99 of the second;
    every user's latest interactions are held out. Recent popularity (ties broken by all-time
    counts) proposes the new hits; all-time popularity is still led by the old ones."""
    from mlsd.recsys.interactions import latest

    rng = np.random.default_rng(3)
    rows = []
    for user in range(400):
        for t in np.sort(rng.random(12)):
            hits = np.arange(50) if t < 0.5 else np.arange(50, 100)
            item = rng.choice(hits) if rng.random() < 0.9 - 0.4 * t else rng.integers(100, 300)
            rows.append((user, item, t))
    frame = pd.DataFrame(rows, columns=["user", "item", "t"])
    data = Interactions.from_frame(frame, "user", "item")
    labels = split_per_user(data.user_codes, (0.8, 0.0, 0.2), seed=0, times=frame["t"].to_numpy())
    train, test = data.matrix(labels != TEST), data.matrix(labels == TEST)
    times = latest(data, frame["t"].to_numpy(), labels != TEST)
    users = np.flatnonzero(np.diff(test.indptr))
    recall = {
        g.name: ranking_scores(top_items(g, users, 10, exclude=train), test, users, ["recall@10"])
        for g in (Popularity().fit(train), Recent(0.25).fit(train, times))
    }
    assert recall["recent"]["recall@10"] > 2 * recall["popularity"]["recall@10"], recall
    # the newest quarter of training interactions decides; all-time counts only break ties
    assert set(np.argsort(-Recent(0.25).fit(train, times).counts)[:10]) <= set(
        data.items.get_indexer(range(50, 100))
    )
    with pytest.raises(ValueError, match=r"problem\.time"):
        Recent().fit(train)


def test_ease_is_each_items_ridge_regression_on_the_others(split):
    _, train, _ = split
    x = train.toarray().astype(np.float64)
    weights = EASE(50).fit(train).weights
    for j in (0, 17, 123):
        others = np.delete(np.arange(x.shape[1]), j)
        a = x[:, others]
        b = np.linalg.solve(a.T @ a + 50 * np.eye(len(others)), a.T @ x[:, j])
        assert np.allclose(weights[others, j], b, atol=1e-4)
        assert weights[j, j] == 0
