"""The ranking evaluation: metrics at k, per-group values and their distribution, the most
misranked groups (by hand and against scikit-learn), and the report a ranking model gets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from mlsd.evaluation import ranking
from mlsd.evaluation.metrics import compute, per_group_values

# group "a": ranked b1 (rel 2), b2 (0), b3 (1), b0 (3); group "b": the relevant item last;
# group "c": nothing relevant (left out of every mean)
Y = np.array([3, 2, 0, 1, 0, 0, 1, 0, 0], dtype=float)
P = np.array([0.1, 0.9, 0.5, 0.3, 3.0, 2.0, 1.0, 0.2, 0.4])
G = np.array(["a"] * 4 + ["b"] * 3 + ["c"] * 2)
L3, L4, L5 = math.log2(3), 2.0, math.log2(5)
NDCG_A = (2 + 0 / L3 + 1 / L4 + 3 / L5) / (3 + 2 / L3 + 1 / L4)
NDCG3_A = (2 + 1 / L4) / (3 + 2 / L3 + 1 / L4)
AP_A = (1 / 1 + 2 / 3 + 3 / 4) / 3


def test_per_group_values_by_hand_and_means_match_compute():
    ids, ndcg = per_group_values("ndcg", Y, P, G)
    assert ids.tolist() == ["a", "b", "c"]
    assert ndcg[0] == pytest.approx(NDCG_A) and ndcg[1] == pytest.approx(0.5)
    assert np.isnan(ndcg[2])
    _, mrr = per_group_values("mrr", Y, P, G)
    assert mrr[:2].tolist() == pytest.approx([1.0, 1 / 3])
    _, ap = per_group_values("map", Y, P, G)
    assert ap[:2].tolist() == pytest.approx([AP_A, 1 / 3])
    _, p3 = per_group_values("precision@3", Y, P, G)
    assert p3[:2].tolist() == pytest.approx([2 / 3, 1 / 3])

    rng = np.random.default_rng(0)
    g = rng.integers(0, 40, 1500)
    y = rng.integers(0, 4, 1500) * (rng.random(1500) < 0.4)
    p = rng.normal(size=1500).round(1)  # many ties
    for name in ("ndcg@10", "ndcg", "precision@5", "recall@20", "map@10", "map", "mrr"):
        _, values = per_group_values(name, y, p, g)
        expected = compute("ranking", y, p, names=[name], groups=g)[name]
        assert np.mean(values[~np.isnan(values)]) == expected  # exactly, not approximately
    ids, values = per_group_values("ndcg@3", y, p, g.astype(str).astype(object))
    assert len(ids) == len(values) == 40
    ids, values = per_group_values("ndcg", Y[:4], P[:4])  # no groups: one query
    assert ids.tolist() == [0] and values[0] == pytest.approx(NDCG_A)


@pytest.mark.parametrize("seed", [0, 1])
def test_per_group_ndcg_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 25, 30)
    g = np.repeat(np.arange(30), sizes)
    y = rng.integers(0, 4, len(g)).astype(float)
    p = rng.integers(0, 5, len(g)).astype(float)  # ties averaged, as sklearn does
    for k in (1, 3, 10, None):
        name = "ndcg" if k is None else f"ndcg@{k}"
        table = ranking.group_table(y, p, g, name)
        for gid, value in zip(table["group"], table["value"], strict=True):
            rows = g == gid
            if y[rows].sum() == 0:
                assert np.isnan(value)
                continue
            expected = ndcg_score(y[rows][None], p[rows][None], k=k)
            assert value == pytest.approx(expected, abs=1e-12)


def test_metric_at_k_by_hand():
    out = ranking.metric_at_k(Y, P, G, ks=(1, 3))
    assert out["ks"] == [1, 3]
    at1, at3 = out["rows"]
    assert at1 == {
        "k": 1,
        "ndcg": pytest.approx((2 / 3 + 0) / 2),
        "precision": 0.5,
        "recall": pytest.approx((1 / 3 + 0) / 2),
        "map": pytest.approx(0.5),
    }
    assert at3["ndcg"] == pytest.approx((NDCG3_A + 0.5) / 2)
    assert at3["precision"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert at3["recall"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["ndcg"] == pytest.approx((NDCG_A + 0.5) / 2)
    assert out["map"] == pytest.approx((AP_A + 1 / 3) / 2)
    assert out["mrr"] == pytest.approx((1 + 1 / 3) / 2)
    default = ranking.metric_at_k(Y, P, G)
    assert default["ks"] == [1, 3, 5, 10, 20] and len(default["rows"]) == 5
    nothing = ranking.metric_at_k(np.zeros(4), P[:4], G[:4])
    assert nothing["mrr"] is None and nothing["rows"][0]["ndcg"] is None


def test_per_group_distribution_and_lengths():
    out = ranking.per_group(Y, P, G, "ndcg")
    assert out["metric"] == "ndcg" and out["groups"] == 3 and out["scored_groups"] == 2
    assert out["groups_without_relevant"] == 1
    assert out["mean"] == pytest.approx(compute("ranking", Y, P, names=["ndcg"], groups=G)["ndcg"])
    assert sum(out["histogram"]["counts"]) == 2 and len(out["histogram"]["edges"]) == 11
    assert out["histogram"]["counts"][5] == 1  # 0.5 falls in [0.5, 0.6)
    assert out["quantiles"]["0.0"] == pytest.approx(0.5)
    assert out["quantiles"]["1.0"] == pytest.approx(NDCG_A)
    assert out["share_zero"] == 0.0 and out["share_perfect"] == 0.0
    lengths = out["list_length"]
    assert (lengths["min"], lengths["max"], lengths["mean"]) == (2, 4, 3.0)
    assert lengths["shorter_than_k"] is None
    assert ranking.per_group(Y, P, G, "ndcg@3")["list_length"]["shorter_than_k"] == pytest.approx(
        1 / 3
    )


def test_most_misranked_lists_the_worst_groups_with_their_items():
    frame = pd.DataFrame({"doc": [f"d{i}" for i in range(9)], "views": np.arange(9) * 10})
    worst = ranking.most_misranked(frame, Y, P, G, "ndcg", n=5, items=3)
    assert [w["group"] for w in worst] == ["b", "a"]  # "c" has nothing relevant
    b = worst[0]
    assert b["value"] == pytest.approx(0.5) and b["items"] == 3 and b["relevant"] == 1
    assert [r["row"] for r in b["ranked"]] == [4, 5, 6]
    assert [r["position"] for r in b["ranked"]] == [1, 2, 3]
    assert [r["ideal_position"] for r in b["ranked"]] == [2, 2, 1]
    assert b["ranked"][2] == {
        "position": 3,
        "row": 6,
        "score": 1.0,
        "relevance": 1.0,
        "ideal_position": 1,
        "features": {"doc": "d6", "views": 60},
    }
    a = worst[1]
    assert len(a["ranked"]) == 3  # items caps the list
    assert [r["row"] for r in a["ranked"]] == [1, 2, 3]
    assert [r["ideal_position"] for r in a["ranked"]] == [2, 4, 3]
    one = ranking.most_misranked(frame, Y, P, G, "ndcg", n=1, columns=["views"])
    assert len(one) == 1 and set(one[0]["ranked"][0]["features"]) == {"views"}
    with pytest.raises(ValueError, match="same rows"):
        ranking.most_misranked(frame.iloc[:3], Y, P, G)


def _queries(n_groups: int, items: int, seed: int) -> pd.DataFrame:
    """Queries whose grade follows ``x`` (quintile within the query); the model is told the
    truth except in country "xx", where it sees ``x`` upside down."""
    rng = np.random.default_rng(seed)
    n = n_groups * items
    query = np.repeat(np.arange(n_groups), items)
    country = np.repeat(rng.choice(["xx", "yy", "zz"], size=n_groups, p=[0.3, 0.4, 0.3]), items)
    x = rng.normal(size=n)
    frame = pd.DataFrame({"query": query, "country": country, "x": x, "noise": rng.normal(size=n)})
    frame["grade"] = (
        pd.Series(x).groupby(query).rank(method="first", pct=True).mul(4).sub(1e-9).astype(int)
    )
    return frame


def test_group_slices_find_the_country_ranked_badly():
    from mlsd.evaluation import slices

    frame = _queries(120, 8, seed=0)
    pred = np.where(frame["country"] == "xx", -frame["x"], frame["x"])
    out = slices.by_group(
        frame,
        frame["grade"].to_numpy(),
        pred,
        frame["query"].to_numpy(),
        metric="ndcg@5",
        columns=["x", "country", "noise"],
        spec_entries=["country", "country == 'yy'", "x"],
        min_support=10,
        seed=0,
    )
    assert out["unit"] == "groups" and out["group_columns"] == ["country"]
    assert out["groups"] == 120 and out["rows"] == len(frame)
    overall = compute("ranking", frame["grade"], pred, names=["ndcg@5"], groups=frame["query"])
    assert out["overall"] == pytest.approx(overall["ndcg@5"])
    worst = out["worst"][0]
    assert worst["slice"] == "country == 'xx'" and worst["significant"] and worst["gap"] < 0
    assert worst["ci_low"] <= worst["metric"] <= worst["ci_high"]
    assert worst["support"] == frame.groupby("query")["country"].first().eq("xx").sum()
    assert all(w["gap"] < 0 for w in out["worst"])
    spec = {s["slice"]: s for s in out["spec"]}
    assert set(spec) == {"country == 'xx'", "country == 'yy'", "country == 'zz'"}
    assert sum(s["support"] for s in out["spec"] if s["columns"] == ["country"]) == 120
    assert out["skipped"] == [{"slice": "x", "reason": "not one value per group"}]
    assert not spec["country == 'yy'"]["significant"]


SPEC = """\
name: rank
problem: {task: ranking, target: grade, group: query}
metrics: {primary: ndcg@5}
data: {source: docs.csv}
evaluation:
  slices: [country, "country == 'zz'", "x > 0"]
  min_support: 5
