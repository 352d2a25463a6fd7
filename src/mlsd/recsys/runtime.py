"""Recommending from fitted arrays with numpy alone (and LightGBM's C library for the
ranker): what ``/v1/recommend`` and ``mlsd recommend`` run, with no scipy, pandas or
scikit-learn on the path.

A generator reaches the runtime in one of three *forms* (:attr:`Generator.form`):
``counts`` (the same score for everyone), ``item_item`` (a user's score of an item sums
the weights from the items they have to it) and ``factors`` (the dot product of user and
item factors). :func:`candidate_features` and :func:`order_lists` are the funnel's
proposal features and final ordering, one definition used by training
(:mod:`mlsd.recsys.funnel`) and by the runtime alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlsd.recsys.retrieval import top_columns

FUNNEL = "funnel"
COLD_START = "popularity"  # what a user without history is recommended, said in the answer


class Counts:
    """One score per item, the same for every user (popularity)."""

    form = "counts"

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, dtype=np.float32)

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(rows), len(self.counts))).copy()


class ItemItem:
    """A user's score of item j: the sum of ``weights[i, j]`` over the items i they have."""

    form = "item_item"

    def __init__(self, weights: np.ndarray):
        self.weights = np.asarray(weights, dtype=np.float32)

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(rows), self.weights.shape[1]), dtype=np.float32)
        for r, items in enumerate(histories):
            if len(items):
                out[r] = self.weights[items].sum(axis=0)
        return out


class Factors:
    """The dot product of the user's factors and every item's (0 for an unknown user)."""

    form = "factors"

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray):
        self.user_factors = np.asarray(user_factors, dtype=np.float32)
        self.item_factors = np.asarray(item_factors, dtype=np.float32)

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        known = np.where(rows >= 0, rows, 0)
        out = self.user_factors[known] @ self.item_factors.T
        out[rows < 0] = 0.0
        return out


FORMS = {c.form: c for c in (Counts, ItemItem, Factors)}


def scorer(form: str, arrays: dict[str, np.ndarray]) -> Counts | ItemItem | Factors:
    """The runtime scorer of a generator's ``form`` from its arrays."""
    return FORMS[form](**arrays)


# --- the funnel's proposals and ordering ---------------------------------------------------


def feature_names(generators: Sequence[str]) -> list[str]:
    """The ranker's features, in order."""
    names = [f"{g}_{what}" for g in generators for what in ("score", "rank")]
    return [*names, "proposed_by", "item_popularity", "user_history"]


