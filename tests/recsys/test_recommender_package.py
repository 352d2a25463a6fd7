"""A recommender package: every stage in its own non-pickle format, hashed, replayed on
load, and answering as the funnel that was trained."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
from test_generators import clustered

from mlsd.models.package import PackageError, find_pickles, sha256_file
from mlsd.recsys import package as recommenders
from mlsd.recsys.assemble import assemble
from mlsd.recsys.funnel import Funnel
from mlsd.recsys.generators import ALS, EASE, ItemKNN, Popularity
from mlsd.recsys.interactions import Interactions


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = Interactions.from_frame(clustered(seed=6), "user", "item")
    matrix = data.matrix()
    factories = {
        "popularity": Popularity,
        "itemknn": partial(ItemKNN, 50),
        "ease": partial(EASE, 50.0),
        "als": partial(ALS, 16, iterations=5),
    }
    funnel = Funnel(factories, candidates=20, seed=0).fit(matrix)
    recommender = assemble(
        data, matrix, funnel.generators, "funnel", funnel.ranker, k=10, candidates=20
    )
    folder = tmp_path_factory.mktemp("pkg") / "recs"
    recommenders.build(
        folder,
        recommender,
        params={n: g.params() for n, g in funnel.generators.items()},
        metrics={"test": {"ndcg@10": 0.5}},
        meta={"system": "recs"},
    )
    return data, matrix, funnel, recommender, folder


def test_the_package_answers_as_the_trained_funnel(trained):
    data, matrix, funnel, recommender, folder = trained
    loaded = recommenders.load(folder).recommender
    users = list(data.users)
    got = loaded.recommend(users)
    want = recommender.recommend(users)
    assert [a["items"] for a in got] == [a["items"] for a in want]  # same floats, same order
    # the runtime (numpy, no scipy) lists what training's funnel lists
    top, _ = funnel.recommend(np.arange(len(users)), 10, matrix)
    same = [
        [data.items[c] for c in row] == [i["item"] for i in answer["items"]]
        for row, answer in zip(top, got, strict=True)
    ]
    assert np.mean(same) > 0.98, np.mean(same)
    for answer, row in zip(got[:50], range(50), strict=True):
        assert not {i["item"] for i in answer["items"]} & set(data.items[matrix[row].indices])
        assert {i["stage"] for i in answer["items"]} <= set(funnel.generators)
    assert find_pickles(folder) == []
    assert (folder / "ranker.txt").read_text().startswith("tree")
    assert {p.name for p in (folder / "generators" / "als").iterdir()} == {
        "user_factors.npy",
        "item_factors.npy",
    }


def test_an_edited_or_replaced_file_is_refused(trained, tmp_path):
    import shutil

    *_, folder = trained
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    weights = copy / "generators" / "ease" / "weights.npy"
    array = np.load(weights)
    array[0, :] += 1.0
    np.save(weights, array)
    with pytest.raises(PackageError, match="does not match its sha256"):
        recommenders.load(copy)
    # the hash updated as well: the holdout's answers no longer match
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["generators/ease/weights.npy"] = sha256_file(weights)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    array[:, :] = 0.0
    np.save(weights, array)
    manifest["files"]["generators/ease/weights.npy"] = sha256_file(weights)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match=r"replaying holdout\.json"):
        recommenders.load(copy)
    (copy / "extra.npy").write_bytes(b"\x80\x04stray")
    with pytest.raises(PackageError, match="pickled"):
        recommenders.load(copy)


def test_a_build_that_fails_leaves_nothing(trained, tmp_path):
    data, matrix, funnel, _, _ = trained
    broken = assemble(data, matrix, funnel.generators, "funnel", None, k=10, candidates=20)
    with pytest.raises(AttributeError):
        recommenders.build(
            tmp_path / "pkg",
            broken,
            params={},
            metrics={},
            meta={},
        )
    assert list(tmp_path.iterdir()) == []


def test_a_large_catalogue_proposes_through_a_calibrated_index_that_the_package_keeps(
    trained, tmp_path
):
    pytest.importorskip("faiss")
    data, matrix, funnel, _, _ = trained
    users = list(data.users)
    exact = assemble(data, matrix, funnel.generators, "funnel", funnel.ranker, candidates=20)
    # above ann_above items, ALS proposes through an IVF index (here: any catalogue)
    ann = assemble(
        data, matrix, funnel.generators, "funnel", funnel.ranker, candidates=20, ann_above=10
    )
    index = ann.generators["als"].index
    assert index is not None and index.describe()["recall"] >= 0.95
    folder = recommenders.build(tmp_path / "ann", ann, params={}, metrics={}, meta={})
    assert (folder / "generators" / "als" / "index.faiss").exists()
    loaded = recommenders.load(folder).recommender  # replayed through the loaded index
    assert loaded.generators["als"].index.describe()["nprobe"] == index.describe()["nprobe"]
    same = [
        len({i["item"] for i in a["items"]} & {i["item"] for i in b["items"]}) / 10
        for a, b in zip(loaded.recommend(users), exact.recommend(users), strict=True)
    ]
    assert np.mean(same) > 0.9, np.mean(same)


def test_side_features_come_from_the_tables_and_travel_in_the_package(tmp_path):
    import pandas as pd

    from mlsd.recsys.data import side_features

    frame = clustered(seed=10)
    data = Interactions.from_frame(frame, "user", "item")
    items = pd.DataFrame(
        {
            "item": [f"i{x}" for x in range(0, 200, 2)],  # every other item is described
            "year": np.arange(100) + 1900,
            "kind": ["film", "series"] * 50,
            "title": [f"t{x}" for x in range(100)],  # text of 100 values: left out
        }
    )
    users = pd.DataFrame({"user": list(data.users), "vip": [True, False] * (len(data.users) // 2)})
    side = side_features(data, items, users, "item", "user")
    assert side.item_names == ["year", "kind_film", "kind_series"]
    assert side.user_names == ["vip"]
    assert "year_vs_history" in side.names and "user_vip" in side.names
    column = {item: c for c, item in enumerate(data.items)}
    assert side.items[column["i4"]].tolist() == [1902.0, 1.0, 0.0]
    assert np.isnan(side.items[column["i5"]]).all()  # absent from the table
    matrix = data.matrix()
    factories = {"popularity": Popularity, "ease": partial(EASE, 50.0)}
    funnel = Funnel(factories, candidates=20, seed=0, side=side).fit(matrix)
    assert funnel.names[-len(side.names) :] == side.names
    rec = assemble(data, matrix, funnel.generators, "funnel", funnel.ranker, side=side)
    folder = recommenders.build(tmp_path / "side", rec, params={}, metrics={}, meta={})
    loaded = recommenders.load(folder).recommender  # replayed with the side features
    users_ = list(data.users)[:30]
    assert loaded.recommend(users_) == rec.recommend(users_)
    assert loaded.side.names == side.names