"""


def test_training_report_of_a_ranking_model(tmp_path):
    """for_training on a stand-in TrainingData (parts, ys, groups): metrics per group, the
    metric-at-k table against a random order, the per-group histogram, slices of groups by
    country, the most misranked groups, importance, no calibration nor threshold."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    from mlsd.evaluation import report as reports
    from mlsd.features import Featurizer
    from mlsd.models.base import FitData, TaskInfo
    from mlsd.models.candidates import Candidate
    from mlsd.models.leaderboard import Entry
    from mlsd.models.linear import LinearModel
    from mlsd.spec import parse_spec

    frame = _queries(150, 8, seed=1)
    frame["x"] = np.where(frame["country"] == "xx", -frame["x"], frame["x"])  # learned wrong
    parts = {
        "train": frame[frame["query"] < 90],
        "valid": frame[(frame["query"] >= 90) & (frame["query"] < 120)],
        "test": frame[frame["query"] >= 120],
    }
    parts = {k: v.reset_index(drop=True) for k, v in parts.items()}
    columns = {"x": "numeric", "country": "categorical", "noise": "numeric"}
    cols = {c: parts["train"][c].array for c in columns}
    fz = Featurizer(columns, encoding="onehot").fit(cols)
    task = TaskInfo("ranking")
    y = {k: v["grade"].to_numpy(dtype=float) for k, v in parts.items()}
    model = LinearModel(task, {}).fit(
        FitData(X=fz.transform(cols), y=y["train"], feature_names=fz.feature_names)
    )
    pred = model.predict(fz.transform({c: parts["test"][c].array for c in columns}))
    test_groups = parts["test"]["query"].to_numpy()
    scores = compute("ranking", y["test"], pred, groups=test_groups)
    entries = [
        Entry("baseline:random", "baseline", "random", {}, {"valid": {"ndcg@5": 0.4}}),
        Entry("linear", "candidate", "linear", {}, {"valid": {"ndcg@5": 0.7}, "test": scores}),
    ]
    entries[1].chosen = True
    spec = parse_spec(SPEC)
    result = SimpleNamespace(
        primary_metric="ndcg@5", snapshot="abc", leaderboard=entries, evaluation={}
    )
    data = SimpleNamespace(
        parts=parts,
        ys=y,
        columns=columns,
        task=task,
        classes=[],
        groups={k: v["query"].to_numpy() for k, v in parts.items()},
    )
    decisions = SimpleNamespace(threshold=None, calibration=None)  # ranking: neither
    files = reports.for_training(
        spec,
        SimpleNamespace(reports=tmp_path),
        result,
        Candidate(
            entries[1],
            model,
            fz,
            model.predict(fz.transform({c: parts["valid"][c].array for c in columns})),
        ),
        decisions,
        data,
        compare={"baseline:noise": parts["test"]["noise"].to_numpy()},
    )
    saved = json.loads(Path(files["json"]).read_text())
    assert set(saved) == set(reports.TOP_KEYS) | set(reports.GROUPED_KEYS)
    assert saved["metrics"] == pytest.approx(scores)  # per group, as the leaderboard scores
    assert saved["model"]["threshold"] is None and saved["calibration"] is None
    assert saved["decisions"]["applies"] is False
    assert "do not apply to ranking" in saved["decisions"]["text"]
    assert saved["learning_curve"]["verdict"] == "not_run"

    r = saved["ranking"]
    at_k = r["metric_at_k"]
    assert set(at_k) == {"linear", "baseline:noise", "random order"}
    row5 = next(x for x in at_k["linear"]["rows"] if x["k"] == 5)
    assert row5["ndcg"] == pytest.approx(scores["ndcg@5"])
    random5 = next(x for x in at_k["random order"]["rows"] if x["k"] == 5)
    assert random5["ndcg"] < row5["ndcg"]
    g = r["per_group"]
    assert g["metric"] == "ndcg@5" and g["scored_groups"] == 30
    assert g["mean"] == pytest.approx(scores["ndcg@5"]) and sum(g["histogram"]["counts"]) == 30
    worst = r["most_misranked"]
    assert len(worst) == 5 and [w["value"] for w in worst] == sorted(w["value"] for w in worst)
    assert worst[0]["value"] == pytest.approx(
        np.nanmin(per_group_values("ndcg@5", y["test"], pred, test_groups)[1])
    )
    assert all(len(w["ranked"]) == 8 for w in worst)
    assert parts["test"].loc[worst[0]["ranked"][0]["row"], "query"] == worst[0]["group"]
    assert saved["errors"]["rows"] == []

    s = saved["slices"]
    assert s["unit"] == "groups" and s["group_columns"] == ["country"]
    assert s["worst"][0]["slice"] == "country == 'xx'"
    assert [x["slice"] for x in s["skipped"]] == ["x > 0"]
    assert {x["slice"] for x in s["spec"]} >= {"country == 'zz'", "country == 'xx'"}
    imp = saved["importance"]
    assert imp["split"] == "valid" and imp["permutation"]["metric"] == "ndcg@5"
    assert imp["permutation"]["drop"][0]["feature"] in {"x", "country"}

    page = Path(files["html"]).read_text()
    assert "calibration and decision thresholds do not apply to ranking" in page
    assert "Most misranked groups" in page and "Metrics at k" in page
    assert page.count("<svg") >= 4


