"""Step 8 through a real server on 127.0.0.1: the server follows a published routing table
(sticky arms by unit, routed rows in the log, shadows that never change an answer), keeps
assignments across a restart, goes back to the champion without a failed request when the
table is removed, and keeps serving when a table names a broken package."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
import time

import numpy as np
import pandas as pd
import pytest
from server import served_in_thread

from mlsd.models import aliases, routing
from mlsd.models.routing import Arm, RoutingTable
from mlsd.models.train import train
from mlsd.predlog.reader import read_predictions, read_shadow
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace

SYSTEM = "ab-sys"
SPEC = (
    f"name: {SYSTEM}\n"
    "problem: {task: binary, target: y, id: user}\n"
    "data: {source: d.csv}\n"
    "models: {candidates: [linear]}\n"
    "serving: {poll_s: 0.1, log_flush_s: 0.2}\n"
)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """Two registered versions of a small binary system: 1 (champion) and 2 (challenger,
    another seed)."""
    folder = tmp_path_factory.mktemp("rollout")
    rng = np.random.default_rng(0)
    n = 600
    x = rng.normal(size=(n, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.5 * rng.normal(size=n) > 0).astype(int)
    frame = pd.DataFrame({"user": np.arange(n), "a": x[:, 0], "b": x[:, 1], "y": y})
    frame.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text("# written by the test\n")
    workspace = Workspace(folder / "ws")
    for seed in (1, 2):
        spec = parse_spec(SPEC + f"seed: {seed}\n")
        spec._path = folder / "system.yaml"
        assert train(spec, workspace, progress=False).registered
    published = aliases.read(workspace.root, SYSTEM)
    assert published["aliases"] == {"champion": 1, "challenger": 2}
    packages = {int(v): p for v, p in published["versions"].items()}
    return {"folder": folder, "root": workspace.root, "spec": spec, "packages": packages}


def make_server(system):
    from mlsd.serving.app import Server

    return Server(system["root"], SYSTEM, system["spec"].serving)


def ab_table(system, experiment: str, *, weights=(0.5, 0.5), shadow=False, package2=None):
    packages = system["packages"]
    second = Arm(name="challenger", version=2, package=str(package2 or packages[2]))
    if shadow:
        arms, shadows = (
            (Arm(name="champion", version=1, package=packages[1], weight=1.0),),
            (second,),
        )
    else:
        arms = (
            Arm(name="champion", version=1, package=packages[1], weight=weights[0]),
            Arm(name="challenger", version=2, package=second.package, weight=weights[1]),
        )
        shadows = ()
    return RoutingTable(
        system=SYSTEM,
        experiment=experiment,
        strategy="shadow" if shadow else "ab",
        salt=f"salt-{experiment}",
        arms=arms,
        shadows=shadows,
        unit_field="user",
    )


def instance(user: int, k: int = 0) -> dict:
    return {"user": user, "a": 0.1 * (user % 7) - 0.3 + 0.01 * k, "b": 0.05 * k}


def predict(client, user: int, k: int = 0, rid: str | None = None) -> dict:
    headers = {"X-Request-ID": rid} if rid else None
    status, body, _ = client.call(
        "POST", "/v1/predict", {"instances": [instance(user, k)]}, headers
    )
    assert status == 200, body
    return body


def raw_predict(port: int, user: int, rid: str) -> bytes:
    """The answer's bytes, exactly as sent."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"instances": [instance(user)]})
        conn.request(
            "POST",
            "/v1/predict",
            body=body,
            headers={"content-type": "application/json", "X-Request-ID": rid},
        )
        response = conn.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        conn.close()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def workspace(system) -> Workspace:
    return Workspace(system["root"], SYSTEM)


@pytest.fixture
def clean(system):
    yield
    routing.clear(system["root"], SYSTEM)


