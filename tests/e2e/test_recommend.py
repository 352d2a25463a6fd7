"""A recommender funnel end to end, as a user runs it: validate and train with the CLI on
interactions with a known structure (users and items in clusters), every user's list in
batch, the same lists from a real server, feedback joined to the recommended positions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from server import Client, ServerProcess
from test_cli_data import mlsd

from mlsd.predlog.reader import labelled
from mlsd.workspace import Workspace

SPEC = """\
name: recs
problem:
  task: ranking
  id: user
  target: item
  time: ts
metrics:
  online: [ctr]               # a click on a recommended item; silence counts as 0
architecture:
  kind: funnel
  generators: [popularity, recent, itemknn, ease, als]
  candidates: 30
  filters: {rules: ["year >= 1985"]}
data:
  source: interactions.csv
  items: items.csv
  split: {valid: 0.15, test: 0.15}
rollout:
  strategy: canary
  canary: {steps: [50, 100], min_requests: 60, min_duration: 0s}
  shadow: {min_requests: 60, min_duration: 0s}
"""
K = 10


def clustered(users=240, items=150, clusters=4, like=0.3, stray=0.01, seed=5):
    """Users and items in clusters: a user takes items of their own cluster with
    probability ``like``, any other with ``stray``."""
    rng = np.random.default_rng(seed)
    user_cluster = rng.integers(0, clusters, users)
    item_cluster = rng.integers(0, clusters, items)
    p = np.where(user_cluster[:, None] == item_cluster[None, :], like, stray)
    u, i = np.nonzero(rng.random((users, items)) < p)
    frame = pd.DataFrame({"user": [f"u{x}" for x in u], "item": [f"m{x}" for x in i]})
    frame["ts"] = rng.permutation(len(frame))
    catalogue = pd.DataFrame({"item": [f"m{x}" for x in range(items)]})
    catalogue["year"] = 1980 + np.arange(items) % 20  # 1980-1984: a quarter, banned by the rule
    return (
        frame,
        catalogue,
        dict(zip(catalogue["item"], item_cluster, strict=True)),
        {f"u{x}": c for x, c in enumerate(user_cluster)},
    )


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recs")
    frame, catalogue, item_cluster, user_cluster = clustered()
    frame.to_csv(folder / "interactions.csv", index=False)
    catalogue.to_csv(folder / "items.csv", index=False)
    (folder / "system.yaml").write_text(SPEC)
    validated = mlsd("validate", "--json", cwd=folder)
    assert validated.returncode == 0, validated.stderr
    trained = mlsd("train", "--json", cwd=folder)
    assert trained.returncode == 0, trained.stderr + trained.stdout
    return {
        "folder": folder,
        "frame": frame,
        "banned": set(catalogue.loc[catalogue["year"] < 1985, "item"]),
        "item_cluster": item_cluster,
        "user_cluster": user_cluster,
        "validation": json.loads(validated.stdout),
        "result": json.loads(trained.stdout),
    }


def test_validation_reports_the_interactions(system):
    facts = system["validation"]["facts"]
    assert facts["interactions"] == len(system["frame"]) and facts["users"] == 240
    assert system["validation"]["passed"]


def test_training_measures_every_stage_and_the_gate_keeps_the_best_on_validation(system):
    result = system["result"]
    board = {e["name"]: e for e in result["leaderboard"]}
    assert set(board) == {"popularity", "recent", "itemknn", "ease", "als", "funnel"}
    metric = result["primary_metric"]
    assert metric == "ndcg@10"
    best = max(board, key=lambda n: board[n]["valid"][metric])
    assert result["chosen"] == best and result["registered"] and result["model_version"] == 1
    for entry in board.values():
        test = entry["test"]
        for name in ("ndcg@10", "recall@10", "precision@10", "mrr@10", "map@10", "hit_rate@10"):
            assert 0 <= test[name] <= 1
        assert 0 < test["coverage@10"] <= 1 and test["novelty@10"] > 0
        assert len(entry["segments"]) == 3
    # the clusters are there to be found: every learnt generator far above popularity (items
    # of a cluster are alike, so no list can do much better than ~0.2 here)
    for name in ("itemknn", "ease", "als", "funnel"):
        assert board[name]["test"]["ndcg@10"] > 3 * board["popularity"]["test"]["ndcg@10"]
    # popularity's lists are the same for everyone: its coverage is the lowest
    assert board["popularity"]["test"]["coverage@10"] < board["ease"]["test"]["coverage@10"]
    recall = result["stages"]["candidate_recall"]
    assert recall["union"] >= max(v for n, v in recall.items() if n != "union") - 1e-12
    assert set(result["stages"]["tuning"]) == {"popularity", "recent", "itemknn", "ease", "als"}
    # the chosen one again with the rule applied, as it serves: with a quarter of the
    # movies banned, the held-out ones among them can no longer be found
    served = result["stages"]["served"]
    assert served["name"] == result["chosen"] and served["rules"] == ["year >= 1985"]
    assert 0 < served["test"]["ndcg@10"] <= board[result["chosen"]]["test"]["ndcg@10"] + 0.02


def test_the_report_draws_the_funnel_and_renders(system):
    from browser import render, require_chromium

    page = Path(system["result"]["report"])
    text = page.read_text()
    assert "The funnel, stage by stage" in text and text.count("<svg") >= 3
    recall = system["result"]["stages"]["candidate_recall"]
    assert f"recall@30 {recall['union']:.3f}" in text  # the union's box
    require_chromium()
    rendered = render(page)
    assert rendered.console == [] and "Evaluation of recs" in rendered.dom


def test_batch_lists_respect_history_rules_and_the_clusters(system):
    folder = system["folder"]
    done = mlsd("recommend", "--output", "recs.parquet", "--json", cwd=folder)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    recs = pq.read_table(folder / "recs.parquet").to_pandas()
    assert out["users"] == 240 and out["rows"] == len(recs) == 240 * K
    assert recs.groupby("user")["rank"].apply(list).map(lambda r: r == list(range(1, K + 1))).all()
    seen = set(zip(system["frame"]["user"], system["frame"]["item"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"], strict=True))
    assert not set(recs["item"]) & system["banned"]
    same = recs["item"].map(system["item_cluster"]) == recs["user"].map(system["user_cluster"])
    assert same.mean() > 0.8, same.mean()  # a user's own cluster, not just what is popular
    # a file of users: one unknown (cold start: popularity), one known
    pd.DataFrame({"user": ["u3", "stranger"]}).to_csv(folder / "who.csv", index=False)
    done = mlsd("recommend", "--users", "who.csv", "--k", "3", "--output", "some.csv", cwd=folder)
    assert done.returncode == 0, done.stderr
    some = pd.read_csv(folder / "some.csv")
    assert list(some["user"]) == ["u3"] * 3 + ["stranger"] * 3
    assert set(some.loc[some["user"] == "stranger", "stage"]) == {"popularity"}
    assert list(some.loc[some["user"] == "u3", "item"]) == list(
        recs.loc[recs["user"] == "u3", "item"][:3]
    )
    refused = mlsd("predict", "--input", "interactions.csv", "--output", "x.csv", cwd=folder)
    assert refused.returncode == 2 and "mlsd recommend" in refused.stderr


def test_ray_writes_the_same_lists_as_the_local_engine(system):
    pytest.importorskip("ray")
    folder = system["folder"]
    # the same system and workspace, its engine a small local cluster
    spec = (folder / "system.yaml").read_text()
    (folder / "on-ray.yaml").write_text(spec + "engine: {num_cpus: 2, object_store_mb: 100}\n")
    local = mlsd("recommend", "--output", "here.parquet", "--json", cwd=folder)
    assert local.returncode == 0, local.stderr
    remote = mlsd(
        "recommend", "-c", "on-ray.yaml", "--engine", "ray", "--output", "there.parquet",
        "--json", cwd=folder,
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    here, there = json.loads(local.stdout), json.loads(remote.stdout)
    assert {k: there[k] for k in ("users", "rows", "cold_start", "model_version")} == {
        k: here[k] for k in ("users", "rows", "cold_start", "model_version")
    }
    assert pq.read_table(folder / "there.parquet").equals(pq.read_table(folder / "here.parquet"))


def test_the_server_answers_the_batch_lists_and_feedback_joins_to_positions(system):
    folder = system["folder"]
    batch = pq.read_table(folder / "recs.parquet").to_pandas()
    server = ServerProcess(folder)
    try:
        client = Client(server.port)
        status, answer, headers = client.call("POST", "/v1/recommend", {"user": "u7", "k": K})
        assert status == 200, answer
        assert [i["item"] for i in answer["items"]] == list(
            batch.loc[batch["user"] == "u7", "item"]
        )
        assert answer["model_version"] == "1" and not answer["cold_start"]
        assert {i["stage"] for i in answer["items"]} <= {"popularity", "itemknn", "ease", "als"}
        first = answer["items"][0]["item"]
        status, again, _ = client.call(
            "POST", "/v1/recommend", {"user": "u7", "k": 3, "exclude": [first]}
        )
        assert status == 200 and first not in [i["item"] for i in again["items"]]
        status, cold, _ = client.call("POST", "/v1/recommend", {"user": "new-user"})
        assert status == 200 and cold["cold_start"] and len(cold["items"]) == K
        assert {i["stage"] for i in cold["items"]} == {"popularity"}
        status, bad, _ = client.call("POST", "/v1/recommend", {"user": [1], "k": 0})
        assert status == 422
        assert [d["field"] for d in bad["error"]["details"]] == ["user", "k"]
        status, bad, _ = client.call("POST", "/v1/predict", {"instances": [{"user": "u1"}]})
        assert status == 409 and "/v1/recommend" in bad["error"]["message"]
        status, got, _ = client.call(
            "POST",
            "/v1/feedback",
            {"request_id": headers["x-request-id"], "instance": 2, "label": 1},
        )
        assert status == 200 and got["recorded"] == 1
    finally:
        server.stop()
    rows = labelled(Workspace(folder / ".mlsd", "recs")).to_pandas()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["user"] == "u7" and row["item"] == answer["items"][2]["item"]
    assert row["position"] == 3 and row["group"] == "u7" and row["true_label"] == 1


def test_monitor_reports_online_ctr_hit_rate_coverage_and_popularity(system):
    folder = system["folder"]
    done = mlsd("monitor", "--json", cwd=folder)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    [model] = report["models"]
    [window] = model["windows"]
    # three requests of the server test: u7 (10 items), u7 (3), a new user (10)
    assert window["requests"] == 3 and window["items"] == 23 and window["users"] == 2
    assert window["ctr@10"] == pytest.approx(1 / 23) and window["hit_rate@10"] == pytest.approx(
        1 / 3
    )
    assert window["cold_start"] == pytest.approx(10 / 23)
    assert 0 < window["coverage@10"] <= 20 / 150
    assert window["popularity@10"] > 0 and "popularity@10" in model["offline"]
    one = json.loads(mlsd("monitor", "--model", "1", "--json", cwd=folder).stdout)
    assert one["n_predictions"] == 23
    other = mlsd("monitor", "--model", "champion", "--window", "1h", cwd=folder)
    assert other.returncode == 0 and "version 1 (" in other.stdout
    text = mlsd("monitor", cwd=folder)
    assert "ctr@10 0.043" in text.stdout and "hit rate 0.333" in text.stdout, text.stdout


@pytest.mark.timeout(240)
def test_the_recommend_contract_holds_under_schemathesis(system):
    from test_openapi import run_schemathesis

    server = ServerProcess(system["folder"])
    try:  # every example, boundary and fuzzed body: 2xx or a documented 4xx, never a 5xx
        assert run_schemathesis(server.port, only=["/v1/recommend"]) == {"POST /v1/recommend"}
    finally:
        server.stop()


def test_a_canary_routes_users_and_judges_the_challenger_on_clicks(system):
    folder = system["folder"]
    assert mlsd("train", cwd=folder).returncode == 0  # version 2, the challenger
    started = mlsd("rollout", "start", "--model", "challenger", "--json", cwd=folder)
    assert started.returncode == 0, started.stderr
    rng = np.random.default_rng(3)
    click = {"1": 0.05, "2": 0.25}  # per recommended item: users click the challenger's more
    server = ServerProcess(folder)
    try:
        client = Client(server.port)
        arms: dict[str, set] = {}
        for n in range(240):
            user = f"u{n}"
            for _ in range(2):  # sticky: a user meets one arm for the whole experiment
                status, answer, headers = client.call("POST", "/v1/recommend", {"user": user})
                assert status == 200, answer
                arms.setdefault(user, set()).add(answer["model_version"])
            for position in np.flatnonzero(rng.random(10) < click[answer["model_version"]]):
                feedback = {
                    "request_id": headers["x-request-id"],
                    "instance": int(position),
                    "label": 1,
                }
                assert client.call("POST", "/v1/feedback", feedback)[0] == 200
    finally:
        server.stop()
    assert all(len(v) == 1 for v in arms.values())
    shares = [sum(v == {a} for v in arms.values()) / 240 for a in ("1", "2")]
    assert min(shares) > 0.4  # a 50% step
    step = json.loads(mlsd("rollout", "step", "--json", cwd=folder).stdout)
    decision = step["last_decision"]
    assert decision["action"] == "advance", decision
    ctr = decision["evidence"]["non_inferiority"]
    assert ctr["metric"] == "ctr" and ctr["status"] == "pass", ctr
    # clicks on the second answer's items only: per user 0.25 / 2 against 0.05 / 2, a
    # difference of 0.1, which the items left without feedback (counted 0) make visible
    assert 0.07 < ctr["difference"] < 0.13 and ctr["ci_low"] > 0, ctr
    assert mlsd("rollout", "abort", "--reason", "test", cwd=folder).returncode == 0


def test_a_shadow_recommends_for_the_same_requests_and_is_judged_list_by_list(system):
    """Version 2 shadows the champion: users get only the champion's lists; the shadow's
    lists are logged beside them, compared by overlap, and the clicks on the champion's
    items it also listed give its paired ctr."""
    from mlsd.predlog.reader import read_shadow

    folder = system["folder"]
    started = mlsd("rollout", "start", "--strategy", "shadow", "--model", "2", cwd=folder)
    assert started.returncode == 0, started.stderr
    rng = np.random.default_rng(5)
    server = ServerProcess(folder)
    try:
        client = Client(server.port)
        answered = {}
        for n in range(100):
            status, answer, headers = client.call(
                "POST", "/v1/recommend", {"user": f"u{n}", "k": 8, "exclude": ["m1"]}
            )
            assert status == 200 and answer["model_version"] == "1", answer
            answered[headers["x-request-id"]] = [i["item"] for i in answer["items"]]
            for position in np.flatnonzero(rng.random(8) < 0.2):
                feedback = {"request_id": headers["x-request-id"], "instance": int(position)}
                assert client.call("POST", "/v1/feedback", {**feedback, "label": 1})[0] == 200
    finally:
        server.stop()  # the shadow process scores what is queued before it exits
    rows = read_shadow(Workspace(folder / ".mlsd", "recs")).to_pandas()
    assert set(rows["model_version"]) == {"2"} and set(rows["request_id"]) == set(answered)
    per_request = rows.groupby("request_id")["item"].apply(list)
    assert all(len(items) == 8 and "m1" not in items for items in per_request)
    assert rows["stage"].notna().all() and rows["score"].notna().all()
    step = json.loads(mlsd("rollout", "step", "--json", cwd=folder).stdout)
    evidence = step["last_decision"]["evidence"]
    overlap = np.mean([len(set(answered[r]) & set(items)) / 8 for r, items in per_request.items()])
    assert evidence["pairs"] == 100 and evidence["agreement"] == pytest.approx(overlap)
    assert evidence["latency_ms"]["shadow"]["p50"] > 0
    paired = evidence["paired"]
    assert paired["metric"] == "ctr" and paired["requests"] == 100
    if overlap == 1:  # two fits of the same data list the same items: a tie, no evidence
        assert paired["mean"] == 0 and step["last_decision"]["action"] == "hold", evidence
    if step["last_decision"]["action"] == "hold":  # still running: end it for the next test
        assert mlsd("rollout", "abort", "--reason", "test", cwd=folder).returncode == 0


def test_retrain_learns_new_interactions_and_beats_the_champion_on_them(system):
    folder = system["folder"]
    frame = system["frame"]
    rng = np.random.default_rng(11)
    by_cluster: dict[int, list[str]] = {}
    for item, c in system["item_cluster"].items():
        by_cluster.setdefault(int(c), []).append(item)
    have = frame.groupby("user")["item"].apply(set)
    rows = []
    start = int(time.time()) + 1  # after everything, the clicks of the log included
    for n, user in enumerate(sorted(have.index)[:120]):  # 120 users take 6 new movies each
        fresh = [i for i in by_cluster[int(system["user_cluster"][user])] if i not in have[user]]
        for item in rng.choice(fresh, size=min(6, len(fresh)), replace=False):
            rows.append({"user": user, "item": item, "ts": start + n})
    pd.concat([frame, pd.DataFrame(rows)]).to_csv(folder / "interactions.csv", index=False)
    done = mlsd("retrain", "--json", cwd=folder)
    assert done.stdout, done.stderr
    result = json.loads(done.stdout)
    assert result["trained"] and result["challenger_version"] == 3, done.stderr
    cmp = result["comparison"]
    # the users' newest interactions are held out (a time split): new to the champion
    assert cmp["n_holdout"] >= 100 and cmp["metric"] == "ndcg@10"
    assert cmp["challenger"] > cmp["champion"] and result["promoted"], result
    # every click fed back: the server test's and the canary's (counted, never judged on)
    assert result["data"]["counts"]["train_rows_from_log"] > 100
    assert done.returncode == 0
    models = json.loads(mlsd("models", "--json", cwd=folder).stdout)["versions"]
    assert {v["version"]: v["aliases"] for v in models}[3] == ["champion"]
