"""Candidate generators: each fits on a 0/1 user x item matrix and scores every item for a
batch of users (higher is better). Scores of items a user already has are left as they
are: masking them is the caller's choice (:func:`mlsd.recsys.evaluate.top_items`).

- :class:`Popularity`: how many users have the item; the same list for everyone.
- :class:`Recent`: how many users had the item among the newest interactions (a
  ``window`` share of them, by time), ties broken by all-time popularity: what is in
  fashion now rather than what ever was.
- :class:`ItemKNN`: item-item cosine similarity over users, shrunk towards 0 for items
  with few users in common, each item keeping its ``neighbours`` most similar; a user's
  score of an item is the sum of its similarities to the items the user has.
- :class:`EASE`: Steck's embarrassingly shallow autoencoder, B = I - P / diag(P) with
  P = (X'X + l2 I)^-1 and a zero diagonal, in closed form (one item x item inverse: for
  catalogues up to some tens of thousands of items).
- :class:`ALS` and :class:`BPR`: matrix factorisation by the ``implicit`` library; a
  score is the dot product of the user's and the item's factors.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp


class Generator:
    """Fits on a user x item matrix; scores every item for a batch of users.

    ``grid`` is the settings tuned on validation; ``form`` and :meth:`arrays` are what a
    package stores for :mod:`mlsd.recsys.runtime` to score with (numpy only)."""

    name: ClassVar[str] = "generator"
    grid: ClassVar[dict[str, list]] = {}
    form: ClassVar[str] = ""

    def fit(self, matrix: sp.csr_matrix, times: sp.csr_matrix | None = None) -> Generator:
        """Learn from the 0/1 user x item matrix (``times``: each pair's latest time, for
        the generators that use it); returns self."""
        raise NotImplementedError

    def score(self, users: np.ndarray) -> np.ndarray:
        """A (len(users), items) float32 array of scores."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The settings, for the leaderboard."""
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays of its runtime ``form``."""
        raise NotImplementedError


class Popularity(Generator):
    """The number of users who have each item."""

    name = "popularity"
    form = "counts"

    def fit(self, matrix: sp.csr_matrix, times: sp.csr_matrix | None = None) -> Popularity:
        self.counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()

    def arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}


class Recent(Popularity):
    """Popularity among the newest ``window`` share of the interactions."""

    name = "recent"
    grid: ClassVar[dict[str, list]] = {"window": [0.05, 0.1, 0.25, 0.5]}

    def __init__(self, window: float = 0.1):
        self.window = float(window)

    def fit(self, matrix: sp.csr_matrix, times: sp.csr_matrix | None = None) -> Recent:
        if times is None:
            raise ValueError("recent popularity needs the interactions' times (problem.time)")
        coo = matrix.tocoo()
        when = np.asarray(times[coo.row, coo.col], dtype=np.float64).ravel()
        cut = np.quantile(when, 1 - self.window, method="higher") if len(when) else 0.0
        recent = np.bincount(coo.col[when >= cut], minlength=matrix.shape[1])
        overall = np.bincount(coo.col, minlength=matrix.shape[1])
        # all-time popularity as a fraction below 1 orders items the window ties
        self.counts = (recent + overall / (overall.max(initial=0) + 1)).astype(np.float32)
        return self

    def params(self) -> dict[str, Any]:
        return {"window": self.window}


class ItemKNN(Generator):
    """Item-item cosine with shrinkage, ``neighbours`` kept per item."""

    name = "itemknn"
    grid: ClassVar[dict[str, list]] = {
        "neighbours": [50, 100, 200, 400],
        "shrink": [0.0, 10.0, 50.0],
    }
    form = "item_item"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0):
        self.neighbours, self.shrink = int(neighbours), float(shrink)

    def fit(self, matrix: sp.csr_matrix, times: sp.csr_matrix | None = None) -> ItemKNN:
        self.matrix = matrix.tocsr().astype(np.float32)
        x = self.matrix.tocsc()
        co = (x.T @ x).toarray()  # users in common of each item pair
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-9)
        np.fill_diagonal(sim, 0.0)
        k = min(self.neighbours, sim.shape[1] - 1)
        if k < sim.shape[1] - 1:  # keep each item's k most similar: zero the others
            cut = np.argpartition(-sim, k, axis=1)[:, k:]
            np.put_along_axis(sim, cut, 0.0, axis=1)
        # item j's score for a user sums sim(i, j) over the user's items i
        self.similarity = sim.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[users] @ self.similarity, dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours, "shrink": self.shrink}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.similarity}


class EASE(Generator):
    """Steck (2019), "Embarrassingly Shallow Autoencoders for Sparse Data": closed form."""

    name = "ease"
    grid: ClassVar[dict[str, list]] = {"l2": [100.0, 250.0, 500.0, 1000.0]}
    form = "item_item"

    def __init__(self, l2: float = 500.0):
        self.l2 = float(l2)

    def fit(self, matrix: sp.csr_matrix, times: sp.csr_matrix | None = None) -> EASE:
        self.matrix = matrix.tocsr().astype(np.float32)
        gram = (self.matrix.T @ self.matrix).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        np.fill_diagonal(b, 0.0)
        self.weights = b.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[users] @ self.weights, dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"l2": self.l2}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights}


class _Factors(Generator):
    """A model of ``implicit`` whose user and item factors score by their dot product."""

    form = "factors"

    def __init__(self, seed: int = 0, threads: int = 1, **params: Any):
        self.seed, self.threads, self.settings = seed, threads, params

    def _model(self) -> Any:
        raise NotImplementedError

    def fit(self, matrix: sp.csr_matrix, times: sp.csr_matrix | None = None) -> _Factors:
        import implicit.cpu  # noqa: F401  (its BLAS loaded first: the limit below reaches it)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit's own threads do the work
            model = self._model()
            model.fit(matrix.tocsr().astype(np.float32), show_progress=False)
        # implicit answers numpy arrays on the CPU; keep plain float32 copies
        self.user_factors = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def params(self) -> dict[str, Any]:
        return dict(self.settings)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}


class ALS(_Factors):
    """Hu, Koren and Volinsky's implicit-feedback ALS (``implicit.cpu.als``); the 0/1
    matrix times ``alpha`` is the confidence."""

    name = "als"
    grid: ClassVar[dict[str, list]] = {
        "factors": [64, 128],
        "regularization": [0.01, 0.1],
        "alpha": [1.0, 5.0],
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        **kw: Any,
    ):
        super().__init__(
            factors=factors, regularization=regularization, alpha=alpha, iterations=iterations, **kw
        )

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            **self.settings, random_state=self.seed, num_threads=self.threads
        )


class BPR(_Factors):
    """Bayesian personalised ranking by SGD on sampled (user, seen, unseen) triples
    (``implicit.cpu.bpr``)."""

    name = "bpr"
    grid: ClassVar[dict[str, list]] = {  # implicit's own MovieLens settings
        "factors": [16, 32],
        "learning_rate": [0.002, 0.005],
        "iterations": [100, 300],
    }

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        **kw: Any,
    ):
        super().__init__(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
            **kw,
        )

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            **self.settings, random_state=self.seed, num_threads=self.threads
        )


GENERATORS: dict[str, type[Generator]] = {
    g.name: g for g in (Popularity, Recent, ItemKNN, EASE, ALS, BPR)
}