def test_sticky_arms_logged_routing_and_a_restart_keeps_assignments(system, clean):
    routing.publish(system["root"], ab_table(system, "ab-1"))
    units = range(1000, 1040)
    first: dict[int, str] = {}
    with served_in_thread(make_server(system)) as client:
        ready = client.call("GET", "/readyz")[1]
        assert ready["status"] == "ready" and ready["routing"]["experiment"] == "ab-1"
        assert [(a["name"], a["version"], a["weight"]) for a in ready["routing"]["arms"]] == [
            ("champion", "1", 0.5),
            ("challenger", "2", 0.5),
        ]
        models = client.call("GET", "/v1/models")[1]
        assert models["experiment"]["versions"] == ["1", "2"]
        for u in units:
            versions = {
                predict(client, u, k, rid=f"ab-1-{u}-{k}")["model_version"] for k in range(3)
            }
            assert len(versions) == 1, (u, versions)  # sticky: one unit, one arm
            first[u] = versions.pop()
        assert set(first.values()) == {"1", "2"}
        # V2: unversioned infer is routed like /v1/predict; a version pins that model
        u2 = next(u for u, v in first.items() if v == "2")
        tensors = [
            {"name": k, "shape": [1], "datatype": "FP64", "data": [instance(u2)[k]]}
            for k in ("a", "b")
        ] + [{"name": "user", "shape": [1], "datatype": "INT64", "data": [u2]}]
        status, v2, _ = client.call("POST", f"/v2/models/{SYSTEM}/infer", {"inputs": tensors})
        assert status == 200 and v2["model_version"] == "2", v2
        u1 = next(u for u, v in first.items() if v == "1")
        tensors[-1]["data"] = [u1]
        status, v2, _ = client.call(
            "POST", f"/v2/models/{SYSTEM}/versions/2/infer", {"inputs": tensors}
        )
        assert status == 200 and v2["model_version"] == "2", v2
        status, meta, _ = client.call("GET", f"/v2/models/{SYSTEM}/versions/2")
        assert status == 200 and meta["versions"] == ["2"]
        metrics = client.call("GET", "/metrics")[1]
        assert 'mlsd_arm_requests_total{arm="challenger",experiment="ab-1",model_version="2"}' in (
            metrics
        )
        assert 'mlsd_arm_latency_seconds_count{arm="champion"}' in metrics

    rows = read_predictions(workspace(system)).to_pandas()
    rows = rows[rows["request_id"].str.startswith("ab-1-")]
    assert len(rows) == 3 * len(units)
    assert set(rows["experiment"]) == {"ab-1"} and set(rows["p"]) == {0.5}
    assert (rows["unit"] == rows["request_id"].str.split("-").str[2]).all()
    assert ((rows["arm"] == "challenger") == (rows["model_version"] == "2")).all()

    with served_in_thread(make_server(system)) as client:  # a restart, the same table
        for u in units:
            assert predict(client, u)["model_version"] == first[u]


def test_a_shadow_never_changes_an_answer_and_logs_shadow_rows(system, clean):
    users = range(2000, 2030)
    with served_in_thread(make_server(system)) as client:  # champion only
        alone = {u: raw_predict(client.port, u, f"sh-{u}") for u in users}
    routing.publish(system["root"], ab_table(system, "sh-1", shadow=True))
    with served_in_thread(make_server(system)) as client:
        ready = client.call("GET", "/readyz")[1]
        assert ready["routing"]["shadows"][0]["version"] == "2"
        shadowed = {u: raw_predict(client.port, u, f"sh-{u}") for u in users}
        wait_for(
            lambda: (
                'mlsd_shadow_predictions_total{arm="challenger"} 30.0'
                in (client.call("GET", "/metrics")[1])
            )
        )
    assert shadowed == alone  # byte-identical answers
    assert all(json.loads(a)["model_version"] == "1" for a in alone.values())

    shadow = read_shadow(workspace(system), experiment="sh-1").to_pandas()
    assert sorted(shadow["request_id"]) == sorted(f"sh-{u}" for u in users)
    assert set(shadow["model_version"]) == {"2"} and set(shadow["arm"]) == {"challenger"}
    assert (shadow["latency_ms"] > 0).all() and "score" in shadow
    live = read_predictions(workspace(system)).to_pandas()
    live = live[live["experiment"] == "sh-1"]
    assert len(live) == len(users) and set(live["arm"]) == {"champion"}
    assert set(live["p"]) == {1.0}
    # shadow rows are never predictions: every logged answer of these ids is the champion's
    answered = read_predictions(workspace(system)).to_pandas()
    answered = answered[answered["request_id"].str.startswith("sh-")]
    assert len(answered) == 2 * len(users) and set(answered["model_version"]) == {"1"}


def test_a_shadow_scores_only_the_instances_a_partial_answer_accepted(system, clean):
    """The shadow process reads the logged instances, so it scores the accepted ones under
    their places: here the first and third (the second's ``a`` is not a number)."""
    from mlsd.serving.app import Server

    routing.publish(system["root"], ab_table(system, "sh-partial", shadow=True))
    serving = system["spec"].serving.model_copy(update={"partial": True})
    good = [instance(3100), instance(3101, 1)]
    body = {"instances": [good[0], {"user": 3102, "a": "text", "b": 0.0}, good[1]]}
    server = Server(system["root"], SYSTEM, serving)
    with served_in_thread(server) as client:
        status, answer, _ = client.call("POST", "/v1/predict", body, {"X-Request-ID": "partial-1"})
        assert status == 200 and answer["predictions"][1] is None, answer
        assert answer["errors"][0]["instance"] == 1, answer
        wait_for(
            lambda: (
                'mlsd_shadow_predictions_total{arm="challenger"} 2.0'
                in (client.call("GET", "/metrics")[1])
            )
        )
        assert "mlsd_shadow_errors_total 0.0" in client.call("GET", "/metrics")[1]
        version2 = server.model_for("2")
        expected = version2.predict(version2.validator.validate(good).columns)
    shadow = read_shadow(workspace(system), experiment="sh-partial").to_pandas()
    shadow = shadow.sort_values("instance")
    assert list(shadow["instance"]) == [0, 2]  # the places the answer gave them
    assert list(shadow["score"]) == pytest.approx([e["score"] for e in expected])


