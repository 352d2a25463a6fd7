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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from mlsd.recsys.retrieval import top_columns

FUNNEL = "funnel"
COLD_START = "popularity"  # what a user without history is recommended, said in the answer


class Proposals(NamedTuple):
    """A generator's ``n`` best allowed items per user of a batch (``top``, -1 past the
    last; ``scores``, -inf there) and ``at(r, i)``, its score of any (batch row, item)."""

    top: np.ndarray
    scores: np.ndarray
    at: Callable[[np.ndarray, np.ndarray], np.ndarray]


def proposals_of(scores: np.ndarray, n: int) -> Proposals:
    """The proposals of a full (users, items) score array whose banned items are -inf."""
    top = top_columns(scores, n)
    values = np.take_along_axis(scores, top, axis=1)
    top = np.where(np.isfinite(values), top, -1)
    return Proposals(top, values, lambda r, i: scores[r, i])


def _allowed_first(order: np.ndarray, banned: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` of ``order`` that are not ``banned``."""
    head = order[: n + len(banned)]
    return head[~np.isin(head, banned)][:n] if len(banned) else head[:n]


class Counts:
    """One score per item, the same for every user (popularity)."""

    form = "counts"

    def __init__(self, counts: np.ndarray):
        self.counts = np.asarray(counts, dtype=np.float32)
        # best first, ties by column: what top_columns gives
        self._order = np.lexsort((np.arange(len(self.counts)), -self.counts))

    def arrays(self) -> dict[str, np.ndarray]:
        """What a package stores of it."""
        return {"counts": self.counts}

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(rows), len(self.counts))).copy()

    def propose(self, rows, histories, masks, n: int) -> Proposals:
        """The most popular allowed items, from the order kept since loading: no pass over
        the catalogue per request."""
        n = min(n, len(self.counts))
        top = np.full((len(rows), n), -1, dtype=np.int64)
        for r, banned in enumerate(masks):
            first = _allowed_first(self._order, banned, n)
            top[r, : len(first)] = first
        scores = np.where(top >= 0, self.counts[top], -np.inf).astype(np.float32)
        return Proposals(top, scores, lambda r, i: self.counts[i])


class ItemItem:
    """A user's score of item j: the sum of ``weights[i, j]`` over the items i they have."""

    form = "item_item"

    def __init__(self, weights: np.ndarray):
        self.weights = np.asarray(weights, dtype=np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """What a package stores of it."""
        return {"weights": self.weights}

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.zeros((len(rows), self.weights.shape[1]), dtype=np.float32)
        for r, items in enumerate(histories):
            if len(items):
                out[r] = self.weights[items].sum(axis=0)
        return out


class Factors:
    """The dot product of the user's factors and every item's (0 for an unknown user).
    With an ``index`` (:mod:`mlsd.recsys.retrieval`), proposals come from a nearest-neighbour
    search of the user's factors instead of scoring the whole catalogue."""

    form = "factors"

    def __init__(self, user_factors: np.ndarray, item_factors: np.ndarray, index: Any = None):
        self.user_factors = np.asarray(user_factors, dtype=np.float32)
        self.item_factors = np.asarray(item_factors, dtype=np.float32)
        self.index = index

    def arrays(self) -> dict[str, np.ndarray]:
        """What a package stores of it as arrays (an index goes in its own format)."""
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def score(self, rows: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        known = np.where(rows >= 0, rows, 0)
        out = self.user_factors[known] @ self.item_factors.T
        out[rows < 0] = 0.0
        return out

    def at(self, rows: np.ndarray, r: np.ndarray, i: np.ndarray) -> np.ndarray:
        """The score of item ``i`` for batch row ``r`` of users ``rows``."""
        users = rows[r]
        out = np.einsum("ij,ij->i", self.user_factors[np.maximum(users, 0)], self.item_factors[i])
        return np.where(users >= 0, out, 0.0).astype(np.float32)

    def propose(self, rows, histories, masks, n: int) -> Proposals:
        if self.index is None:  # exact: score every item
            s = self.score(rows, histories)
            for r, banned in enumerate(masks):
                s[r, banned] = -np.inf
            return proposals_of(s, n)
        extra = max((len(m) for m in masks), default=0)
        found, _ = self.index.search(self.user_factors[np.maximum(rows, 0)], n + extra)
        top = np.full((len(rows), n), -1, dtype=np.int64)
        for r, banned in enumerate(masks):
            ids = found[r][found[r] >= 0]
            first = _allowed_first(ids, banned, n)
            top[r, : len(first)] = first
        r, c = np.nonzero(top >= 0)
        scores = np.full(top.shape, -np.inf, dtype=np.float32)
        scores[r, c] = self.at(rows, r, top[r, c])
        # the index orders by its own (approximate) scores: order by the exact ones
        order = np.argsort(-scores, axis=1, kind="stable")
        top, scores = np.take_along_axis(top, order, 1), np.take_along_axis(scores, order, 1)
        return Proposals(top, scores, lambda r, i: self.at(rows, r, i))


FORMS = {c.form: c for c in (Counts, ItemItem, Factors)}


def scorer(form: str, arrays: dict[str, Any]) -> Counts | ItemItem | Factors:
    """The runtime scorer of a generator's ``form`` from its arrays."""
    return FORMS[form](**arrays)


def propose(scorer, rows, histories, masks, n: int) -> Proposals:
    """``scorer``'s proposals for a batch: its own way when it has one (popularity's kept
    order, an index), else from the full score array with each user's ``masks`` at -inf."""
    if hasattr(scorer, "propose"):
        return scorer.propose(rows, histories, masks, n)
    s = scorer.score(rows, histories)
    for r, banned in enumerate(masks):
        s[r, banned] = -np.inf
    return proposals_of(s, n)


# --- the funnel's proposals and ordering ---------------------------------------------------


def feature_names(generators: Sequence[str], side: Side | None = None) -> list[str]:
    """The ranker's features, in order."""
    names = [f"{g}_{what}" for g in generators for what in ("score", "rank")]
    return [*names, "proposed_by", "item_popularity", "user_history", *(side.names if side else [])]


@dataclass
class Side:
    """What the item and user tables say, as numbers per item and per user (NaN where a
    table is silent): ``items`` (items, p) and ``users`` (users, q), named ``item_names``
    and ``user_names``. For a proposal they give the item's values, the user's, and each
    item value minus its mean over the user's history (how far the item is from what the
    user takes: a cross feature)."""

    items: np.ndarray
    users: np.ndarray
    item_names: list[str]
    user_names: list[str]

    @property
    def names(self) -> list[str]:
        """The ranker's side features, in order."""
        return [
            *(f"item_{n}" for n in self.item_names),
            *(f"user_{n}" for n in self.user_names),
            *(f"{n}_vs_history" for n in self.item_names),
        ]

    def features(
        self, rows: np.ndarray, histories: Sequence[np.ndarray], r: np.ndarray, i: np.ndarray
    ) -> np.ndarray:
        """The side features of proposals (batch row ``r``, item ``i``) for users ``rows``
        (-1: unknown) with ``histories``."""
        profile = np.full((len(rows), self.items.shape[1]), np.nan, dtype=np.float32)
        for u, items in enumerate(histories):
            if len(items):
                profile[u] = np.nanmean(self.items[items], axis=0)
        known = rows[r] >= 0
        users = np.where(known[:, None], self.users[np.maximum(rows[r], 0)], np.nan)
        return np.column_stack([self.items[i], users, self.items[i] - profile[r]]).astype(
            np.float32
        )


def candidate_features(
    proposed: Sequence[Proposals],
    n: int,
    popularity: np.ndarray,
    history: np.ndarray,
    side: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each generator's proposals per user, united: (rows, items, features), sorted by row
    then item.

    ``popularity`` is each item's percentile and ``history`` each of these users'
    history-length percentile. A generator's score is divided by its best score for the
    user (so users are comparable), its rank is ``n`` where it did not propose the item.
    ``side(r, i)`` adds the side features of those proposals (:class:`Side`).
    """
    size = len(popularity)
    keys, places = [], []
    for p in proposed:
        r, c = np.nonzero(p.top >= 0)
        keys.append(r.astype(np.int64) * size + p.top[r, c])
        places.append(c)
    union = np.unique(np.concatenate(keys)) if keys else np.empty(0, np.int64)
    r, i = union // size, union % size
    columns, count = [], np.zeros(len(union), dtype=np.float32)
    for p, key, place in zip(proposed, keys, places, strict=True):
        order = np.argsort(key)
        at = np.searchsorted(key[order], union)
        found = at < len(key)
        found[found] = key[order][at[found]] == union[found]
        rank = np.full(len(union), n, dtype=np.float32)
        rank[found] = place[order][at[found]]
        best = p.scores[:, 0] if p.scores.shape[1] else np.ones(len(history))
        best = np.where(np.isfinite(best) & (np.abs(best) > 0), np.abs(best), 1.0)
        score = p.at(r, i) if len(r) else np.zeros(0, np.float32)
        columns += [np.where(np.isfinite(score), score, 0.0) / best[r], rank]
        count += found
    columns += [count, popularity[i], history[r]]
    features = np.column_stack(columns).astype(np.float32).reshape(len(r), len(columns))
    if side is not None:
        features = np.hstack([features, side(r, i)]) if len(r) else features
    return r, i, features


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
    side: Side | None = None  # the item and user tables' features of the ranker
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

    def _proposals(self, name, rows, histories, masks, n) -> Proposals:
        generator = self.fallback if name == COLD_START else self.generators[name]
        return propose(generator, rows, histories, masks, n)

    def _ranked(self, rows, histories, masks):
        """The funnel's candidates for users ``rows``: each generator's proposals, their
        union as (batch rows ``r``, items ``i``), the ranker's score of each and the rank
        each generator gave it (``candidates`` where it did not propose it)."""
        names = list(self.generators)
        proposed = [self._proposals(g, rows, histories, masks, self.candidates) for g in names]
        side = None
        if self.side is not None:
            side = partial(self.side.features, rows, histories)
        r, i, features = candidate_features(
            proposed, self.candidates, self.popularity, self.history[rows], side
        )
        ranked = np.asarray(self.ranker.predict(features)) if len(r) else np.zeros(0)
        return proposed, r, i, ranked, features[:, 1 : 2 * len(names) : 2]

    def explain(self, user: Any, k: int | None = None) -> dict[str, Any]:
        """How ``user``'s list is made: ``{"user", "known", "cold_start", "stage",
        "history": [item], "generators": {name: [{"item", "score", "rank"}]},
        "ranker": [{"item", "score", "ranks": {generator: rank}, "listed"}] (best first;
        None unless the funnel answers), "final": recommend([user], k)'s items}``; ranks
        start at 1. A user without history is a cold start: the fallback (``popularity``)
        is the only generator."""
        final = self.recommend([user], k)[0]
        row = self.user_index.get(user, -1)
        rows = np.array([row], dtype=np.int64)
        histories = [self.history_of(row) if row >= 0 else np.empty(0, np.int64)]
        masks = self._masks(histories, None, False)
        stage = COLD_START if final["cold_start"] else self.chosen
        listed = {i["item"] for i in final["items"]}
        ranker = None
        if stage == FUNNEL:
            names = list(self.generators)
            proposed, _, i, ranked, ranks = self._ranked(rows, histories, masks)
            ranker = []
            for p in np.lexsort((ranks.min(axis=1), -ranked)):  # order_lists' order
                item = self.items[i[p]]
                by = zip(names, ranks[p].astype(int), strict=True)
                ranker.append(
                    {
                        "item": item,
                        "score": float(ranked[p]),
                        "ranks": {g: rank + 1 for g, rank in by if rank < self.candidates},
                        "listed": item in listed,
                    }
                )
        else:
            names = [stage]
            proposed = [self._proposals(stage, rows, histories, masks, self.candidates)]
        return {
            "user": user,
            "known": row >= 0,
            "cold_start": final["cold_start"],
            "stage": stage,
            "history": [self.items[c] for c in histories[0]],
            "generators": {
                name: [
                    {"item": self.items[c], "score": float(s), "rank": rank}
                    for rank, (c, s) in enumerate(zip(p.top[0], p.scores[0], strict=True), 1)
                    if c >= 0
                ]
                for name, p in zip(names, proposed, strict=True)
            },
            "ranker": ranker,
            "final": final["items"],
        }

    def _answer(self, answers, which, how, rows, histories, masks, k) -> None:
        rows, histories = rows[which], [histories[w] for w in which]
        masks = [masks[w] for w in which]
        if how != FUNNEL:
            top, values, _ = self._proposals(how, rows, histories, masks, k)
            for j, w in enumerate(which):
                ok = top[j] >= 0
                answers[w]["items"] = [
                    {"item": self.items[c], "score": float(v), "stage": how}
                    for c, v in zip(top[j][ok], values[j][ok], strict=True)
                ]
            return
        names = list(self.generators)
        _, r, i, ranked, ranks = self._ranked(rows, histories, masks)
        best_rank = ranks.min(axis=1) if len(r) else np.zeros(0)
        top, values, where = order_lists(r, i, ranked, best_rank, len(rows), k)
        for j, w in enumerate(which):
            keep = top[j] >= 0
            stages = [names[int(np.argmin(ranks[p]))] for p in where[j][keep]]
            answers[w]["items"] = [
                {"item": self.items[c], "score": float(v), "stage": st}
                for c, v, st in zip(top[j][keep], values[j][keep], stages, strict=True)
            ]
