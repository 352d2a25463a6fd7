"""``Recommender.explain``: a user's history, each generator's proposals, the ranker's score
of every candidate and the final list, which is exactly what ``recommend`` answers."""

from __future__ import annotations

from functools import partial

import pytest
from test_generators import clustered

from mlsd.recsys.assemble import assemble
from mlsd.recsys.funnel import Funnel
from mlsd.recsys.generators import EASE, ItemKNN, Popularity
from mlsd.recsys.interactions import Interactions
from mlsd.recsys.runtime import COLD_START, FUNNEL


@pytest.fixture(scope="module")
def fitted():
    frame = clustered(users=150, items=90, seed=3)
    data = Interactions.from_frame(frame, "user", "item")
    matrix = data.matrix()
    factories = {"popularity": Popularity, "itemknn": partial(ItemKNN, 30), "ease": EASE}
    funnel = Funnel(factories, candidates=15, seed=0).fit(matrix)
    recommender = partial(assemble, data, matrix, funnel.generators, k=8, candidates=15)
    return frame, recommender(FUNNEL, funnel.ranker), recommender("itemknn")


def test_the_funnel_explained_ends_in_the_list_recommend_gives(fitted):
    frame, funnel, _ = fitted
    for user in frame["user"].unique()[:20]:
        got = funnel.explain(user)
        assert got["final"] == funnel.recommend([user])[0]["items"]
        assert got["stage"] == FUNNEL and got["known"] and not got["cold_start"]
        assert sorted(got["history"]) == sorted(frame.loc[frame["user"] == user, "item"])
        assert set(got["generators"]) == {"popularity", "itemknn", "ease"}
        for proposals in got["generators"].values():
            assert [p["rank"] for p in proposals] == list(range(1, len(proposals) + 1))
            assert len(proposals) == 15 and not {p["item"] for p in proposals} & set(got["history"])
        # every proposal is a candidate the ranker scored, best first; the list is its top
        candidates = {c["item"]: c for c in got["ranker"]}
        for name, proposals in got["generators"].items():
            assert all(candidates[p["item"]]["ranks"][name] == p["rank"] for p in proposals)
        scores = [c["score"] for c in got["ranker"]]
        assert scores == sorted(scores, reverse=True)
        listed = [c["item"] for c in got["ranker"] if c["listed"]]
        assert listed == [i["item"] for i in got["final"]]
        assert [c["score"] for c in got["ranker"][:8]] == [i["score"] for i in got["final"]]


def test_a_single_generator_and_a_cold_start_are_explained_too(fitted):
    frame, funnel, itemknn = fitted
    user = frame["user"].iloc[0]
    got = itemknn.explain(user, k=5)
    assert got["stage"] == "itemknn" and list(got["generators"]) == ["itemknn"]
    assert got["ranker"] is None and got["final"] == itemknn.recommend([user], k=5)[0]["items"]
    cold = funnel.explain("someone new")
    assert cold["cold_start"] and not cold["known"] and cold["history"] == []
    assert cold["stage"] == COLD_START and list(cold["generators"]) == [COLD_START]
    assert cold["final"] == funnel.recommend(["someone new"])[0]["items"]
    assert [i["item"] for i in cold["final"]] == [
        p["item"] for p in cold["generators"][COLD_START][:8]
    ]
