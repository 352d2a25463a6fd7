"""Offline evaluation of a recommender over the whole catalogue: each user's top items,
with what they already have masked, judged against their held-out items by the ranking
metrics of the registry (one definition of each: :mod:`mlsd.evaluation.metrics`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from mlsd.evaluation.metrics import compute
from mlsd.recsys.generators import Generator
from mlsd.recsys.retrieval import top_columns
from mlsd.tasks import RANKING

BATCH = 256  # users scored at once: a (BATCH, items) float32 array


def top_items(
    generator: Generator,
    users: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    batch: int = BATCH,
) -> np.ndarray:
    """A (len(users), n) array of item columns, best first; the items of each user's row of
    ``exclude`` (what they already have) never appear, and a user with none there gets the
    most popular items, as a cold start is served."""
    out = np.empty((len(users), n), dtype=np.int64)
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        scores = generator.score(chunk).astype(np.float32, copy=True)
        if exclude is not None:
            mask_seen(scores, exclude[chunk])
        out[start : start + len(chunk)] = top_columns(scores, n)
    return out if exclude is None else with_cold_start(out, users, exclude)


def with_cold_start(top: np.ndarray, users: np.ndarray, seen: sp.csr_matrix) -> np.ndarray:
    """``top`` with the rows of users who have nothing in ``seen`` replaced by the most
    popular items of ``seen`` (what :mod:`mlsd.recsys.runtime` answers them)."""
    cold = np.diff(seen.indptr)[users] == 0
    if cold.any():
        counts = np.asarray(seen.sum(axis=0), dtype=np.float32).ravel()
        top = top.copy()
        top[cold] = top_columns(counts[None, :], top.shape[1])[0]
    return top


def mask_seen(scores: np.ndarray, seen: sp.csr_matrix) -> None:
    """Set to -inf, in place, the score of every item a row of ``seen`` holds (``scores``
    and ``seen`` have a row per user of the same batch)."""
    scores[np.repeat(np.arange(seen.shape[0]), np.diff(seen.indptr)), seen.indices] = -np.inf


def ranking_scores(
    top: np.ndarray,
    relevant: sp.csr_matrix,
    users: np.ndarray,
    names: Sequence[str] = ("ndcg@10", "recall@10", "precision@10", "map@10", "recall@100"),
) -> dict[str, float | None]:
    """The registry's ranking metrics of the lists ``top`` (one row per user of ``users``)
    against each user's ``relevant`` items (binary), mean over users with any.

    Each user is a group holding their listed items at their places and, below them, the
    relevant items the list missed: so recall's denominator and NDCG's ideal order count
    every relevant item, as full-catalogue evaluation requires. A metric at k judges the
    first k of the list: ``top`` must be at least as long as the largest k."""
    rows = relevant[users]
    pairs = ((top[r], rows.indices[rows.indptr[r] : rows.indptr[r + 1]]) for r in range(len(users)))
    return judge(pairs, names, n=top.shape[1])


def judge(
    pairs: Iterable[tuple[Sequence, Sequence]], names: Sequence[str], n: int | None = None
) -> dict[str, float | None]:
    """The registry's ranking metrics of (listed items, relevant items) pairs, one per user
    (items are any ids; users without a relevant item are left out). Each user's list is
    padded to ``n`` places (default: its own length) before the missed relevant items."""
    y, score, group = [], [], []
    for r, (listed, wanted) in enumerate(pairs):
        if not len(wanted):
            continue
        listed, wanted = list(listed), set(wanted)
        places = n or len(listed)
        hit = [item in wanted for item in listed] + [False] * (places - len(listed))
        missed = len(wanted - set(listed))
        y.append(np.r_[np.asarray(hit, dtype=np.float64), np.ones(missed)])
        score.append(np.r_[np.arange(places, 0, -1, dtype=np.float64), np.zeros(missed)])
        group.append(np.full(places + missed, r))
    return compute(
        RANKING.name,
        np.concatenate(y),
        np.concatenate(score),
        names=list(names),
        groups=np.concatenate(group),
    )


def beyond_accuracy(top: np.ndarray, seen: sp.csr_matrix, k: int) -> dict[str, float]:
    """What the lists at ``k`` do to the catalogue, from ``seen`` (the training
    interactions), with p_i the share of users who have item i:

    - ``coverage@k``: the share of the catalogue that appears in anyone's list;
    - ``popularity@k``: the mean p_i of the recommended items (popularity bias);
    - ``novelty@k``: the mean -log2(p_i) of the recommended items (self-information; items
      nobody has count as seen by one user)."""
    listed = top[:, :k]
    listed = listed[listed >= 0]
    share = np.asarray(seen.getnnz(axis=0), dtype=np.float64) / max(seen.shape[0], 1)
    p = np.maximum(share[listed], 1.0 / max(seen.shape[0], 1))
    return {
        f"coverage@{k}": float(len(np.unique(listed)) / seen.shape[1]),
        f"popularity@{k}": float(share[listed].mean()) if len(listed) else 0.0,
        f"novelty@{k}": float(-np.log2(p).mean()) if len(listed) else 0.0,
    }


def activity_segments(seen: sp.csr_matrix, users: np.ndarray) -> dict[str, np.ndarray]:
    """``users`` cut into thirds by how many training interactions they have: light,
    medium and heavy (the boundaries are the tertiles over these users); users with none
    (first seen after a time cut) are the new users."""
    counts = np.diff(seen.indptr)[users]
    known = counts > 0
    low, high = np.quantile(counts[known], [1 / 3, 2 / 3]) if known.any() else (0, 0)
    segments = {
        f"light (<= {low:g})": users[known & (counts <= low)],
        f"medium ({low:g}-{high:g}]": users[(counts > low) & (counts <= high)],
        f"heavy (> {high:g})": users[counts > high],
    }
    if not known.all():
        segments["new (no history)"] = users[~known]
    return segments
