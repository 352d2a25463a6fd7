"""The funnel: candidate generators propose, a learnt ranker orders what they proposed.

Training follows what serving will see. Each user's training interactions are split (seeded,
per user) into a *history* and *targets*: the generators are fitted on the histories, propose
``candidates`` items each per user (history masked), and the ranker (LightGBM lambdarank,
one group per user) learns which proposals are targets from features that exist at serving
time: each generator's score (as a share of its best score for the user) and its rank of
the item (``candidates`` when it did not propose it), how many generators proposed it, the
item's popularity and the user's history length (as percentiles, which do not grow when the
generators are refitted on more), and, with item and user tables, their values and each
item value's distance from the user's history (:class:`mlsd.recsys.runtime.Side`). The
generators are then refitted on all training interactions for serving, so the ranker sees
the same kind of lists it learnt on. The ranker's trees are small (3 leaves, 150 of them):
on MovieLens, 31-leaf trees fit the history/target cut and rank worse on validation
(ndcg@10 0.253 against 0.278).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import scipy.sparse as sp

from mlsd.evaluation.metrics import get_metric
from mlsd.recsys.evaluate import BATCH, mask_seen, ranking_scores, top_items, with_cold_start
from mlsd.recsys.generators import Generator
from mlsd.recsys.interactions import TEST, TRAIN, split_per_user
from mlsd.recsys.runtime import (
    Side,
    candidate_features,
    feature_names,
    order_lists,
    proposals_of,
)

ROUNDS = 150  # lambdarank trees of 3 leaves, learning rate 0.05


@dataclass
class Candidates:
    """Per proposal (user row, item column): its features; ``rows`` index ``users``."""

    rows: np.ndarray
    items: np.ndarray
    features: np.ndarray
    names: list[str]


def propose(
    generators: dict[str, Generator],
    users: np.ndarray,
    seen: sp.csr_matrix,
    n: int,
    popularity: np.ndarray,
    side: Side | None = None,
) -> Candidates:
    """Each generator's top ``n`` unseen items per user, united, with their features
    (:func:`mlsd.recsys.runtime.candidate_features`)."""
    rows, items, features = [], [], []
    history = percentile(np.diff(seen.indptr))
    for start in range(0, len(users), BATCH):
        chunk = users[start : start + BATCH]
        mask = seen[chunk]
        proposed = []
        for g in generators.values():
            s = g.score(chunk).astype(np.float32, copy=True)
            mask_seen(s, mask)
            proposed.append(proposals_of(s, n))
        extra = None
        if side is not None:
            had = [mask.indices[mask.indptr[u] : mask.indptr[u + 1]] for u in range(len(chunk))]
            extra = partial(side.features, chunk, had)
        r, i, f = candidate_features(proposed, n, popularity, history[chunk], extra)
        rows.append(start + r)
        items.append(i)
        features.append(f)
    return Candidates(
        np.concatenate(rows),
        np.concatenate(items),
        np.concatenate(features),
        feature_names(list(generators), side),
    )


class Funnel:
    """Generators, then a lambdarank ranker over their united proposals."""

    def __init__(
        self,
        factories: dict[str, Callable[[], Generator]],
        candidates: int = 100,
        target_share: float = 0.25,
        seed: int = 0,
        side: Side | None = None,
        targets: str = "per_user",
    ):
        self.factories, self.candidates = factories, int(candidates)
        self.target_share, self.seed, self.side = float(target_share), seed, side
        self.targets = targets

    def fit(self, train: sp.csr_matrix, times: sp.csr_matrix | None = None) -> Funnel:
        """Fit the ranker on proposals from the histories, then refit the generators on
        all of ``train``. ``times`` (each pair's latest time,
        :func:`mlsd.recsys.interactions.latest`) reaches the generators and, with
        ``targets`` other than ``per_user`` (random), places the targets as the split
        places what is judged: each user's latest (``per_user_time``) or the newest of all
        (``time``), so the ranker learns to foresee what comes next."""
        import lightgbm as lgb

        x, y, rows = self._proposals(train, times)
        keep = _groups_with_a_positive(rows, y)
        dataset = lgb.Dataset(
            x[keep],
            label=y[keep],
            group=np.bincount(rows[keep])[np.unique(rows[keep])],
            feature_name=self.names,
        )
        params = {  # small trees: larger ones learn the history/target cut, not the users
            "objective": "lambdarank",
            "learning_rate": 0.05,
            "num_leaves": 3,
            "min_data_in_leaf": 100,
            "lambdarank_truncation_level": 20,
            "eval_at": [10],
            "verbose": -1,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,
        }
        self.ranker = lgb.train(params, dataset, num_boost_round=ROUNDS)
        self.generators = {n: make().fit(train, times) for n, make in self.factories.items()}
        self.popularity = percentile(np.asarray(train.sum(axis=0)).ravel())
        self.history = percentile(np.diff(train.indptr))
        return self

    def _proposals(
        self, train: sp.csr_matrix, times: sp.csr_matrix | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each user's items cut into history and targets (``targets``: at random, each
        user's latest, or the newest of all): the proposals made on the history, sorted by
        user, with their features and whether each is a target."""
        coo = train.tocoo()
        shares = (1 - self.target_share, 0.0, self.target_share)
        if self.targets == "per_user":
            labels = split_per_user(coo.row, shares, self.seed)
        else:
            when = np.asarray(times[coo.row, coo.col]).ravel()
            if self.targets == "per_user_time":
                labels = split_per_user(coo.row, shares, self.seed, times=when)
            else:  # one cut in time for everyone
                cut = np.quantile(when, 1 - self.target_share, method="higher")
                labels = np.where(when >= cut, TEST, TRAIN)

        def part(keep: np.ndarray) -> sp.csr_matrix:
            ones = np.ones(int(keep.sum()), np.float32)
            return sp.csr_matrix((ones, (coo.row[keep], coo.col[keep])), train.shape)

        history, target = part(labels != TEST), part(labels == TEST)
        generators = {n: make().fit(history, times) for n, make in self.factories.items()}
        popularity = percentile(np.asarray(history.sum(axis=0)).ravel())
        users = np.flatnonzero(np.diff(target.indptr))
        proposals = propose(generators, users, history, self.candidates, popularity, self.side)
        self.names = proposals.names
        y = np.asarray(target[users[proposals.rows], proposals.items]).ravel()
        order = np.argsort(proposals.rows, kind="stable")
        return proposals.features[order], y[order], proposals.rows[order]

    def recommend(
        self, users: np.ndarray, k: int, seen: sp.csr_matrix
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """(len(users), k) item columns, best first, nothing ``seen``; and what the stages
        passed on: the mean number of united candidates per user."""
        proposals = propose(
            self.generators, users, seen, self.candidates, self.popularity, self.side
        )
        score = self.ranker.predict(proposals.features)
        ranks = [j for j, name in enumerate(proposals.names) if name.endswith("_rank")]
        best_rank = proposals.features[:, ranks].min(axis=1)
        out, _, _ = order_lists(proposals.rows, proposals.items, score, best_rank, len(users), k)
        out = with_cold_start(out, users, seen)
        return out, {"candidates_per_user": float(len(score) / max(len(users), 1))}

    def importance(self) -> dict[str, float]:
        """The ranker's gain per feature, as shares."""
        gain = self.ranker.feature_importance("gain")
        return dict(zip(self.names, (gain / max(gain.sum(), 1e-12)).round(4).tolist(), strict=True))


def candidate_recall(
    generators: dict[str, Generator],
    users: np.ndarray,
    seen: sp.csr_matrix,
    relevant: sp.csr_matrix,
    n: int,
) -> dict[str, float]:
    """recall@``n`` of each generator's proposals and of their union (the share of each
    user's relevant items proposed, mean over users with any)."""
    pop = np.zeros(seen.shape[1], np.float32)
    proposals = propose(generators, users, seen, n, pop)
    wanted = relevant[users]
    has = np.diff(wanted.indptr) > 0
    got = np.asarray(wanted[proposals.rows, proposals.items]).ravel() > 0
    out = {}
    for name in [*generators, "union"]:
        if name == "union":
            proposed = np.ones_like(got)
        else:
            proposed = proposals.features[:, proposals.names.index(f"{name}_rank")] < n
        hits = np.bincount(proposals.rows[got & proposed], minlength=len(users))
        out[name] = float(np.mean(hits[has] / np.diff(wanted.indptr)[has]))
    return out


def percentile(counts: np.ndarray) -> np.ndarray:
    """Each count's place among all of them, in [0, 1]: unlike the count, it does not grow
    when the generators are refitted on more interactions than the ranker learnt from."""
    ranks = np.argsort(np.argsort(counts, kind="stable"), kind="stable")
    return (ranks / max(len(counts) - 1, 1)).astype(np.float32)


def _groups_with_a_positive(rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows of users with at least one positive proposal: the others teach lambdarank
    nothing."""
    positive = np.bincount(rows, weights=y, minlength=rows.max() + 1) > 0
    return positive[rows]


@dataclass
class Choice:
    """What the gate kept: ``"funnel"`` or one generator's name, the validation metric of
    every candidate, and why."""

    chosen: str
    metric: str
    valid: dict[str, float]
    reason: str


def choose(
    factories: dict[str, Callable[[], Generator]],
    train: sp.csr_matrix,
    valid: sp.csr_matrix,
    *,
    metric: str = "ndcg@10",
    candidates: int = 100,
    seed: int = 0,
    side: Side | None = None,
    times: sp.csr_matrix | None = None,
    targets: str = "per_user",
) -> Choice:
    """The honest gate: every generator alone and the funnel over all of them, fitted on
    ``train`` (with its ``times``) and judged on ``valid`` by ``metric`` (a ranking metric
    at k). The funnel is kept only when it beats the best single generator; otherwise that
    generator is."""
    k = get_metric(metric).k or 10
    users = np.flatnonzero(np.diff(valid.indptr))
    scores = {}
    for name, make in factories.items():
        top = top_items(make().fit(train, times), users, k, exclude=train)
        scores[name] = ranking_scores(top, valid, users, [metric])[metric]
    funnel = Funnel(factories, candidates=candidates, seed=seed, side=side, targets=targets).fit(
        train, times
    )
    scores["funnel"] = ranking_scores(funnel.recommend(users, k, train)[0], valid, users, [metric])[
        metric
    ]
    best = max(factories, key=lambda n: scores[n])
    if scores["funnel"] > scores[best]:
        reason = f"the funnel beats {best}, the best generator alone, on valid {metric}"
        return Choice("funnel", metric, scores, reason)
    reason = (
        f"the funnel ({scores['funnel']:.4f}) does not beat {best} alone ({scores[best]:.4f}) "
        f"on valid {metric}: {best} is kept"
    )
    return Choice(best, metric, scores, reason)
