"""Train/valid/test splits: each method's invariants, determinism and error messages."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd.data.split import TEST, TRAIN, VALID, split_rows, split_summary
from mlsd.errors import DataError
from mlsd.spec import SystemSpec


def make_spec(
    method: str = "auto",
    *,
    task: str = "binary",
    time=None,
    group=None,
    valid: float = 0.15,
    test: float = 0.15,
    seed: int = 42,
    id_col=None,
) -> SystemSpec:
    problem = {"task": task, "target": "y", "time": time or []}
    if id_col:
        problem["id"] = id_col
    split = {"method": method, "valid": valid, "test": test}
    if group:
        split["group"] = group
    return SystemSpec.model_validate(
        {"name": "t", "seed": seed, "problem": problem, "data": {"source": "x.csv", "split": split}}
    )


def counts(labels: np.ndarray) -> tuple[int, int, int]:
    return tuple(int((labels == s).sum()) for s in (TRAIN, VALID, TEST))


# --- random ------------------------------------------------------------------------------------


def test_random_counts_dtype_and_determinism():
    df = pd.DataFrame({"x": np.arange(1000), "y": np.arange(1000) % 2})
    spec = make_spec("random")
    labels = split_rows(df, spec)
    assert labels.dtype == np.int8 and labels.shape == (1000,)
    assert counts(labels) == (700, 150, 150)
    assert np.array_equal(labels, split_rows(df, spec))
    assert not np.array_equal(labels, split_rows(df, make_spec("random", seed=7)))


def test_no_valid_rows_when_valid_is_zero():
    df = pd.DataFrame({"y": np.arange(100) % 2, "t": np.arange(100), "g": np.arange(100) // 5})
    for method, kw in [
        ("random", {}),
        ("stratified", {}),
        ("time", {"time": ["t"]}),
        ("group", {"group": "g"}),
    ]:
        labels = split_rows(df, make_spec(method, valid=0.0, test=0.2, **kw))
        train, valid, test = counts(labels)
        assert valid == 0 and train > 0 and test > 0, method


def test_two_rows_cannot_fill_three_splits():
    df = pd.DataFrame({"y": [0, 1], "t": [1, 2]})
    with pytest.raises(DataError, match=r"given 2 rows.*at least 3") as err:
        split_rows(df, make_spec("random"))
    assert "data.split.valid: 0" in err.value.hint
    labels = split_rows(df, make_spec("random", valid=0.0))  # two splits fit in two rows
    assert counts(labels) == (1, 0, 1)


def test_three_rows_get_one_row_each():
    df = pd.DataFrame({"y": [0, 1, 0], "t": [1, 2, 3], "g": ["a", "b", "c"]})
    for method, kw in [
        ("random", {}),
        ("stratified", {}),
        ("time", {"time": ["t"]}),
        ("group", {"group": "g"}),
    ]:
        assert counts(split_rows(df, make_spec(method, valid=0.45, test=0.44, **kw))) == (1, 1, 1)


# --- stratified ----------------------------------------------------------------------------


def assert_proportional(labels: np.ndarray, target: pd.Series) -> None:
    """Every class holds its proportional share of every split, within one row."""
    codes, _ = pd.factorize(target, use_na_sentinel=False)
    n = len(labels)
    split_totals = np.bincount(labels, minlength=3)
    for k in range(codes.max() + 1):
        in_class = codes == k
        for s in (TRAIN, VALID, TEST):
            got = int((labels[in_class] == s).sum())
            want = in_class.sum() * split_totals[s] / n
            assert abs(got - want) < 1, (k, s, got, want)


def test_stratified_keeps_class_shares_and_missing_targets():
    rng = np.random.default_rng(0)
    y = pd.Series(rng.choice(["a", "b", "c"], size=997, p=[0.7, 0.25, 0.05]), dtype=object)
    y[rng.random(997) < 0.03] = None  # missing targets: a class of their own
    df = pd.DataFrame({"y": y})
    spec = make_spec("auto")  # binary task without time: auto resolves to stratified
    assert spec.split_method == "stratified"
    labels = split_rows(df, spec)
    assert counts(labels) == (697, 150, 150)
    assert_proportional(labels, df["y"])
    assert np.array_equal(labels, split_rows(df, spec))
    assert not np.array_equal(labels, split_rows(df, make_spec(seed=1)))
    summary = split_summary(labels, df, spec)
    shares = summary["stratified"]["class_shares"]
    assert set(shares["test"]) == {"a", "b", "c", "__missing__"}
    assert abs(shares["test"]["a"] - shares["train"]["a"]) < 0.01
    json.dumps(summary, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    class_sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    valid=st.sampled_from([0.0, 0.1, 0.2, 0.3]),
    test=st.sampled_from([0.05, 0.15, 0.3, 0.45]),
    seed=st.integers(0, 2**16),
)
def test_stratified_rounding_is_exact_property(class_sizes, valid, test, seed):
    if valid + test >= 0.9 or sum(class_sizes) < 3:
        return
    y = np.repeat(np.arange(len(class_sizes)), class_sizes)
    df = pd.DataFrame({"y": np.random.default_rng(seed).permutation(y)})
    labels = split_rows(df, make_spec("stratified", valid=valid, test=test, seed=seed))
    assert_proportional(labels, df["y"])
    train, n_valid, n_test = counts(labels)
    assert train >= 1 and n_test >= 1 and (n_valid >= 1) == (valid > 0)


# --- time --------------------------------------------------------------------------------------


def keys_of(df: pd.DataFrame, cols: list[str], mask: np.ndarray) -> list[tuple]:
    return sorted(df.loc[mask, cols].itertuples(index=False, name=None))


def assert_time_ordered(labels: np.ndarray, df: pd.DataFrame, cols: list[str]) -> None:
    train, valid, test = (keys_of(df, cols, labels == s) for s in (TRAIN, VALID, TEST))
    if valid:
        assert train[-1] < valid[0] and valid[-1] < test[0]
    else:
        assert train[-1] < test[0]


def test_time_split_with_ties_on_two_columns():
    # day most significant, hour second; every (day, hr) key appears 3 times
    days = np.repeat(np.arange(10), 24 * 3)
    hours = np.tile(np.repeat(np.arange(24), 3), 10)
    df = pd.DataFrame({"day": days, "hr": hours, "y": 0.0}).sample(frac=1, random_state=1)
    spec = make_spec(task="regression", time=["day", "hr"])
    assert spec.split_method == "time"
    labels = split_rows(df, spec)
    assert_time_ordered(labels, df, ["day", "hr"])
    assert counts(labels) == (504, 108, 108)  # 15% of 720 rows falls on a tie boundary
    summary = split_summary(labels, df, spec)
    bounds = summary["time"]["bounds"]
    assert bounds["train"]["first"] == {"day": 0, "hr": 0}
    assert bounds["test"]["last"] == {"day": 9, "hr": 23}
    assert bounds["valid"]["first"] == {"day": 7, "hr": 0}
    json.dumps(summary, allow_nan=False)


def test_time_cut_moves_to_nearest_tie_boundary():
    # 100 rows, times 0..9 with 10 rows each except time 8 holding 20 (and 9 none)
    t = np.concatenate([np.repeat(np.arange(8), 10), np.repeat(8, 15), np.repeat(9, 5)])
    df = pd.DataFrame({"t": t})
    labels = split_rows(df, make_spec(task="regression", time=["t"], valid=0.1, test=0.1))
    assert_time_ordered(labels, df, ["t"])
    # test wants 10 rows: only 5 (t=9) or 20 (t>=8) are possible; 5 is nearer
    assert counts(labels)[TEST] == 5


def test_time_split_on_datetimes_and_strings():
    stamps = pd.date_range("2024-01-01", periods=60, freq="h").repeat(2)
    df = pd.DataFrame({"ts": stamps, "s": stamps.strftime("%Y-%m-%dT%H")})
    # unordered categories (as schema coercion makes them) order by value, not category order
    shuffled = sorted(set(df["s"]), key=lambda v: v[::-1])
    df["c"] = pd.Categorical(df["s"], categories=shuffled)
    for col in ("ts", "s", "c"):
        labels = split_rows(df, make_spec(task="regression", time=[col]))
        assert_time_ordered(labels, df, [col])
    summary = split_summary(labels, df, make_spec(task="regression", time=["ts"]))
    assert summary["time"]["bounds"]["train"]["first"]["ts"] == "2024-01-01T00:00:00"


def test_time_split_errors():
    same = pd.DataFrame({"t": [5] * 10})
    with pytest.raises(DataError, match=r"at least 3 distinct times.*given 1 distinct value"):
        split_rows(same, make_spec(task="regression", time=["t"]))
    two = pd.DataFrame({"t": [1] * 5 + [2] * 5})
    with pytest.raises(DataError, match="given 2 distinct values"):
        split_rows(two, make_spec(task="regression", time=["t"]))
    assert counts(split_rows(two, make_spec(task="regression", time=["t"], valid=0))) == (5, 0, 5)
    holes = pd.DataFrame({"t": [1.0, np.nan, 3.0, np.nan, 5.0]})
    with pytest.raises(DataError, match="'t' has 2 missing values"):
        split_rows(holes, make_spec(task="regression", time=["t"]))
    with pytest.raises(DataError, match="time column 'when' is not in the data"):
        split_rows(holes, make_spec(task="regression", time=["when"]))


# --- group -------------------------------------------------------------------------------------


def test_group_split_keeps_groups_whole():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 120, size=2000).astype(object)
    users[rng.random(2000) < 0.02] = None  # missing ids: one group
    df = pd.DataFrame({"user": users, "y": rng.integers(0, 2, 2000)})
    spec = make_spec("group", id_col="user")  # problem.id is the default group column
    labels = split_rows(df, spec)
    groups = df["user"].fillna("<na>")
    seen = [set(groups[labels == s]) for s in (TRAIN, VALID, TEST)]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    _, valid, test = counts(labels)
    assert abs(valid - 300) < 40 and abs(test - 300) < 40
    assert np.array_equal(labels, split_rows(df, spec))
    assert not np.array_equal(labels, split_rows(df, make_spec("group", id_col="user", seed=9)))
    summary = split_summary(labels, df, spec)
    assert sum(summary["group"]["groups"].values()) == groups.nunique()
    json.dumps(summary, allow_nan=False)


def test_group_split_errors():
    df = pd.DataFrame({"g": ["a", "a", "b", "b"], "y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match=r"at least 3 distinct values of 'g'.*given 2"):
        split_rows(df, make_spec("group", group="g"))
    with pytest.raises(DataError, match="group column 'nope' is not in the data"):
        split_rows(df, make_spec("group", group="nope"))


# --- properties over random frames ---------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), min_size=3, max_size=80),
    valid=st.sampled_from([0.0, 0.05, 0.15, 0.3]),
    test=st.sampled_from([0.05, 0.15, 0.3, 0.5]),
)
def test_time_invariants_property(keys, valid, test):
    if valid + test >= 0.9:
        return
    df = pd.DataFrame(keys, columns=["a", "b"])
    spec = make_spec(task="regression", time=["a", "b"], valid=valid, test=test)
    distinct = len(set(keys))
    if distinct < (3 if valid else 2):
        with pytest.raises(DataError):
            split_rows(df, spec)
        return
    labels = split_rows(df, spec)
    train, n_valid, n_test = counts(labels)
    assert train >= 1 and n_test >= 1 and (n_valid >= 1) == (valid > 0)
    assert_time_ordered(labels, df, ["a", "b"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.lists(st.one_of(st.none(), st.integers(0, 15)), min_size=3, max_size=80),
    valid=st.sampled_from([0.0, 0.1, 0.2]),
    test=st.sampled_from([0.1, 0.2, 0.4]),
    seed=st.integers(0, 1000),
)
def test_group_invariants_property(groups, valid, test, seed):
    df = pd.DataFrame({"g": pd.Series(groups, dtype=object)})
    spec = make_spec("group", group="g", valid=valid, test=test, seed=seed)
    distinct = len(set(groups))
    if distinct < (3 if valid else 2):
        with pytest.raises(DataError):
            split_rows(df, spec)
        return
    labels = split_rows(df, spec)
    train, n_valid, n_test = counts(labels)
    assert train >= 1 and n_test >= 1 and (n_valid >= 1) == (valid > 0)
    where = {}
    for g, s in zip(groups, labels.tolist(), strict=True):
        assert where.setdefault(g, s) == s  # a group never spans two splits
    if all(size == 1 for size in pd.Series(groups, dtype=object).value_counts(dropna=False)):
        n = len(groups)  # singleton groups: counts as close as a random split's
        assert abs(n_test - max(1, round(n * test))) <= 1


# --- ranking: whole groups -----------------------------------------------------------------


def ranking_spec(method: str = "auto", *, time=None, group_split=None) -> SystemSpec:
    problem = {"task": "ranking", "target": "grade", "group": "query", "time": time or []}
    split = {"method": method, "valid": 0.15, "test": 0.15}
    if group_split:
        split["group"] = group_split
    return SystemSpec.model_validate(
        {"name": "r", "seed": 3, "problem": problem, "data": {"source": "x.csv", "split": split}}
    )


def _ranking_frame() -> pd.DataFrame:
    from ranking_tables import make_ranking_table

    df = make_ranking_table(120, 10, seed=1)
    # events within a query happen over a few days after it starts: rows of one group differ
    df["day"] = df["day"] + np.random.default_rng(0).integers(0, 8, len(df))
    return df.sample(frac=1, random_state=0).reset_index(drop=True)  # groups interleaved


def _groups_per_split(df, labels) -> pd.Series:
    return pd.Series(labels).groupby(df["query"].to_numpy()).nunique()


@pytest.mark.parametrize("method", ["auto", "group", "time"])
def test_ranking_splits_keep_every_group_whole(method):
    df = _ranking_frame()
    spec = ranking_spec(method, time=["day"] if method == "time" else None)
    assert spec.split_method == ("group" if method == "auto" else method)
    labels = split_rows(df, spec)
    assert (_groups_per_split(df, labels) == 1).all()
    train, valid, test = counts(labels)
    assert train and valid and test and abs(test - 180) <= 30
    summary = json.loads(json.dumps(split_summary(labels, df, spec)))
    per_split = summary["group"]["groups"]
    assert summary["group"]["column"] == "query"
    assert sum(per_split.values()) == 120 and min(per_split.values()) > 0


def test_ranking_time_split_orders_whole_groups_by_their_first_event():
    df = _ranking_frame()
    spec = ranking_spec(time=["day"])  # auto resolves to time when problem.time is set
    assert spec.split_method == "time"
    labels = split_rows(df, spec)
    start = df.groupby("query")["day"].transform("min").to_numpy()
    assert start[labels == TRAIN].max() < start[labels == VALID].min()
    assert start[labels == VALID].max() < start[labels == TEST].min()
    # a group starting in train has events after a valid group starts: it is kept whole
    assert df["day"][labels == TRAIN].max() > start[labels == VALID].min()
    bounds = split_summary(labels, df, spec)["time"]
    assert bounds["by"] == "group start"
    assert bounds["bounds"]["test"]["first"]["day"] == start[labels == TEST].min()
    assert bounds["bounds"]["train"]["last"]["day"] == start[labels == TRAIN].max()
    assert np.array_equal(labels, split_rows(df, spec))


def test_ranking_time_split_needs_groups_starting_at_distinct_times():
    df = pd.DataFrame({"query": [1, 1, 2, 2, 3, 3], "day": [0, 5, 0, 6, 0, 7], "grade": 1})
    with pytest.raises(DataError, match="start times of the groups of 'query'"):
        split_rows(df, ranking_spec("time", time=["day"]))
