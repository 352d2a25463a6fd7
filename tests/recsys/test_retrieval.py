"""Exact and approximate (faiss IVF) retrieval by inner product: exact search is brute
force, the approximate index reaches the recall it was calibrated to on fresh queries, and
it survives a round trip through faiss's own file format."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.recsys import retrieval
from mlsd.recsys.retrieval import ExactIndex, IVFIndex, build_index


def catalogue(n=20_000, d=32, clusters=50, seed=0) -> np.ndarray:
    """Item vectors around ``clusters`` centres, as matrix factorisation leaves them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    return (centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, d))).astype(
        np.float32
    )


def test_exact_search_is_brute_force_best_first():
    items = catalogue(3_000)
    queries = np.random.default_rng(1).normal(size=(40, 32)).astype(np.float32)
    ids, scores = ExactIndex(items).search(queries, 25)
    full = queries @ items.T
    for q in range(len(queries)):
        assert set(ids[q]) == set(np.argsort(-full[q])[:25])
        assert np.all(np.diff(scores[q]) <= 0)
        assert np.allclose(scores[q], full[q, ids[q]], atol=1e-4)


def test_ivf_reaches_its_calibrated_recall_on_fresh_queries_and_reloads(tmp_path):
    items = catalogue()
    index = IVFIndex.build(items, target_recall=0.95, k=100, threads=1)
    described = index.describe()
    assert described["recall"] >= 0.95 and 1 <= described["nprobe"] < described["cells"]
    rng = np.random.default_rng(7)  # queries it was not calibrated on
    fresh = items[rng.choice(len(items), 300)] + rng.normal(scale=items.std(), size=(300, 32))
    truth, _ = ExactIndex(items).search(fresh, 100)
    found, _ = index.search(fresh, 100)
    assert retrieval._recall(found, truth) >= 0.93  # calibration on 200 queries: ±0.02
    index.save(tmp_path / "items.faiss")
    again = IVFIndex.load(tmp_path / "items.faiss", described["nprobe"], index.recall, 100)
    assert np.array_equal(again.search(fresh[:20], 100)[0], found[:20])


def test_small_catalogues_are_searched_exactly_and_a_missing_faiss_is_named(monkeypatch):
    assert isinstance(build_index(catalogue(1_000)), ExactIndex)
    monkeypatch.setattr(retrieval, "EXACT_MAX", 500)
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)
    with pytest.raises(retrieval.RetrievalError, match=r"mlsd\[ann\]"):
        build_index(catalogue(1_000))