def test_removing_the_table_under_load_fails_no_request(system, clean):
    from server import Client

    routing.publish(system["root"], ab_table(system, "ab-2"))
    answers: list[tuple[float, int, str]] = []
    stop = threading.Event()
    with served_in_thread(make_server(system)) as client:

        def send() -> None:
            c = Client(client.port)
            i = 0
            try:
                while not stop.is_set():
                    status, body, _ = c.call(
                        "POST", "/v1/predict", {"instances": [instance(3000 + i % 50)]}
                    )
                    answers.append((time.monotonic(), status, body.get("model_version")))
                    i += 1
            finally:
                c.close()

        thread = threading.Thread(target=send)
        thread.start()
        try:
            # both arms answer before the table goes (however slow the machine is)
            wait_for(lambda: {v for _, _, v in list(answers)} >= {"1", "2"})
            cleared = time.monotonic()
            routing.clear(system["root"], SYSTEM)
            wait_for(lambda: "routing" not in client.call("GET", "/readyz")[1])
            switched = time.monotonic()
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join(10)
    assert len(answers) > 50
    assert all(status == 200 for _, status, _ in answers)
    before = {v for t, _, v in answers if t < cleared}
    after = [v for t, _, v in answers if t > switched]
    assert before == {"1", "2"}
    assert after and set(after) == {"1"}


def test_a_table_with_a_broken_package_keeps_the_previous_state(system, clean, tmp_path):
    broken = tmp_path / "broken-package"
    shutil.copytree(system["packages"][2], broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    listed = manifest.get("files") or manifest.get("sha256") or {}
    model_file = next(
        (broken / name for name in listed if not name.startswith(("reference", "holdout"))),
        None,
    )
    if model_file is None or not model_file.is_file():
        model_file = max(
            (p for p in broken.rglob("*") if p.is_file() and p.name != "manifest.json"),
            key=lambda p: p.stat().st_size,
        )
    model_file.write_bytes(model_file.read_bytes() + b"\n corrupted")

    # no experiment yet: the champion keeps serving
    routing.publish(system["root"], ab_table(system, "bad-1", package2=broken))
    server = make_server(system)
    with served_in_thread(server) as client:
        ready = client.call("GET", "/readyz")[1]
        assert ready["status"] == "ready" and "routing" not in ready
        assert "challenger" in ready["routing_error"], ready
        assert {predict(client, u)["model_version"] for u in range(4000, 4030)} == {"1"}
        metrics = client.call("GET", "/metrics")[1]
        assert "mlsd_routing_failures_total 1.0" in metrics

        # an experiment running: a broken new table leaves it routing
        routing.publish(system["root"], ab_table(system, "ab-3"))
        wait_for(lambda: client.call("GET", "/readyz")[1].get("routing") is not None)
        assert "routing_error" not in client.call("GET", "/readyz")[1]
        routing.publish(system["root"], ab_table(system, "bad-2", package2=broken))
        wait_for(lambda: "routing_error" in client.call("GET", "/readyz")[1])
        ready = client.call("GET", "/readyz")[1]
        assert ready["routing"]["experiment"] == "ab-3"
        assert {predict(client, u)["model_version"] for u in range(4000, 4030)} == {"1", "2"}
        assert "mlsd_routing_failures_total 2.0" in client.call("GET", "/metrics")[1]


def test_feedback_takes_a_finite_numeric_reward(system, clean):
    from mlsd.predlog.reader import labelled

    with served_in_thread(make_server(system)) as client:
        predict(client, 5000, rid="rw-1")
        status, body, _ = client.call(
            "POST", "/v1/feedback", {"request_id": "rw-1", "label": 1, "reward": 2.5}
        )
        assert status == 200 and body["recorded"] == 1, body
        for bad in ("much", True, [1]):
            status, body, _ = client.call(
                "POST", "/v1/feedback", {"request_id": "rw-1", "label": 1, "reward": bad}
            )
            assert status == 422 and body["error"]["details"][0]["field"] == "reward", body
        raw = b'{"request_id": "rw-1", "label": 1, "reward": Infinity}'
        status, body, _ = client.call("POST", "/v1/feedback", raw=raw)
        assert status == 422 and body["error"]["details"][0]["field"] == "reward"
    joined = labelled(workspace(system)).to_pandas()
    assert joined.loc[joined["request_id"] == "rw-1", "reward"].tolist() == [2.5]