def test_report_compares_models_and_reads_groups_from_the_spec_column(tmp_path):
    """build() without groups on the rows takes them from problem.group (the mlsd evaluate
    path); other models' scores on the same rows join the metric-at-k table and chart."""
    import json
    from pathlib import Path

    from mlsd.evaluation import report as reports
    from mlsd.features import Featurizer
    from mlsd.models.base import FitData, TaskInfo
    from mlsd.models.linear import LinearModel
    from mlsd.spec import parse_spec

    frame = _queries(60, 6, seed=2)
    columns = {"x": "numeric", "noise": "numeric"}
    cols = {c: frame[c].array for c in columns}
    fz = Featurizer(columns, encoding="onehot").fit(cols)
    y = frame["grade"].to_numpy(dtype=float)
    model = LinearModel(TaskInfo("ranking"), {}).fit(
        FitData(X=fz.transform(cols), y=y, feature_names=fz.feature_names)
    )
    inputs = reports.ReportInputs(
        system="rank",
        subject=reports.Subject(
            name="linear",
            family="linear",
            task="ranking",
            predict=lambda c: model.predict(fz.transform(c)),
            model=model,
            featurizer=fz,
        ),
        primary="mrr",
        data=reports.Labelled(frame, y),
        split="data",
        source="new rows",
        columns=columns,
        spec=parse_spec(SPEC),
        compare={"by noise": frame["noise"].to_numpy()},
    )
    report, arrays = reports.build(inputs)
    files = reports.write(report, arrays, tmp_path)
    saved = json.loads(Path(files["json"]).read_text())
    groups = frame["query"].to_numpy()
    assert saved["metrics"]["mrr"] == pytest.approx(
        compute("ranking", y, arrays["pred"], names=["mrr"], groups=groups)["mrr"]
    )
    at_k = saved["ranking"]["metric_at_k"]
    assert list(report["ranking"]["metric_at_k"]) == ["linear", "by noise", "random order"]
    assert at_k["by noise"] == ranking.metric_at_k(y, frame["noise"], groups)
    assert at_k["linear"]["mrr"] > at_k["by noise"]["mrr"]
    assert saved["ranking"]["per_group"]["metric"] == "mrr"
    assert saved["ranking"]["per_group"]["groups"] == 60
    assert saved["importance"]["split"] == "data"  # no valid rows given
    assert saved["leaderboard"][0]["data"] == saved["metrics"]["mrr"]
    assert "by noise" in Path(files["html"]).read_text()

    from browser import find_chromium, render

    if find_chromium():  # the page opens in a real browser with nothing on its console
        rendered = render(Path(files["html"]))
        assert rendered.console == [], rendered.console
        assert "Most misranked groups" in rendered.dom


def test_permutation_importance_samples_whole_groups():
    from mlsd.evaluation import importance

    groups = np.repeat(np.arange(700), 5)  # 3,500 rows: more than PERMUTATION_ROWS
    rows = importance._sample_groups(groups, importance.PERMUTATION_ROWS, seed=0)
    assert 0 < len(rows) <= importance.PERMUTATION_ROWS and len(rows) % 5 == 0
    kept = np.unique(groups[rows])
    assert len(rows) == 5 * len(kept)  # every row of a drawn group
    assert (importance._sample_groups(groups[:50], 2000, 0) == np.arange(50)).all()
