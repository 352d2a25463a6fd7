"""Interactions as a sparse user x item matrix, and the splits of offline evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mlsd.errors import DataError

TRAIN, VALID, TEST = 0, 1, 2


@dataclass(frozen=True)
class Interactions:
    """Who interacted with what: ``users`` and ``items`` are the ids behind the matrix's rows
    and columns; ``user_codes`` and ``item_codes`` the row and column of each input row."""

    users: pd.Index
    items: pd.Index
    user_codes: np.ndarray
    item_codes: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, user: str, item: str) -> Interactions:
        """Index the ``user`` and ``item`` columns of ``frame`` (ids in order of appearance)."""
        for column in (user, item):
            if column not in frame.columns:
                raise DataError(
                    f"the interactions have no column {column!r}",
                    hint=f"name one of: {', '.join(map(str, frame.columns[:20]))}",
                )
            if frame[column].isna().any():
                raise DataError(
                    f"{int(frame[column].isna().sum())} interactions have no {column!r}",
                    hint="drop them, or fill the id",
                )
        user_codes, users = pd.factorize(frame[user])
        item_codes, items = pd.factorize(frame[item])
        return cls(pd.Index(users), pd.Index(items), user_codes, item_codes)

    @property
    def shape(self) -> tuple[int, int]:
        """(users, items)."""
        return len(self.users), len(self.items)

    def matrix(self, rows: np.ndarray | None = None) -> sp.csr_matrix:
        """The 0/1 user x item matrix of the input rows ``rows`` (a boolean mask or indices;
        default all): a pair seen several times counts once."""
        u, i = self.user_codes, self.item_codes
        if rows is not None:
            u, i = u[rows], i[rows]
        m = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=self.shape)
        m.sum_duplicates()
        m.data[:] = 1.0
        return m


def latest(
    interactions: Interactions, times: np.ndarray, rows: np.ndarray | None = None
) -> sp.csr_matrix:
    """A user x item matrix holding, for each pair of the input rows ``rows`` (default
    all), the time of its latest interaction (``times`` as numbers, one per input row)."""
    u, i, t = interactions.user_codes, interactions.item_codes, np.asarray(times, np.float64)
    if rows is not None:
        u, i, t = u[rows], i[rows], t[rows]
    order = np.lexsort((t, i, u))
    u, i, t = u[order], i[order], t[order]
    last = np.r_[(u[1:] != u[:-1]) | (i[1:] != i[:-1]), True] if len(u) else np.zeros(0, bool)
    return sp.csr_matrix((t[last], (u[last], i[last])), shape=interactions.shape)


def split_per_user(
    user_codes: np.ndarray,
    shares: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """TRAIN, VALID or TEST for each row: each user's rows shuffled (seeded) and cut by
    ``shares``, the way published MovieLens results split (RecBole's ``RO`` ordering with a
    per-user ratio split); with ``times``, each user's rows in time order instead, so their
    last ones are held out (ties shuffled). Valid and test take ``int(share * n)`` rows
    each, at least one while the user keeps two rows for training; the rest is training."""
    if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-9:
        raise DataError(f"split shares must be three numbers >= 0 summing to 1, not {shares}")
    rng = np.random.default_rng(seed)
    noise = rng.random(len(user_codes))
    keys = (noise, user_codes) if times is None else (noise, times, user_codes)
    order = np.lexsort(keys)  # within each user: shuffled, or by time
    codes = user_codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    counts = np.diff(np.r_[starts, len(codes)])
    labels = np.empty(len(codes), dtype=np.int8)
    for start, n in zip(starts, counts, strict=True):
        valid, test = int(shares[1] * n), int(shares[2] * n)
        if shares[2] and not test and n - valid >= 3:
            test = 1
        if shares[1] and not valid and n - test >= 3:
            valid = 1
        labels[start : start + n - valid - test] = TRAIN
        labels[start + n - valid - test : start + n - test] = VALID
        labels[start + n - test : start + n] = TEST
    out = np.empty_like(labels)
    out[order] = labels
    return out
