"""The runtime :class:`~mlsd.recsys.runtime.Recommender` assembled from fitted generators
(and the ranker): what a package stores and ``mlsd train`` scores as served.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from mlsd.recsys.funnel import percentile
from mlsd.recsys.generators import Generator
from mlsd.recsys.interactions import Interactions
from mlsd.recsys.retrieval import EXACT_MAX
from mlsd.recsys.runtime import Counts, Recommender, Side, scorer


def assemble(
    interactions: Interactions,
    matrix: sp.csr_matrix,
    fitted: dict[str, Generator],
    chosen: str,
    ranker: Any = None,
    *,
    k: int = 10,
    candidates: int = 100,
    allowed: np.ndarray | None = None,
    exclude_seen: bool = True,
    diversity: float = 0.0,
    exploration: float = 0.0,
    ann_above: int = EXACT_MAX,
    seed: int = 0,
    side: Side | None = None,
) -> Recommender:
    """The runtime :class:`Recommender` of generators ``fitted`` on ``matrix`` (every
    interaction of ``interactions``), with ``ranker`` when ``chosen`` is the funnel; with
    ``diversity``, item vectors for MMR (:func:`item_embeddings`). A factor generator over
    more than ``ann_above`` items proposes through a faiss IVF index, calibrated to find 95%
    of its exact proposals at the depth they are read (``candidates`` past a p90 history)."""
    counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
    generators = {n: scorer(g.form, g.arrays()) for n, g in fitted.items()}
    for generator in generators.values():
        if generator.form == "factors" and matrix.shape[1] > ann_above:
            from mlsd.recsys.retrieval import IVFIndex

            depth = candidates + int(np.percentile(np.diff(matrix.indptr), 90))
            rng = np.random.default_rng(seed)
            sample = rng.choice(matrix.shape[0], size=min(matrix.shape[0], 300), replace=False)
            generator.index = IVFIndex.build(
                generator.item_factors,
                target_recall=0.95,
                k=depth,
                calibration_queries=generator.user_factors[sample],
                seed=seed,
            )
    return Recommender(
        users=interactions.users.tolist(),
        items=interactions.items.tolist(),
        indptr=matrix.indptr.astype(np.int64),
        indices=matrix.indices.astype(np.int64),
        generators=generators,
        chosen=chosen,
        k=k,
        candidates=candidates,
        popularity=percentile(counts),
        history=percentile(np.diff(matrix.indptr)),
        fallback=Counts(counts),
        ranker=ranker,
        allowed=allowed,
        exclude_seen=exclude_seen,
        diversity=diversity,
        exploration=exploration,
        embeddings=item_embeddings(matrix) if diversity > 0 else None,
        side=side,
    )


def item_embeddings(matrix: sp.csr_matrix, dimensions: int = 32, seed: int = 0) -> np.ndarray:
    """Each item's interaction profile (its column of users) reduced to ``dimensions`` by a
    truncated SVD and L2-normalised: the dot product of two is their cosine similarity."""
    from sklearn.utils.extmath import randomized_svd

    d = max(1, min(dimensions, min(matrix.shape) - 1))
    _, s, vt = randomized_svd(matrix.astype(np.float64), d, random_state=seed)
    vectors = (vt.T * s).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
