"""`POST /v1/rank` through a real `mlsd serve` of a ranking model (LightGBM lambdarank):
the order is the one /v1/predict's scores give, top k, ties in request order, errors that
name the item and field, the log's group and position, feedback joined to ranked items,
routing by the group, and the V2 route answering per-row scores."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from server import ServerProcess
from test_cli_data import mlsd

from mlsd.models import aliases, routing
from mlsd.models.routing import Arm, RoutingTable
from mlsd.predlog.reader import labelled, read_predictions, read_shadow
from mlsd.workspace import Workspace

SYSTEM = "rk"
SPEC = (
    f"name: {SYSTEM}\n"
    "problem: {task: ranking, target: rel, group: query}\n"
    "metrics: {primary: ndcg@10}\n"
    "data: {source: d.csv}\n"
    "models: {candidates: [lightgbm]}\n"
    "serving: {poll_s: 0.1, log_flush_s: 0.2, max_instances: 100}\n"
)
FIELDS = ("x1", "x2", "cat", "views")


def write_table(path, groups: int = 100, size: int = 20) -> pd.DataFrame:
    """Queries of ``size`` items; relevance 0-4 by quintile of a hidden score within each.
    ``x1`` is shifted per query (relevance is relative to the list), so ordering lists beats
    the pointwise baseline."""
    rng = np.random.default_rng(0)
    n = groups * size
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n)
    views = np.round(np.exp(x1 * 0.5 + rng.normal(size=n)) * 100)
    hidden = x1 + 0.5 * x2**2 + (cat == "a") * 0.8 + rng.normal(scale=0.5, size=n)
    shift = np.repeat(rng.normal(scale=2.0, size=groups), size)
    frame = pd.DataFrame(
        {"query": np.repeat(np.arange(groups), size), "x1": x1 + shift, "x2": x2, "cat": cat}
    )
    frame["views"] = views
    frame["rel"] = (
        pd.Series(hidden).groupby(frame["query"]).rank(method="first").sub(1) * 5 // size
    ).astype(int)
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rank")
    frame = write_table(folder / "d.csv")
    (folder / "system.yaml").write_text(SPEC)
    run = mlsd("train", cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    items = [
        {"x1": r.x1, "x2": r.x2, "cat": r.cat, "views": r.views}
        for r in frame[frame["query"] == 3].itertuples()
    ]
    return {"folder": folder, "items": items}


@pytest.fixture(scope="module")
def server(system):
    proc = ServerProcess(system["folder"])
    yield proc
    proc.stop()


def workspace(system) -> Workspace:
    return Workspace(system["folder"] / ".mlsd", SYSTEM)


def rank(server, body: dict, rid: str | None = None) -> tuple[int, dict]:
    status, answer, _ = server.client.call(
        "POST", "/v1/rank", body, {"X-Request-ID": rid} if rid else None
    )
    return status, answer


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return found


def test_the_ranking_is_predicts_scores_in_descending_order(server, system):
    items = system["items"]
    assert len(items) == 20
    status, scored, _ = server.client.call("POST", "/v1/predict", {"instances": items})
    assert status == 200, scored
    scores = [p["score"] for p in scored["predictions"]]
    status, answer = rank(server, {"group": 3, "items": items}, "rank-1")
    assert status == 200, answer
    assert set(answer) == {"model_version", "request_id", "group", "ranking"}
    assert (answer["model_version"], answer["request_id"], answer["group"]) == ("1", "rank-1", 3)
    ranking = answer["ranking"]
    assert [r["position"] for r in ranking] == list(range(1, 21))
    assert sorted(r["item"] for r in ranking) == list(range(20))
    assert [r["item"] for r in ranking] == sorted(range(20), key=lambda i: -scores[i])
    assert [r["score"] for r in ranking] == pytest.approx([scores[r["item"]] for r in ranking])
    assert len(set(scores)) > 10  # a real order, not ties

    status, top = rank(server, {"group": 3, "items": items, "k": 5})
    assert status == 200 and top["ranking"] == ranking[:5]
    status, all_of_them = rank(server, {"group": "q-3", "items": items, "k": 50})
    assert status == 200 and all_of_them["ranking"] == ranking and all_of_them["group"] == "q-3"


def test_equal_scores_keep_the_request_order(server, system):
    a, b = system["items"][:2]
    status, answer = rank(server, {"group": 1, "items": [b, a, b, a, b]})
    assert status == 200, answer
    order = [r["item"] for r in answer["ranking"]]
    first = [0, 2, 4] if answer["ranking"][0]["item"] in (0, 2, 4) else [1, 3]
    assert order[: len(first)] == first and order[len(first) :] == sorted(
        set(range(5)) - set(first)
    )


def test_invalid_requests_are_4xx_naming_the_item_and_field(server, system):
    items = [dict(i) for i in system["items"][:4]]
    items[2]["x1"] = "high"
    del items[3]["cat"]
    status, answer = rank(server, {"group": 3, "items": items})
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_items"
    details = answer["error"]["details"]
    assert {"instance": 2, "field": "x1", "problem": "expected a number, got str 'high'"} in details
    assert {"instance": 3, "field": "cat", "problem": "missing required field"} in details

    status, answer = rank(server, {"group": [3], "items": system["items"][:2], "k": 0})
    assert status == 422
    assert {d["field"] for d in answer["error"]["details"]} == {"group", "k"}
    status, answer = rank(server, {"items": system["items"][:2]})
    assert status == 400 and answer["error"]["code"] == "invalid_request"
    status, answer = rank(server, {"group": 3, "items": []})
    assert status == 422 and answer["error"]["code"] == "no_items"
    status, answer = rank(server, {"group": 3, "items": system["items"] * 6})
    assert status == 413 and answer["error"]["code"] == "too_many_items"


def test_the_log_holds_group_and_position_and_feedback_joins(server, system):
    items = system["items"]
    status, answer = rank(server, {"group": 42, "items": items, "k": 10}, "rank-log")
    assert status == 200, answer
    first, second = answer["ranking"][0]["item"], answer["ranking"][3]["item"]
    status, recorded, _ = server.client.call(
        "POST",
        "/v1/feedback",
        [
            {"request_id": "rank-log", "instance": first, "label": 1},  # clicked
            {"request_id": "rank-log", "instance": second, "label": 0},
        ],
    )
    assert status == 200 and recorded == {"recorded": 2, "unknown_request_ids": []}

    ws = workspace(system)

    def logged():
        table = read_predictions(ws)
        rows = [r for r in table.to_pylist() if r["request_id"] == "rank-log"]
        return rows if len(rows) == 20 else None

    rows = {r["instance"]: r for r in wait_for(logged)}
    positions = {r["item"]: r["position"] for r in answer["ranking"]}
    for index, row in rows.items():
        assert row["group"] == "42"
        assert row["position"] == positions.get(index)  # None: scored, cut by k
        assert row["score"] == pytest.approx(next(
            (r["score"] for r in answer["ranking"] if r["item"] == index), row["score"]
        ))  # fmt: skip
    assert sum(r["position"] is None for r in rows.values()) == 10

    def joined():
        table = labelled(ws)
        found = {r["instance"]: r for r in table.to_pylist() if r["request_id"] == "rank-log"}
        return found if len(found) == 2 else None

    found = wait_for(joined)
    assert (found[first]["position"], found[first]["true_label"]) == (1, 1)
    assert (found[second]["position"], found[second]["true_label"]) == (4, 0)
    assert found[first]["group"] == "42"


def test_v2_infer_answers_a_score_per_row(server, system):
    items = system["items"][:3]
    inputs = [
        {
            "name": name,
            "shape": [len(items)],
            "datatype": "BYTES" if name == "cat" else "FP64",
            "data": [i[name] for i in items],
        }
        for name in FIELDS
    ]
    status, answer, _ = server.client.call("POST", "/v2/models/rk/infer", {"inputs": inputs})
    assert status == 200, answer
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("score", "FP64", [3])
    status, scored, _ = server.client.call("POST", "/v1/predict", {"instances": items})
    assert output["data"] == pytest.approx([p["score"] for p in scored["predictions"]])
    status, meta, _ = server.client.call("GET", "/v2/models/rk")
    assert meta["outputs"] == [{"name": "score", "datatype": "FP64", "shape": [-1]}]


def test_tritonclient_infers_the_ranking_scores(server, system):
    """The V2 route of a ranking model through Triton's own client, binary tensors
    included: the scores /v1/predict gives, and its metadata as the client reads it."""
    http = pytest.importorskip("tritonclient.http")
    client = http.InferenceServerClient(f"127.0.0.1:{server.port}")
    items = system["items"][:4]
    tensors = []
    for name in FIELDS:
        if name == "cat":
            array = np.array([str(i[name]).encode() for i in items], dtype=np.object_)
            tensor = http.InferInput(name, [len(items)], "BYTES")
        else:
            array = np.array([i[name] for i in items], dtype=np.float64)
            tensor = http.InferInput(name, [len(items)], "FP64")
        tensor.set_data_from_numpy(array)  # binary data, the client's default
        tensors.append(tensor)
    result = client.infer(SYSTEM, tensors, request_id="triton-rank")
    assert result.get_response()["id"] == "triton-rank"
    _, scored, _ = server.client.call("POST", "/v1/predict", {"instances": items})
    np.testing.assert_allclose(result.as_numpy("score"), [p["score"] for p in scored["predictions"]])  # fmt: skip
    assert client.is_model_ready(SYSTEM)
    meta = client.get_model_metadata(SYSTEM)
    assert [o["name"] for o in meta["outputs"]] == ["score"]


def test_while_an_experiment_routes_the_group_is_the_unit_and_shadows_score(server, system):
    root = system["folder"] / ".mlsd"
    package = aliases.read(root, SYSTEM)["versions"]["1"]
    table = RoutingTable(  # two arms of the same version: which arm is the group's hash
        system=SYSTEM,
        experiment="rank-ab",
        strategy="ab",
        salt="s",
        arms=(
            Arm(name="left", version=1, package=package, weight=0.5),
            Arm(name="right", version=1, package=package, weight=0.5),
        ),
        shadows=(Arm(name="shadow", version=1, package=package),),  # scores a copy
    )
    routing.publish(root, table)
    try:
        wait_for(lambda: server.client.call("GET", "/readyz")[1].get("routing"))
        groups = [f"g{i}" for i in range(12)]
        for n in range(2):
            for g in groups:
                status, answer = rank(
                    server, {"group": g, "items": system["items"][:3]}, f"ab-{g}-{n}"
                )
                assert status == 200, answer
    finally:
        routing.clear(root, SYSTEM)

    def logged():
        rows = [r for r in read_predictions(workspace(system)).to_pylist() if r["experiment"]]
        return rows if len(rows) == 2 * 12 * 3 else None

    rows = wait_for(logged)
    for row in rows:
        assert row["unit"] == row["group"]
        assert row["arm"] == table.assign(row["group"])[0].name
    assert {r["arm"] for r in rows} == {"left", "right"}
    assert json.dumps(rows[0]["p"]) == "0.5"

    def shadowed():
        found = read_shadow(workspace(system), experiment="rank-ab")
        return found if found.num_rows == 2 * 12 * 3 else None

    shadow = wait_for(shadowed).to_pylist()  # the same items, scored by the shadow
    live = {(r["request_id"], r["instance"]): r["score"] for r in rows}
    assert all(live[(s["request_id"], s["instance"])] == s["score"] for s in shadow)


def test_a_partial_answer_ranks_the_valid_items_under_their_indices(system):
    """``serving.partial: true``: the invalid items are named in ``errors``, the others
    ranked and logged under their places in the request."""
    from server import served_in_thread

    from mlsd.serving.app import Server
    from mlsd.spec import load_spec

    spec = load_spec(system["folder"] / "system.yaml")
    serving = spec.serving.model_copy(update={"partial": True, "poll_s": 0})
    items = [dict(i) for i in system["items"][:6]]
    items[1]["views"] = "many"
    server = Server(system["folder"] / ".mlsd", SYSTEM, serving)
    with served_in_thread(server) as client:
        status, answer, _ = client.call(
            "POST", "/v1/rank", {"group": "p", "items": items}, {"X-Request-ID": "partial-1"}
        )
        status_all, whole, _ = client.call(
            "POST", "/v1/rank", {"group": "p", "items": items[:1] + items[2:]}
        )
    assert status == 200 and status_all == 200, (answer, whole)
    assert [e["instance"] for e in answer["errors"]] == [1]
    assert answer["errors"][0]["field"] == "views"
    got = [r["item"] for r in answer["ranking"]]
    assert 1 not in got and sorted(got) == [0, 2, 3, 4, 5]
    back = {0: 0, 1: 2, 2: 3, 3: 4, 4: 5}  # the request without item 1, mapped back
    assert got == [back[r["item"]] for r in whole["ranking"]]
    assert [r["position"] for r in answer["ranking"]] == [1, 2, 3, 4, 5]

    rows = wait_for(
        lambda: [r for r in read_predictions(workspace(system)).to_pylist()
                 if r["request_id"] == "partial-1"] or None
    )  # fmt: skip
    assert sorted(r["instance"] for r in rows) == [0, 2, 3, 4, 5]
    positions = {r["item"]: r["position"] for r in answer["ranking"]}
    assert all(r["position"] == positions[r["instance"]] for r in rows)
