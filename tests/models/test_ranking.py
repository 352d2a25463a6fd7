"""`task: ranking` through training, batch scoring, monitoring and retraining, on a generated
query-document table whose true order is known (the relevance grades come from a hidden
score the features explain)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import ndcg_score

from mlsd.spec import parse_spec
from mlsd.workspace import Workspace

SPEC = """\
name: rank
problem: {task: ranking, target: grade, group: query}
metrics: {primary: ndcg@10}
data: {source: docs.csv}
models:
  candidates: [linear, lightgbm]
  tuning: {budget_s: 0}
  baselines: {heuristic: "order by views desc"}
retraining: {min_new_labels: 100, holdout: {share: 0.5}}
"""


def documents(n_groups: int, items: int, seed: int, start: int = 0) -> pd.DataFrame:
    """Queries with ``items`` documents each; grade 0-4 by the quintile of a hidden score
    within the query (a non-linear function of the features plus noise). ``x1`` carries a
    shift per query that the grades ignore (relevance is relative to the list): a model
    regressing the grade row by row mistakes it for noise, one ordering lists does not."""
    rng = np.random.default_rng(seed)
    n = n_groups * items
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    kind = rng.choice(["news", "blog", "shop"], size=n)
    hidden = x1 + 0.7 * x2**2 + 0.8 * (kind == "news") + rng.normal(scale=0.4, size=n)
    frame = pd.DataFrame(
        {
            "query": np.repeat(np.arange(start, start + n_groups), items),
            "x1": x1 + np.repeat(rng.normal(scale=2.0, size=n_groups), items),
            "x2": x2,
            "kind": kind,
            "views": np.round(np.exp(0.6 * x1 + rng.normal(size=n)) * 100),  # weak signal
        }
    )
    frame["grade"] = (
        pd.Series(hidden).groupby(frame["query"]).rank(method="first", pct=True).mul(5).sub(1e-9)
    ).astype(int)
    return frame


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    from mlsd.models.train import train

    folder = tmp_path_factory.mktemp("ranking")
    documents(150, 15, seed=0).to_csv(folder / "docs.csv", index=False)
    (folder / "system.yaml").write_text(SPEC)
    spec = parse_spec(SPEC)
    spec._path = folder / "system.yaml"
    ws = Workspace(folder / ".mlsd", "rank")
    result = train(spec, ws, progress=False)
    return {"folder": folder, "spec": spec, "ws": ws, "result": result}


def test_the_listwise_ranker_beats_random_popularity_and_pointwise_and_is_registered(system):
    result = system["result"]
    assert result.registered, result.reasons
    test = {e.name: e.scores["test"]["ndcg@10"] for e in result.leaderboard if e.scores["test"]}
    chosen = result.entry(result.chosen)
    assert chosen.family == "lightgbm" and chosen.details["params"]["objective"] == "lambdarank"
    assert test[result.chosen] > test["baseline:heuristic"] + 0.1
    assert test["baseline:heuristic"] > test["baseline:random"]  # views is a weak signal
    # relevance is relative to the list: ordering lists beats regressing rows (0.94 vs 0.89)
    assert test[result.chosen] > test["baseline:pointwise"] + 0.03
    # the random order is each metric's expected value over ties: every split scores alike
    random = result.entry("baseline:random").scores
    assert random["train"]["ndcg@10"] == pytest.approx(random["test"]["ndcg@10"], abs=0.02)
    assert result.entry("baseline:heuristic").details["rule"] == "order by views desc"
    assert set(chosen.scores["test"]) >= {"ndcg@5", "ndcg@10", "mrr", "map", "precision@5"}


def test_no_query_is_in_two_splits_and_the_test_score_matches_sklearn(system):
    from mlsd.models import package as packages

    spec, ws = system["spec"], system["ws"]
    frame = pd.read_csv(system["folder"] / "docs.csv")
    package = packages.load(system["result"].package)
    scores = package.predict_matrix(
        {c: frame[c].tolist() for c in package.featurizer.input_columns}
    )
    # the same ndcg@10 as scikit-learn's, query by query, on the whole table
    ours = []
    for _, rows in frame.groupby("query").indices.items():
        ours.append(ndcg_score([frame["grade"].to_numpy()[rows]], [scores[rows]], k=10))
    from mlsd.evaluation.metrics import compute

    assert compute("ranking", frame["grade"], scores, names=["ndcg@10"], groups=frame["query"])[
        "ndcg@10"
    ] == pytest.approx(np.mean(ours))
    split = (ws.reports / "validation.json").read_text()
    assert spec.split_method == "group" and "group" in split


def test_evaluate_judges_new_labelled_queries_per_query(system, tmp_path):
    from mlsd.evaluation.evaluate import evaluate

    frame = documents(40, 12, seed=7, start=500)
    frame.sample(frac=1.0, random_state=2).to_csv(tmp_path / "new.csv", index=False)
    out = evaluate(system["spec"], "champion", tmp_path / "new.csv", system["ws"], report=False)
    from mlsd.models import package as packages

    package = packages.load(system["result"].package)
    pred = package.predict_matrix({c: frame[c].tolist() for c in package.featurizer.input_columns})
    per_query = [
        ndcg_score([frame["grade"].to_numpy()[r]], [pred[r]], k=10)
        for r in frame.groupby("query").indices.values()
    ]
    assert out["metrics"]["ndcg@10"] == pytest.approx(np.mean(per_query))
    frame.drop(columns=["query"]).to_csv(tmp_path / "flat.csv", index=False)
    with pytest.raises(Exception, match="no 'query' column"):
        evaluate(system["spec"], "champion", tmp_path / "flat.csv", system["ws"], report=False)


def test_batch_scoring_adds_each_rows_rank_within_its_query(system, tmp_path):
    from mlsd.serving.batch import predict_batch

    frame = documents(4, 6, seed=5, start=900).drop(columns=["grade"])
    frame = frame.sample(frac=1.0, random_state=1)  # a query's rows need not be together
    frame.to_parquet(tmp_path / "in.parquet")
    summary = predict_batch(
        system["spec"], tmp_path / "in.parquet", tmp_path / "out.parquet", workspace=system["ws"]
    )
    assert summary["scored"] == 24
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    assert list(out.columns[:2]) == ["query", "score"] and "rank" in out
    for _, rows in out.groupby("query"):
        expected = rows["score"].rank(ascending=False, method="first").astype(int)
        assert list(rows["rank"]) == list(expected)
        assert sorted(rows["rank"]) == list(range(1, 7))
    bad = frame.drop(columns=["query"])
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(Exception, match="no column 'query'"):
        predict_batch(
            system["spec"], tmp_path / "bad.parquet", tmp_path / "o.parquet", workspace=system["ws"]
        )


def test_clicks_fed_back_become_realised_ranking_metrics_and_a_retrain_holds_out_queries(system):
    """Serve new queries through the log (one request per query, as /v1/predict logs it),
    click the top-graded documents, then monitor and retrain."""
    from mlsd.loop.retrain import retrain
    from mlsd.models import package as packages
    from mlsd.monitoring.monitor import monitor
    from mlsd.predlog.writer import PredictionLog

    spec, ws = system["spec"], system["ws"]
    package = packages.load(system["result"].package)
    served = documents(60, 15, seed=9, start=5000)
    t = time.time()
    with PredictionLog(ws) as log:
        for q, rows in served.groupby("query"):
            items = rows.drop(columns=["grade"]).to_dict("records")
            scores = package.predict_matrix(
                {c: [i[c] for i in items] for c in package.featurizer.input_columns}
            )
            rid = f"q{q}"
            log.prediction(
                request_id=rid,
                model_version=str(system["result"].model_version),
                inputs=items,
                outputs=[{"score": float(s)} for s in scores],
                latency_ms=1.0,
                ts=t,
            )
            for i, grade in enumerate(rows["grade"]):
                if grade == 4:  # a click on each top-graded document
                    log.feedback(request_id=rid, instance=i, label=1, ts=t + 1)
    found = monitor(spec, ws, now=t + 2)
    window = found.report["models"][0]["windows"][-1]
    real = window["performance"]["realised"]
    assert real["groups"] == 60 and real["n"] == 60 * 15  # unclicked items count as 0
    assert real["primary"]["metric"] == "ndcg@10" and real["primary"]["value"] > 0.6
    assert 0 < real["metrics"]["precision@1"] <= 1  # CTR@1 with clicks
    assert window["performance"]["label_drift"] is None

    outcome = retrain(spec, ws, now=t + 3, progress=False)
    assert outcome.trained, outcome.reasons
    holdout = outcome.data["holdout"]
    assert outcome.comparison["n_holdout"] == holdout["rows"] > 0
    assert holdout["rows"] % 15 == 0  # whole queries
    assert (
        outcome.comparison["ci_low"]
        <= outcome.comparison["difference"]
        <= outcome.comparison["ci_high"]
    )
