"""`mlsd serve` as clients meet it: a real server on 127.0.0.1, real requests."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import threading
import time

import pytest
from server import TOKEN, ServerProcess
from test_cli_data import mlsd

from conftest import EXAMPLES


def rows(folder, n: int = 50) -> list[dict]:
    """The first n caravan customers as request instances (numbers as numbers)."""
    with open(folder / "caravan.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        out = []
        for row in reader:
            row.pop("Purchase")
            out.append({k: int(v) for k, v in row.items()})
            if len(out) == n:
                return out
    return out


@pytest.fixture(scope="module")
def caravan(tmp_path_factory):
    """Caravan with one registered champion; polling every 0.3 s for the swap tests."""
    folder = tmp_path_factory.mktemp("serve") / "caravan"
    shutil.copytree(EXAMPLES / "caravan", folder, ignore=shutil.ignore_patterns(".mlsd"))
    spec = folder / "system.yaml"
    spec.write_text(spec.read_text() + "\nserving: {poll_s: 0.3, max_instances: 100}\n")
    run = mlsd("train", cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    return folder


@pytest.fixture(scope="module")
def server(caravan):
    proc = ServerProcess(caravan)
    yield proc
    proc.stop()


def test_predict_scores_and_labels(server, caravan):
    status, body, headers = server.client.call(
        "POST", "/v1/predict", {"instances": rows(caravan, 3)}, {"X-Request-ID": "req-1"}
    )
    assert status == 200, body
    assert body["request_id"] == "req-1" and headers["x-request-id"] == "req-1"
    assert body["model_version"] == "1"
    assert len(body["predictions"]) == 3
    for p in body["predictions"]:
        assert 0.0 <= p["score"] <= 1.0 and p["label"] in ("Yes", "No")
    status, body, _ = server.client.call("POST", "/v1/predict", {"instances": rows(caravan, 1)})
    assert status == 200 and len(body["request_id"]) == 32  # generated when not given


def problems_of(server, instances, raw: bytes | None = None):
    status, body, _ = server.client.call(
        "POST", "/v1/predict", None if raw else {"instances": instances}, raw=raw
    )
    assert 400 <= status < 500, (status, body)
    assert set(body["error"]) == {"code", "message", "details"}
    return status, body["error"]


def test_every_invalid_input_is_a_4xx_naming_instance_and_field(server, caravan):
    good = rows(caravan, 2)
    missing = [dict(good[0]), dict(good[1])]
    del missing[1]["MAANTHUI"]
    status, error = problems_of(server, missing)
    assert status == 422
    assert {"instance": 1, "field": "MAANTHUI", "problem": "missing required field"} in error[
        "details"
    ]

    wrong_type = [dict(good[0], MGEMOMV="three")]
    status, error = problems_of(server, wrong_type)
    assert error["details"][0]["field"] == "MGEMOMV"
    assert "expected a number" in error["details"][0]["problem"]

    nan = (
        json.dumps({"instances": [dict(good[0], MGEMLEEF=0)]})
        .replace('"MGEMLEEF": 0', '"MGEMLEEF": NaN')
        .encode()
    )
    status, error = problems_of(server, None, raw=nan)
    assert error["details"][0]["field"] == "MGEMLEEF"
    assert "not a finite number" in error["details"][0]["problem"]

    beyond_float = [dict(good[0], MGEMLEEF=10**400)]  # JSON allows it; float() does not
    status, error = problems_of(server, beyond_float)
    assert status == 422 and error["details"][0]["field"] == "MGEMLEEF"
    assert "too large" in error["details"][0]["problem"]

    status, error = problems_of(server, rows(caravan, 101))
    assert status == 413 and error["code"] == "too_many_instances"
    status, error = problems_of(server, None, raw=b'{"instances": [')
    assert status == 400 and error["code"] == "invalid_json"
    status, error = problems_of(server, None, raw=b'{"rows": []}')
    assert status == 400
    status, error = problems_of(server, ["not an object"])
    assert status == 422 and error["details"][0]["instance"] == 0
    huge = b'{"instances": [' + b" " * 10_000_001 + b"]}"
    status, error = problems_of(server, None, raw=huge)
    assert status == 413 and error["code"] == "body_too_large"


def test_out_of_range_and_unseen_values_are_answered_and_flagged(server, caravan):
    """Regression (#12): one value a few units outside the training range refused all
    100 answers of a request. By default such values are scored, flagged and logged."""
    instances = rows(caravan, 100)
    instances[7] = dict(instances[7], MAANTHUI=1000)
    instances[9] = dict(instances[9], MOSTYPE=999)
    status, body, _ = server.client.call(
        "POST", "/v1/predict", {"instances": instances}, {"X-Request-ID": "flagged-1"}
    )
    assert status == 200, body
    assert len(body["predictions"]) == 100 and "errors" not in body
    logged = wait_for_log(caravan, "flagged-1", 100)
    flags = {r["instance"]: r["flags"] for r in logged if r["flags"]}
    assert flags == {
        7: ["MAANTHUI: 1000 is outside the training range [1.0, 10.0]"],
        9: [flags[9][0]],
    }
    assert flags[9][0].startswith("MOSTYPE: 999 is not a known category")


def wait_for_log(folder, request_id: str, n: int, timeout: float = 10.0) -> list[dict]:
    """The logged rows of one request, once the server's writer has flushed them."""
    from mlsd.predlog.reader import read_predictions
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    workspace = Workspace.for_spec(load_spec(folder / "system.yaml"))
    deadline = time.monotonic() + timeout
    while True:
        found = [
            r for r in read_predictions(workspace).to_pylist() if r["request_id"] == request_id
        ]
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_reject_policy_and_partial_answers(caravan):
    """`on_invalid: reject` refuses out-of-range values; `partial: true` answers the valid
    instances of a request and names the problems of the others."""
    text = (caravan / "system.yaml").read_text()
    strict = text.replace("serving: {", "serving: {on_invalid: reject, partial: true, ")
    (caravan / "strict.yaml").write_text(strict)
    proc = ServerProcess(caravan, "-c", "strict.yaml")
    try:
        good = rows(caravan, 3)
        status, error = problems_of(proc, [dict(good[0], MAANTHUI=1000)])
        assert status == 422 and "outside the training range" in error["details"][0]["problem"]
        mixed = [good[0], dict(good[1], MOSTYPE=999), good[2]]
        status, body, _ = proc.client.call(
            "POST", "/v1/predict", {"instances": mixed}, {"X-Request-ID": "partial-1"}
        )
        assert status == 200, body
        _, alone, _ = proc.client.call("POST", "/v1/predict", {"instances": [good[0], good[2]]})
        assert body["predictions"][1] is None
        assert [body["predictions"][0], body["predictions"][2]] == alone["predictions"]
        assert [(e["instance"], e["field"]) for e in body["errors"]] == [(1, "MOSTYPE")]
        # the valid instances are logged under their places in the request
        assert [r["instance"] for r in wait_for_log(caravan, "partial-1", 2)] == [0, 2]
    finally:
        proc.stop()


def test_rank_is_refused_for_a_binary_model(server, caravan):
    """/v1/rank orders items with a ranking model only; /v1/predict scores them here."""
    status, body, _ = server.client.call(
        "POST", "/v1/rank", {"group": "u1", "items": rows(caravan, 3)}
    )
    assert status == 409, body
    assert body["error"]["code"] == "not_a_ranking_model"
    assert "binary" in body["error"]["message"] and "/v1/predict" in body["error"]["message"]


def test_unknown_fields_are_ignored_and_counted(server, caravan):
    status, body, _ = server.client.call(
        "POST", "/v1/predict", {"instances": [dict(rows(caravan, 1)[0], color="red")]}
    )
    assert status == 200, body
    _, text, _ = server.client.call("GET", "/metrics")
    assert 'mlsd_unknown_fields_total{field="color"} 1.0' in text


def test_health_models_metrics_and_docs(server):
    assert server.client.call("GET", "/healthz")[0] == 200
    status, body, _ = server.client.call("GET", "/readyz")
    assert status == 200 and body["model_version"] == "1"
    status, body, _ = server.client.call("GET", "/v1/models")
    assert body["name"] == "caravan-offers" and body["task"] == "binary"
    assert len(body["signature"]["inputs"]) == 85
    _, text, _ = server.client.call("GET", "/metrics")
    assert 'mlsd_requests_total{route="/v1/predict",status="200"}' in text
    assert 'mlsd_validation_failures_total{field="MAANTHUI"}' in text
    assert "mlsd_request_latency_seconds_bucket" in text
    assert 'mlsd_predictions_total{model_version="1"}' in text
    status, html, _ = server.client.call("GET", "/docs")
    assert status == 200 and "swagger" in html.lower()
    status, spec, _ = server.client.call("GET", "/openapi.json")
    assert "/v1/predict" in spec["paths"]
    status, body, _ = server.client.call("GET", "/nowhere")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_open_inference_protocol_v2(server, caravan):
    instances = rows(caravan, 2)
    assert server.client.call("GET", "/v2/health/ready")[1] == {"ready": True}
    status, meta, _ = server.client.call("GET", "/v2/models/caravan-offers")
    assert status == 200 and len(meta["inputs"]) == 85
    tensors = [
        {"name": k, "shape": [2], "datatype": "INT64", "data": [i[k] for i in instances]}
        for k in instances[0]
    ]
    status, body, _ = server.client.call(
        "POST", "/v2/models/caravan-offers/infer", {"id": "v2-1", "inputs": tensors}
    )
    assert status == 200, body
    assert body["id"] == "v2-1"
    scores = next(o for o in body["outputs"] if o["name"] == "score")["data"]
    _, v1, _ = server.client.call("POST", "/v1/predict", {"instances": instances})
    assert scores == [p["score"] for p in v1["predictions"]]
    assert server.client.call("GET", "/v2/models/other")[0] == 404


def test_feedback_joins_known_ids_and_reports_unknown(server, caravan):
    server.client.call(
        "POST", "/v1/predict", {"instances": rows(caravan, 1)}, {"X-Request-ID": "fb-1"}
    )
    status, body, _ = server.client.call(
        "POST",
        "/v1/feedback",
        [{"request_id": "fb-1", "label": "Yes"}, {"request_id": "never-seen", "label": "No"}],
    )
    assert status == 200
    assert body == {"recorded": 1, "unknown_request_ids": ["never-seen"]}
    status, body, _ = server.client.call("POST", "/v1/feedback", {"label": "Yes"})
    assert status == 422


def test_admin_reload_needs_the_token(server):
    status, body, _ = server.client.call("POST", "/v1/admin/reload")
    assert status == 401
    status, body, _ = server.client.call(
        "POST", "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200 and body["swapped"] is False


def test_swap_to_a_new_champion_with_zero_failed_requests(server, caravan):
    run = mlsd("train", cwd=caravan)  # version 2, registered as challenger
    assert run.returncode == 0, run.stderr
    failures, versions, stop = [], set(), threading.Event()

    def traffic():
        from server import Client

        client = Client(server.port)
        instances = rows(caravan, 2)
        while not stop.is_set():
            status, body, _ = client.call("POST", "/v1/predict", {"instances": instances})
            if status != 200:
                failures.append((status, body))
            else:
                versions.add(body["model_version"])
        client.close()

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(0.5)
        assert mlsd("promote", "2", cwd=caravan).returncode == 0
        deadline = time.time() + 20
        while "2" not in versions and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join()
    assert failures == []
    assert versions == {"1", "2"}
    assert server.client.call("GET", "/readyz")[1]["model_version"] == "2"


def test_a_package_failing_verification_never_serves(server, caravan):
    run = mlsd("train", "--json", cwd=caravan)  # version 3
    package = json.loads(run.stdout)["package"]
    coef = next((p for p in (caravan / package).rglob("model.txt")), None) or next(
        (caravan / package).rglob("coefficients.json")
    )
    coef.write_text(coef.read_text().replace("1", "2", 1))  # tampered after registration
    assert mlsd("promote", "3", cwd=caravan).returncode == 0
    time.sleep(1.5)  # several polls
    status, body, _ = server.client.call("GET", "/readyz")
    assert body["model_version"] == "2"  # the old model keeps serving
    _, text, _ = server.client.call("GET", "/metrics")
    assert "mlsd_model_swap_failures_total 1.0" in text
    status, body, _ = server.client.call(
        "POST", "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 409 and body["error"]["code"] == "verification_failed"
    assert mlsd("rollback", cwd=caravan).returncode == 0  # champion back to 2 for later tests


def test_log_rows_are_exported(server):
    _, text, _ = server.client.call("GET", "/metrics")
    assert 'mlsd_log_rows{log="predictions",outcome="written"}' in text


def _logged_ids(folder, prefix: str) -> set[str]:
    from mlsd.predlog.reader import read_predictions
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    table = read_predictions(Workspace.for_spec(load_spec(folder / "system.yaml")))
    return {r for r in table.column("request_id").to_pylist() if r.startswith(prefix)}


def _send(proc, instances, prefix: str, seconds: float) -> list[tuple[str, float]]:
    sent, end, i = [], time.time() + seconds, 0
    while time.time() < end:
        rid = f"{prefix}{i}"
        status, body, _ = proc.client.call(
            "POST", "/v1/predict", {"instances": instances}, {"X-Request-ID": rid}
        )
        assert status == 200, body
        sent.append((rid, time.time()))
        i += 1
    return sent


def test_kill_9_loses_at_most_the_last_second(caravan):
    proc = ServerProcess(caravan)
    sent = _send(proc, rows(caravan, 1), "k9-", 2.5)
    killed_at = time.time()
    proc.kill()
    logged = _logged_ids(caravan, "k9-")  # every finished segment parses, or this raises
    durable = {rid for rid, t in sent if t < killed_at - 1.5}
    assert len(sent) > 20 and durable
    assert durable <= logged <= {rid for rid, _ in sent}


def test_graceful_shutdown_flushes_the_log(caravan):
    proc = ServerProcess(caravan)
    sent = _send(proc, rows(caravan, 2), "term-", 0.5)
    _, err = proc.stop()
    # uvicorn finishes in-flight work, runs shutdown, then exits by the signal it caught
    assert proc.proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert _logged_ids(caravan, "term-") == {rid for rid, _ in sent}


def test_the_serving_path_imports_no_pandas_sklearn_or_mlflow(caravan):
    import subprocess
    import sys

    script = f"""
import sys, time
from pathlib import Path
from mlsd.serving.app import Server
from mlsd.spec import load_spec
spec = load_spec({str(caravan / "system.yaml")!r})
server = Server(Path({str(caravan / ".mlsd")!r}), spec.name, spec.serving)
server.load()
out = server.predict({rows(caravan, 2)!r}, "imports", time.perf_counter())
server.close()
assert len(out["predictions"]) == 2
heavy = {{"pandas", "sklearn", "mlflow", "lightgbm", "scipy"}} & set(sys.modules)
print(sorted(heavy))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
