"""The funnel on clustered interactions: the ranker learns from proposals made on each
user's history, recommends nothing the user has, and its candidate recall is the union's."""

from __future__ import annotations

from functools import partial

import numpy as np
from test_generators import clustered

from mlsd.recsys.evaluate import ranking_scores, top_items
from mlsd.recsys.funnel import Funnel, candidate_recall
from mlsd.recsys.generators import EASE, ItemKNN, Popularity
from mlsd.recsys.interactions import TEST, Interactions, split_per_user


def test_the_funnel_ranks_the_union_of_its_generators_proposals():
    data = Interactions.from_frame(clustered(seed=3), "user", "item")
    labels = split_per_user(data.user_codes, seed=2)
    train, test = data.matrix(labels != TEST), data.matrix(labels == TEST)
    users = np.arange(data.shape[0])
    factories = {
        "popularity": Popularity,
        "itemknn": partial(ItemKNN, 50),
        "ease": partial(EASE, 50.0),
    }
    funnel = Funnel(factories, candidates=20, seed=0).fit(train)
    top, info = funnel.recommend(users, 10, train)
    assert top.shape == (len(users), 10) and info["candidates_per_user"] >= 20
    for u in users[:100]:
        assert not set(top[u]) & set(train[u].indices) and len(set(top[u])) == 10
    got = ranking_scores(top, test, users, ["recall@10"])["recall@10"]
    popular = top_items(Popularity().fit(train), users, 10, exclude=train)
    assert got > ranking_scores(popular, test, users, ["recall@10"])["recall@10"] + 0.1
    importance = funnel.importance()
    assert abs(sum(importance.values()) - 1) < 1e-3 and importance["ease_rank"] > 0
    recall = candidate_recall(funnel.generators, users, train, test, 20)
    assert recall["union"] >= max(v for n, v in recall.items() if n != "union")
    assert recall["union"] <= 1.0 and recall["popularity"] < recall["ease"]


def test_the_gate_keeps_the_funnel_only_when_it_beats_every_generator_alone():
    from mlsd.recsys.funnel import choose

    data = Interactions.from_frame(clustered(seed=4), "user", "item")
    labels = split_per_user(data.user_codes, seed=3)
    train, valid = data.matrix(labels == 0), data.matrix(labels == 1)
    factories = {"popularity": Popularity, "ease": partial(EASE, 50.0)}
    choice = choose(factories, train, valid, metric="recall@10", candidates=20)
    assert set(choice.valid) == {"popularity", "ease", "funnel"}
    assert choice.valid["ease"] > choice.valid["popularity"]
    # clusters the ranker can use (EASE's rank with popularity and history): 0.31 vs 0.24
    assert choice.valid["funnel"] > choice.valid["ease"] + 0.03
    assert choice.chosen == "funnel" and "beats ease" in choice.reason
    # popularity alone: nothing for a ranker to combine, so it is judged like any other
    alone = choose({"popularity": Popularity}, train, valid, metric="recall@10", candidates=20)
    assert alone.chosen in {"popularity", "funnel"}
    assert alone.valid[alone.chosen] == max(alone.valid.values())
