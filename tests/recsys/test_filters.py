"""The filters after the ranker: maximal marginal relevance spreads a list over unlike
items, and the exploration share hands slots to candidates from beyond the list, online
only."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from test_generators import clustered

from mlsd.recsys import package as recommenders
from mlsd.recsys.assemble import assemble, item_embeddings
from mlsd.recsys.generators import EASE
from mlsd.recsys.interactions import Interactions


@pytest.fixture(scope="module")
def fitted():
    data = Interactions.from_frame(clustered(seed=8), "user", "item")
    matrix = data.matrix()
    ease = partial(EASE, 50.0)().fit(matrix)
    return data, matrix, ease


def _similarity(rec, answers) -> float:
    """Mean cosine similarity of the pairs within each list (by the MMR vectors)."""
    values = []
    for answer in answers:
        v = rec.embeddings[[rec.item_index[i["item"]] for i in answer["items"]]]
        sim = v @ v.T
        values.append(sim[np.triu_indices(len(v), 1)].mean())
    return float(np.mean(values))


def test_mmr_lists_unlike_items_at_a_small_cost_in_score(fitted):
    data, matrix, ease = fitted
    users = list(data.users)
    plain = assemble(data, matrix, {"ease": ease}, "ease", diversity=0.0)
    plain.embeddings = item_embeddings(matrix)
    diverse = assemble(data, matrix, {"ease": ease}, "ease", diversity=0.6)
    before, after = plain.recommend(users), diverse.recommend(users)
    assert _similarity(plain, before) - _similarity(diverse, after) > 0.1
    for b, a in zip(before, after, strict=True):
        assert a["items"][0] == b["items"][0]  # the best item stays first
        assert len(a["items"]) == 10 and len({i["item"] for i in a["items"]}) == 10
        assert np.mean([i["score"] for i in a["items"]]) <= np.mean(
            [i["score"] for i in b["items"]]
        )
    # the item vectors are cosine-ready, and the clusters are in them
    assert np.allclose(np.linalg.norm(diverse.embeddings, axis=1), 1, atol=1e-5)


def test_exploration_takes_its_share_of_slots_online_only(fitted, tmp_path):
    data, matrix, ease = fitted
    users = list(data.users)
    rec = assemble(data, matrix, {"ease": ease}, "ease", exploration=0.2)
    offline = rec.recommend(users)
    assert all(i["stage"] == "ease" for a in offline for i in a["items"])
    online = rec.recommend(users, explore=np.random.default_rng(1))
    stages = [i["stage"] for a in online for i in a["items"]]
    share = stages.count("exploration") / len(stages)
    assert 0.17 < share < 0.23, share  # 3,000 slots: the binomial's sd is 0.007
    for off, on in zip(offline, online, strict=True):
        kept = [i for i in on["items"] if i["stage"] != "exploration"]
        assert all(i in off["items"] for i in kept)  # the rest keep their places' items
        assert len({i["item"] for i in on["items"]}) == 10
        explored = {i["item"] for i in on["items"] if i["stage"] == "exploration"}
        assert not explored & {i["item"] for i in off["items"]}
    # a package keeps both settings and replays exactly (offline answers do not explore)
    folder = recommenders.build(tmp_path / "pkg", rec, params={}, metrics={}, meta={})
    loaded = recommenders.load(folder).recommender
    assert loaded.exploration == 0.2 and loaded.recommend(users[:5]) == offline[:5]
