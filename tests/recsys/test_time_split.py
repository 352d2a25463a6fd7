"""A funnel split by one cut in time: the newest interactions are held out, and users
first seen after the cut are judged as new users, served the most popular items."""

from __future__ import annotations

import numpy as np
from test_generators import clustered

from mlsd.recsys.data import interactions_of, split
from mlsd.recsys.interactions import TEST, TRAIN, VALID
from mlsd.recsys.train import train_funnel
from mlsd.spec import load_spec

SPEC = """\
name: cut
problem: {task: ranking, id: user, target: item, time: ts}
architecture: {kind: funnel, generators: [popularity, ease], candidates: 20}
data: {source: interactions.csv, split: {method: time, valid: 0.1, test: 0.2}}
"""


def test_a_cut_in_time_holds_out_the_newest_and_judges_new_users_apart(tmp_path):
    frame = clustered(seed=9)
    rng = np.random.default_rng(0)
    frame["ts"] = rng.permutation(len(frame))
    late = frame["user"].isin([f"u{x}" for x in range(20)])  # 20 users arrive after the cut
    frame.loc[late, "ts"] += len(frame)
    frame.to_csv(tmp_path / "interactions.csv", index=False)
    (tmp_path / "system.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "system.yaml")
    labels = split(spec, frame, interactions_of(spec, frame))
    ts = frame["ts"].to_numpy()
    assert ts[labels == TRAIN].max() < ts[labels == VALID].min()
    assert ts[labels == VALID].max() < ts[labels == TEST].min()
    assert abs((labels == TEST).mean() - 0.2) < 0.01
    result = train_funnel(spec, progress=False)
    for entry in result.leaderboard:
        new = entry["segments"]["new (no history)"]
        assert new is not None and new > 0
    board = {e["name"]: e for e in result.leaderboard}
    # a new user's list is the cold start's: the same for every candidate
    new_scores = {e["segments"]["new (no history)"] for e in result.leaderboard}
    assert len(new_scores) == 1, new_scores
    assert board["ease"]["test"]["ndcg@10"] > board["popularity"]["test"]["ndcg@10"]


def test_latest_keeps_each_pairs_last_time_and_the_ranker_learns_the_latest_as_targets():
    import pandas as pd

    from mlsd.recsys.funnel import Funnel
    from mlsd.recsys.generators import EASE, Popularity
    from mlsd.recsys.interactions import Interactions, latest

    frame = pd.DataFrame({"user": ["a", "a", "a", "b"], "item": ["x", "y", "x", "x"]})
    data = Interactions.from_frame(frame, "user", "item")
    times = latest(data, np.array([5.0, 7.0, 9.0, 1.0]))
    assert times[0, 0] == 9.0 and times[0, 1] == 7.0 and times[1, 0] == 1.0
    # on clustered data, the ranker's targets follow the time order given
    frame = clustered(seed=11)
    frame["ts"] = np.random.default_rng(1).permutation(len(frame)).astype(float)
    data = Interactions.from_frame(frame, "user", "item")
    matrix, when = data.matrix(), latest(data, frame["ts"].to_numpy())
    factories = {"popularity": Popularity, "ease": EASE}
    funnel = Funnel(factories, candidates=20, seed=0, targets="per_user_time")
    _, y, rows = funnel._proposals(matrix, when)
    assert y.sum() > 0 and len(np.unique(rows)) > 100
    # the same seed with random targets: other targets
    _, y_random, _ = Funnel(factories, candidates=20, seed=0)._proposals(matrix, when)
    assert y.sum() != y_random.sum() or not np.array_equal(y, y_random)


def test_under_one_cut_in_time_the_rankers_targets_are_the_newest_of_all():
    from mlsd.recsys.funnel import Funnel
    from mlsd.recsys.generators import EASE, Popularity
    from mlsd.recsys.interactions import Interactions, latest

    frame = clustered(seed=12)
    rng = np.random.default_rng(2)
    frame["ts"] = rng.permutation(len(frame)).astype(float)
    early = frame["user"].isin([f"u{x}" for x in range(100)])  # gone before the newest 25%
    frame.loc[early, "ts"] -= len(frame)
    data = Interactions.from_frame(frame, "user", "item")
    matrix, when = data.matrix(), latest(data, frame["ts"].to_numpy())
    factories = {"popularity": Popularity, "ease": EASE}
    _, y, rows = Funnel(factories, candidates=20, seed=0, targets="time")._proposals(matrix, when)
    # proposals are made for users with targets only: none of the early ones
    late_users = set(np.flatnonzero(~data.users.isin([f"u{x}" for x in range(100)])))
    per_user = Funnel(factories, candidates=20, seed=0, targets="per_user_time")
    _, _, rows_per_user = per_user._proposals(matrix, when)
    assert y.sum() > 0 and len(np.unique(rows)) <= len(late_users)
    assert len(np.unique(rows_per_user)) > len(late_users)  # each user's latest: everyone
