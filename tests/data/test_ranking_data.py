"""Data validation of a ranking table: list lengths, lists with nothing to rank, relevance
checks, leakage judged per group."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ranking_tables import make_ranking_table

from mlsd.data import ranking
from mlsd.data.snapshot import load_dataset
from mlsd.data.validate import validate_dataset
from mlsd.evaluation.metrics import compute
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace


def run(tmp_path, df: pd.DataFrame, *, group="query", time="", extra=""):
    df.to_csv(tmp_path / "d.csv", index=False)
    text = (
        f"name: r\nproblem: {{task: ranking, target: grade, group: {group}, time: [{time}]}}\n"
        f"data:\n  source: d.csv\n{extra}"
    )
    spec = parse_spec(text)
    spec._path = tmp_path / "system.yaml"
    return validate_dataset(spec, load_dataset(spec, Workspace(tmp_path / "ws")))


def found(report, check: str) -> dict:
    return {a.column: a for a in report.anomalies if a.check == check}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_ranking_table(200, 12, seed=0)


def test_a_clean_ranking_table_passes_with_its_list_lengths(tmp_path, table):
    report = run(tmp_path, table)
    assert report.passed, [a.message for a in report.anomalies if a.blocking]
    assert "query" not in report.features and "grade" not in report.features
    out = json.loads(json.dumps(report.to_dict()))
    groups = out["groups"]
    assert groups["column"] == "query"
    assert groups["list_length"] == {
        "n_groups": 200,
        "min": 12,
        "median": 12.0,
        "p90": 12.0,
        "max": 12,
        "mean": 12.0,
    }
    assert groups["small_groups"] == 0 and groups["groups_without_relevant"] == 0
    assert out["split"]["method"] == "group"
    assert sum(out["split"]["group"]["groups"].values()) == 200
    # views is a weak signal: neither a leak nor a strong feature
    assert "views" not in found(report, "leakage")
    # day holds one value per query: tested on one row per group, a group split is no drift
    assert not found(report, "split_drift")


def test_group_level_columns_are_tested_on_one_row_per_group(tmp_path):
    df = make_ranking_table(200, 12, seed=2)
    df["day"] = np.where(df["query"] < "q0060", df["day"] + 100, df["day"])  # later queries
    report = run(tmp_path, df, time="day")
    drift = found(report, "split_drift")["day"]
    assert drift.evidence["unit"] == "group" and drift.evidence["n_test"] < 40
    assert "groups)" in drift.message


def test_short_lists_and_lists_with_nothing_relevant_warn(tmp_path, table):
    df = table.copy()
    df.loc[df["query"].isin(["q0001", "q0002", "q0003"]), "grade"] = 0
    singles = pd.DataFrame(
        {"query": ["solo1", "solo2"], "day": 1, "x1": 0.0, "x2": 0.0, "x3": 0.0}
        | {"kind": "news", "views": 10, "grade": [1, 0]}
    )
    df = pd.concat([df, singles], ignore_index=True)
    report = run(tmp_path, df)
    assert report.passed
    small = found(report, "group_too_small")["query"]
    assert small.severity == "warning" and small.evidence["count"] == 2
    assert small.evidence["examples"] == ["solo1", "solo2"]
    empty = found(report, "group_no_relevant")["query"]
    assert empty.severity == "warning" and empty.evidence["count"] == 4  # + solo2
    assert empty.evidence["share"] == round(4 / 202, 4)
    assert {"q0001", "q0002", "q0003", "solo2"} == set(empty.evidence["examples"])
    lengths = report.to_dict()["groups"]["list_length"]
    assert lengths["min"] == 1 and lengths["max"] == 12 and lengths["n_groups"] == 202


def test_missing_group_column_and_missing_group_values_block(tmp_path, table):
    report = run(tmp_path, table, group="session")
    assert not report.passed
    missing = found(report, "missing_column")["session"]
    assert (
        missing.blocking and "problem.group" in missing.message and "problem.group" in (missing.fix)
    )
    df = table.copy()
    df.loc[:4, "query"] = np.nan
    report = run(tmp_path, df)
    assert found(report, "group_missing")["query"].blocking


@pytest.mark.parametrize(
    ("values", "kind"),
    [(lambda g: g - 1, "negative"), (lambda g: g.map(lambda v: f"grade{v}"), "not_numeric")],
)
def test_relevance_must_be_numbers_not_below_zero(tmp_path, table, values, kind):
    df = table.assign(grade=values(table["grade"]))
    report = run(tmp_path, df)
    assert not report.passed
    bad = found(report, "target_relevance")["grade"]
    assert bad.blocking and bad.evidence["kind"] == kind
    assert "graded relevance" in bad.fix


def test_a_column_that_orders_each_group_perfectly_is_leakage(tmp_path, table):
    rng = np.random.default_rng(1)
    offset = table.groupby("query")["grade"].transform(lambda s: rng.normal() * 10)
    df = table.assign(
        grade_copy=table["grade"],
        # the relevance on a scale of its own in each group: no global copy, a perfect order
        position=-(table["grade"] * 3 + offset),
    )
    report = run(tmp_path, df)
    leaks = found(report, "leakage")
    assert not report.passed
    assert leaks["grade_copy"].blocking
    position = leaks["position"]
    assert position.blocking and position.evidence["kind"] == "order"
    assert position.evidence["direction"] == "lower first"
    assert "groups" in position.message and position.evidence["groups"] == 200


def test_a_strong_feature_is_scored_by_ndcg_lift_per_group(tmp_path):
    df = make_ranking_table(200, 12, seed=2, with_score=True)
    report = run(tmp_path, df, extra="  checks: {leakage: 0.6}\n")
    strong = found(report, "leakage")["true_score"]
    assert strong.severity == "warning" and strong.evidence["kind"] == "strong"
    e = strong.evidence
    assert e["metric"] == "ndcg lift" and e["random"] < e["ndcg"] < 1 and 0.6 <= e["score"] < 1
    assert "random order" in strong.message


def test_ndcg_per_group_matches_the_metric():
    df = make_ranking_table(50, 10, seed=3)
    score = np.random.default_rng(0).integers(0, 4, len(df)).astype(float)  # with ties
    codes = ranking.group_codes(df["query"])
    ours = ranking.ndcg_lift(df["grade"].to_numpy(), score, codes)["ndcg"]
    theirs = compute("ranking", df["grade"], score, names=["ndcg"], groups=df["query"].to_numpy())
    assert ours == pytest.approx(theirs["ndcg"], abs=1e-12)
    perfect = ranking.perfect_order_share(df["grade"].to_numpy(), df["grade"].to_numpy(), codes)
    assert perfect == (1.0, 50)


def test_time_split_of_a_ranking_keeps_groups_whole(tmp_path, table):
    df = table.copy()
    df["day"] = df["day"] + np.random.default_rng(0).integers(0, 5, len(df))
    report = run(tmp_path, df, time="day")
    assert report.passed, [a.message for a in report.anomalies if a.blocking]
    split = report.split
    assert split["method"] == "time" and split["time"]["by"] == "group start"
    assert sum(split["group"]["groups"].values()) == 200
