"""MovieLens 100k as a ranking table (built from the copy inside the recbole wheel) and the
example's validation. Training on it is tested with the models."""

from __future__ import annotations

import importlib.util
import shutil

import pandas as pd
import pytest

from conftest import EXAMPLES
from mlsd.data.snapshot import load_dataset
from mlsd.data.validate import validate_dataset
from mlsd.datasets import movielens
from mlsd.errors import DataError
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

needs_recbole = pytest.mark.skipif(
    importlib.util.find_spec("recbole") is None,
    reason=f"recbole is not installed ({movielens.INSTALL})",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("movielens")
    shutil.copy(EXAMPLES / "movielens" / "system.yaml", folder)
    path = movielens.write_ranking_table(folder / "ratings.parquet")
    return folder, pd.read_parquet(path)


@needs_recbole
def test_the_table_has_every_user_and_rating_without_importing_recbole(built):
    import sys

    _, table = built
    assert "recbole" not in sys.modules and "torch" not in sys.modules
    assert table.shape[0] == 100_000 and table["user_id"].nunique() == 943
    assert table["item_id"].nunique() == 1682
    assert table["user_id"].notna().all()
    assert set(table["rating"].unique()) == {1, 2, 3, 4, 5}
    assert table.groupby("user_id").size().min() == 20
    assert {"age", "gender", "occupation", "release_year", "genre_drama"} <= set(table.columns)


@needs_recbole
def test_popularity_counts_only_earlier_ratings(built):
    _, table = built
    first = table.sort_values("timestamp").groupby("item_id").head(1)
    assert (first["popularity"] == 0).all() and first["prior_mean_rating"].isna().all()
    movie = table[table["item_id"] == 50].sort_values("timestamp")  # Star Wars: 583 ratings
    earlier = [int((movie["timestamp"] < t).sum()) for t in movie["timestamp"]]
    assert movie["popularity"].tolist() == earlier
    last = movie.iloc[-1]
    before = movie[movie["timestamp"] < last["timestamp"]]["rating"]
    assert last["prior_mean_rating"] == pytest.approx(before.mean(), abs=1e-4)


@needs_recbole
def test_a_users_history_counts_only_their_earlier_ratings(built):
    _, table = built
    genres = [c for c in table.columns if c.startswith("genre_")]
    user = table[table["user_id"] == 13]  # 636 ratings over many sessions
    for _, row in user.iloc[[0, 40, 300, -1]].iterrows():
        before = user[user["timestamp"] < row["timestamp"]]
        assert row["user_prior_ratings"] == len(before)
        # an earlier movie counts once per genre it shares with this one
        shared = (before[genres].to_numpy() * row[genres].to_numpy(dtype=int)).sum(axis=1)
        if shared.sum():
            pooled = (before["rating"] * shared).sum() / shared.sum()
            expected = pooled - before["rating"].mean()
            assert row["user_genre_affinity"] == pytest.approx(expected, abs=1e-4)
        else:
            assert pd.isna(row["user_genre_affinity"])


@needs_recbole
def test_the_example_validates(built):
    folder, _ = built
    spec = load_spec(folder / "system.yaml")
    report = validate_dataset(spec, load_dataset(spec, Workspace(folder / ".mlsd")))
    assert report.passed, [a.message for a in report.anomalies if a.blocking]
    groups = report.to_dict()["groups"]
    assert groups["list_length"]["n_groups"] == 943 and groups["list_length"]["min"] == 20
    assert groups["small_groups"] == 0 and groups["groups_without_relevant"] == 0
    assert "item_id" not in report.features and "user_id" not in report.features
    assert "all_relevant" in {a.check for a in report.anomalies}
    assert report.split["method"] == "time"
    assert sum(report.split["group"]["groups"].values()) == 943
    assert not [a for a in report.anomalies if a.check == "leakage" and a.blocking]


@needs_recbole
def test_the_example_trains_against_the_best_single_column(built):
    from mlsd.models.train import train

    folder, _ = built
    spec = load_spec(folder / "system.yaml")
    spec.models.tuning.budget_s = 0  # default parameters: the tuned run is in the README
    result = train(spec, Workspace(folder / ".mlsd", spec.name), progress=False)
    test = {e.name: e.scores["test"]["ndcg@10"] for e in result.leaderboard if e.scores["test"]}
    best = result.entry("baseline:best_column")
    assert best.details["rule"] == "order by prior_mean_rating desc"
    assert test["baseline:best_column"] > test["baseline:random"] + 0.1
    assert test[result.chosen] > test["baseline:random"] + 0.1
    # registered exactly when it beats the single column on test (the README's figures)
    assert result.registered == (test[result.chosen] > test["baseline:best_column"])


def test_a_missing_recbole_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(movielens, "_candidates", lambda: [])
    with pytest.raises(DataError) as err:
        movielens.find_ml100k()
    assert "pip install --no-deps recbole==1.2.1" in str(err.value.hint)


@needs_recbole
def test_the_interactions_validate_clean():
    from mlsd.recsys.validate import validate_interactions

    folder = movielens.find_ml100k()
    inter = movielens.read_atomic(folder / "ml-100k.inter")
    items = movielens.read_atomic(folder / "ml-100k.item")
    facts, found = validate_interactions(
        inter, "user_id", "item_id", time_column="timestamp", items=items
    )
    assert facts["users"] == 943 and facts["items"] == 1682 and facts["per_user"]["min"] == 20
    assert facts["time"]["first"].startswith("1997-09") and facts["time"]["last"].startswith(
        "1998-04"
    )
    # 333 movies have fewer than 5 ratings: the only finding, and not a blocking one
    assert [(a.check, a.severity, a.evidence["items"]) for a in found] == [
        ("sparse_items", "info", 333)
    ]