def candidate_features(
    scores: Sequence[np.ndarray], n: int, popularity: np.ndarray, history: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each generator's top ``n`` items per user, united: (rows, items, features).

    ``scores`` holds one (users, items) array per generator with what may not be proposed
    already at -inf; ``popularity`` is each item's percentile and ``history`` each of these
    users' history-length percentile. A generator's score is divided by its best score for
    the user (so users are comparable), its rank is ``n`` where it did not propose the item.
    """
    ranks, shares = [], []
    for s in scores:
        top = top_columns(s, n)
        rank = np.full(s.shape, n, dtype=np.float32)
        np.put_along_axis(rank, top, np.arange(top.shape[1], dtype=np.float32)[None, :], axis=1)
        rank[~np.isfinite(s)] = n  # fewer than n items could be proposed
        best = np.take_along_axis(s, top[:, :1], axis=1)
        best = np.where(np.isfinite(best) & (np.abs(best) > 0), np.abs(best), 1.0)
        shares.append(np.where(np.isfinite(s), s, 0.0) / best)
        ranks.append(rank)
    proposed = np.sum([r < n for r in ranks], axis=0)
    r, i = np.nonzero(proposed)
    columns = []
    for share, rank in zip(shares, ranks, strict=True):
        columns += [share[r, i], rank[r, i]]
    columns += [proposed[r, i].astype(np.float32), popularity[i], history[r]]
    features = np.column_stack(columns).astype(np.float32) if len(r) else np.zeros((0, 0))
    return r, i, features.reshape(len(r), 2 * len(scores) + 3)


def order_lists(
    rows: np.ndarray,
    items: np.ndarray,
    score: np.ndarray,
    best_rank: np.ndarray,
    n_users: int,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's ``k`` best proposals by ``score``: (items, scores, positions in the
    input), each (n_users, k), -1 / nan where a user has fewer. Trees give equal scores to
    many proposals: the best rank any generator gave breaks those ties (left to column
    order, they would scramble the top of the list)."""
    order = np.lexsort((best_rank, -score, rows))
    rows_sorted = rows[order]
    starts = np.searchsorted(rows_sorted, np.arange(n_users))
    ends = np.searchsorted(rows_sorted, np.arange(n_users), side="right")
    out = np.full((n_users, k), -1, dtype=np.int64)
    values = np.full((n_users, k), np.nan, dtype=np.float64)
    where = np.full((n_users, k), -1, dtype=np.int64)
    for u, (a, b) in enumerate(zip(starts, ends, strict=True)):
        chosen = order[a : min(b, a + k)]
        out[u, : len(chosen)] = items[chosen]
        values[u, : len(chosen)] = score[chosen]
        where[u, : len(chosen)] = chosen
    return out, values, where


# --- the recommender -------------------------------------------------------------------------


@dataclass
class Recommender:
    """Everything a package holds, ready to recommend.

    ``chosen`` is ``"funnel"`` (the generators' proposals ordered by ``ranker``) or the name
    of the one generator the gate kept. ``indptr``/``indices`` are every known user's items
    (CSR rows in ``users`` order); ``allowed`` marks the items the business rules let through.
    """

    users: list
    items: list
    indptr: np.ndarray
    indices: np.ndarray
    generators: dict[str, Any]
    chosen: str
    k: int
    candidates: int
    popularity: np.ndarray  # item percentiles (a ranker feature)
    history: np.ndarray  # user history-length percentiles (a ranker feature)
    fallback: Counts  # cold start: popularity
    ranker: Any = None  # mlsd.models.lgbm_runtime.Booster, or lightgbm.Booster in training
    allowed: np.ndarray | None = None
    exclude_seen: bool = True
    diversity: float = 0.0  # MMR's weight on dissimilarity to the items already listed
    exploration: float = 0.0  # online: each slot's chance of going to an unlisted candidate
    embeddings: np.ndarray | None = None  # L2-normalised item vectors (for MMR's similarity)
    user_index: dict = field(init=False, repr=False)
    item_index: dict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.user_index = {u: r for r, u in enumerate(self.users)}
        self.item_index = {i: c for c, i in enumerate(self.items)}

    def history_of(self, row: int) -> np.ndarray:
        """The item columns of known user ``row``."""
        return self.indices[self.indptr[row] : self.indptr[row + 1]]

    def recommend(
        self,
        users: Sequence[Any],
        k: int | None = None,
        exclude: Sequence[Sequence[Any]] | None = None,
        include_seen: bool = False,
        explore: np.random.Generator | None = None,
    ) -> list[dict[str, Any]]:
        """One answer per user id: ``{"user", "items": [{"item", "score", "stage"}],
        "cold_start"}``. ``exclude`` holds, per user, item ids never to recommend;
        ``include_seen`` lets items the user already has through. With ``explore`` (a random
        generator: online answers only, so offline lists and replays stay exact), each slot
        goes with probability ``exploration`` to a candidate from beyond the list (stage
        ``exploration``)."""
        k = int(k or self.k)
        wanted = k
        if self.diversity > 0 or (explore is not None and self.exploration > 0):
            k = max(4 * wanted, wanted + 20)  # a pool to choose from
        rows = np.array([self.user_index.get(u, -1) for u in users], dtype=np.int64)
        histories = [self.history_of(r) if r >= 0 else np.empty(0, np.int64) for r in rows]
        masks = self._masks(histories, exclude, include_seen)
        cold = np.array([len(h) == 0 for h in histories])
        answers: list[dict[str, Any]] = [{} for _ in users]
        if cold.any():
            self._answer(answers, np.flatnonzero(cold), COLD_START, rows, histories, masks, k)
        warm = np.flatnonzero(~cold)
        if len(warm):
            self._answer(answers, warm, self.chosen, rows, histories, masks, k)
        for answer, user, is_cold in zip(answers, users, cold, strict=True):
            if k != wanted:
                answer["items"] = self._diversify(answer["items"], wanted, explore)
            answer["user"] = user
            answer["cold_start"] = bool(is_cold)
        return answers

    def _diversify(
        self, pool: list[dict[str, Any]], k: int, explore: np.random.Generator | None
    ) -> list[dict[str, Any]]:
        """The first ``k`` of ``pool`` (best first) picked by maximal marginal relevance,
        then each slot given to an unlisted pool item with probability ``exploration``."""
        if self.diversity > 0 and self.embeddings is not None and len(pool) > k:
            columns = np.array([self.item_index[i["item"]] for i in pool])
            vectors = self.embeddings[columns]
            scores = np.array([i["score"] for i in pool], dtype=np.float64)
            span = scores.max() - scores.min()
            relevance = (scores - scores.min()) / span if span > 0 else np.ones(len(pool))
            chosen = [0]
            closest = vectors @ vectors[0]  # each candidate's highest similarity to the list
            for _ in range(1, min(k, len(pool))):
                mmr = (1 - self.diversity) * relevance - self.diversity * closest
                mmr[chosen] = -np.inf
                best = int(np.argmax(mmr))
                chosen.append(best)
                closest = np.maximum(closest, vectors @ vectors[best])
            listed, rest = (
                [pool[c] for c in chosen],
                [p for c, p in enumerate(pool) if c not in chosen],
            )
        else:
            listed, rest = pool[:k], pool[k:]
        if explore is not None and self.exploration > 0 and rest:
            for slot in np.flatnonzero(explore.random(len(listed)) < self.exploration):
                if not rest:
                    break
                pick = rest.pop(int(explore.integers(len(rest))))
                listed[slot] = {**pick, "stage": "exploration"}
        return listed

    def _masks(
        self,
        histories: list[np.ndarray],
        exclude: Sequence[Sequence[Any]] | None,
        include_seen: bool,
    ) -> list[np.ndarray]:
        """Per user, the item columns that may not be recommended."""
        banned = np.flatnonzero(~self.allowed) if self.allowed is not None else None
        out = []
        for u, history in enumerate(histories):
            parts = [] if include_seen or not self.exclude_seen else [history]
            if exclude is not None and exclude[u]:
                known = [self.item_index[i] for i in exclude[u] if i in self.item_index]
                parts.append(np.asarray(known, dtype=np.int64))
            if banned is not None:
                parts.append(banned)
            out.append(np.concatenate(parts) if parts else np.empty(0, np.int64))
        return out

    def _scores(
        self, name: str, rows: np.ndarray, histories: list[np.ndarray], masks: list[np.ndarray]
    ) -> np.ndarray:
        generator = self.fallback if name == COLD_START else self.generators[name]
        s = generator.score(rows, histories)
        for r, banned in enumerate(masks):
            s[r, banned] = -np.inf
        return s

    def _answer(self, answers, which, how, rows, histories, masks, k) -> None:
        rows, histories = rows[which], [histories[w] for w in which]
        masks = [masks[w] for w in which]
        if how != FUNNEL:
            s = self._scores(how, rows, histories, masks)
            top = top_columns(s, k)
            values = np.take_along_axis(s, top, axis=1)
            for j, w in enumerate(which):
                ok = np.isfinite(values[j])
                answers[w]["items"] = [
                    {"item": self.items[c], "score": float(v), "stage": how}
                    for c, v in zip(top[j][ok], values[j][ok], strict=True)
                ]
            return
        names = list(self.generators)
        scores = [self._scores(g, rows, histories, masks) for g in names]
        r, i, features = candidate_features(
            scores, self.candidates, self.popularity, self.history[rows]
        )
        ranked = self.ranker.predict(features) if len(r) else np.zeros(0)
        ranks = features[:, 1 : 2 * len(names) : 2]
        best_rank = ranks.min(axis=1) if len(r) else np.zeros(0)
        top, values, where = order_lists(r, i, np.asarray(ranked), best_rank, len(rows), k)
        for j, w in enumerate(which):
            keep = top[j] >= 0
            stages = [names[int(np.argmin(ranks[p]))] for p in where[j][keep]]
            answers[w]["items"] = [
                {"item": self.items[c], "score": float(v), "stage": st}
                for c, v, st in zip(top[j][keep], values[j][keep], stages, strict=True)
            ]
