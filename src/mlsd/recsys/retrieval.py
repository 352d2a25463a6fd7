"""Nearest-neighbour retrieval of item vectors by inner product (a user's factors against
every item's): exact with numpy, or approximate with a faiss inverted-file index whose
recall against exact search is measured when it is built, never assumed.

:func:`build_index` picks exact search up to ``EXACT_MAX`` items and an
:class:`IVFIndex` above; :class:`IVFIndex` raises ``nprobe`` (the clusters scanned per query)
until held-out queries find ``target_recall`` of their exact top ``k``, and keeps that
figure in ``recall``. faiss is an optional extra (``pip install 'mlsd[ann]'``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import MlsdError

EXACT_MAX = 200_000  # items searched exactly: one matrix product per batch of queries
BATCH = 1024  # queries per exact matrix product


class RetrievalError(MlsdError):
    """An index cannot be built or loaded."""

    headline = "retrieval index"


class ExactIndex:
    """Every item scored: the reference an approximate index is measured against."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), each (len(queries), k), best first."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, len(self.vectors))
        ids = np.empty((len(queries), k), dtype=np.int64)
        scores = np.empty((len(queries), k), dtype=np.float32)
        for start in range(0, len(queries), BATCH):
            s = queries[start : start + BATCH] @ self.vectors.T
            top = top_columns(s, k)
            ids[start : start + len(s)] = top
            scores[start : start + len(s)] = np.take_along_axis(s, top, axis=1)
        return ids, scores

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "items": len(self), "recall": 1.0}


class IVFIndex:
    """faiss ``IndexIVFFlat`` by inner product: k-means cells, ``nprobe`` of them scanned
    per query, calibrated to a measured recall."""

    kind = "ivf"

    def __init__(self, index: Any, recall: float | None = None, k: int | None = None):
        self.index, self.recall, self.k = index, recall, k

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        target_recall: float = 0.95,
        k: int = 100,
        calibration_queries: np.ndarray | None = None,
        seed: int = 0,
        threads: int | None = None,
    ) -> IVFIndex:
        """Train the cells on ``vectors`` and add them; then find the smallest ``nprobe`` at
        which the calibration queries (default: 200 of the vectors themselves, perturbed) find
        ``target_recall`` of their exact top ``k`` (at worst every cell is scanned: exact
        search, slowly; ``describe()`` then shows nprobe equal to the cells)."""
        faiss = _faiss()
        if threads:
            faiss.omp_set_num_threads(int(threads))
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = x.shape
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants 39 points per cell
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[rng.choice(n, size=min(n, 64 * nlist), replace=False)]  # enough for k-means
        index.cp.seed = seed
        index.train(sample)
        index.add(x)
        queries = calibration_queries
        if queries is None:
            base = x[rng.choice(n, size=min(n, 200), replace=False)]
            queries = base + rng.normal(scale=x.std(), size=base.shape).astype(np.float32)
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, n)
        truth, _ = ExactIndex(x).search(queries, k)

        def recall_at(nprobe: int) -> float:
            index.nprobe = nprobe
            _, found = index.search(queries, k)  # faiss answers (scores, ids)
            return _recall(found, truth)

        # double nprobe until the target is met, then bisect down to the fewest cells
        low, high = 0, 1
        recall = recall_at(high)
        while recall < target_recall and high < nlist:
            low, high = high, min(nlist, high * 2)
            recall = recall_at(high)
        while high - low > 1:
            middle = (low + high) // 2
            found = recall_at(middle)
            if found >= target_recall:
                high, recall = middle, found
            else:
                low = middle
        index.nprobe = high
        return cls(index, recall, k)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, scores), each (len(queries), k), best first; -1 where fewer were found."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        scores, ids = self.index.search(queries, min(k, len(self)))
        return ids.astype(np.int64), scores

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "items": len(self),
            "cells": int(self.index.nlist),
            "nprobe": int(self.index.nprobe),
            "recall": self.recall,
            "recall_at": self.k,
        }

    def save(self, path: Path) -> None:
        """Write the index in faiss's own format (nprobe and the measured recall are the
        caller's to keep, e.g. in a manifest)."""
        _faiss().write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, nprobe: int, recall: float | None, k: int | None) -> IVFIndex:
        """Read an index written by :meth:`save`."""
        index = _faiss().read_index(str(path))
        index.nprobe = int(nprobe)
        return cls(index, recall, k)


def top_columns(scores: np.ndarray, n: int) -> np.ndarray:
    """The columns of each row's ``n`` highest scores, highest first, equal scores by
    column (every column, when there are fewer than ``n``)."""
    n = min(n, scores.shape[1])
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    values = np.take_along_axis(scores, top, axis=1)
    # argpartition picks any of the items tied at the n-th score: where the tie reaches past
    # the cut, the row is sorted whole so the lower columns are the ones kept
    kth = values.min(axis=1, keepdims=True)
    cut = np.flatnonzero((scores == kth).sum(axis=1) > (values == kth).sum(axis=1))
    for row in cut:
        top[row] = np.lexsort((np.arange(scores.shape[1]), -scores[row]))[:n]
    values = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -values), axis=1)  # equal scores: the lower column first
    return np.take_along_axis(top, order, axis=1)


def build_index(vectors: np.ndarray, **ivf: Any) -> ExactIndex | IVFIndex:
    """Exact search up to ``EXACT_MAX`` items, else an :class:`IVFIndex` (``ivf``: its
    :meth:`IVFIndex.build` options)."""
    if len(vectors) <= EXACT_MAX:
        return ExactIndex(vectors)
    return IVFIndex.build(vectors, **ivf)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top k that ``found`` holds."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:  # an optional extra
        raise RetrievalError(
            "approximate search needs faiss",
            hint="pip install 'mlsd[ann]' (faiss-cpu), or keep the catalogue under "
            f"{EXACT_MAX:,} items for exact search",
        ) from exc
    return faiss
