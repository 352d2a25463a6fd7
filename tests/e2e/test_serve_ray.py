"""`mlsd serve --engine ray --replicas 2`: mlsd servers placed by Ray on a cluster it starts,
sharing one port; the same answers as one server, one log, feedback across replicas."""

from __future__ import annotations

import http.client
import json
import os

import numpy as np
import pandas as pd
import pytest
from server import Client, ServerProcess, free_port_block
from test_cli_data import mlsd

from mlsd.predlog.reader import read_feedback, read_predictions
from mlsd.serving.model import load_served
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray-serve")
    rng = np.random.default_rng(0)
    n = 800
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.choice(["x", "y", "z"], n)})
    frame["y"] = np.where(frame["a"] + (frame["b"] == "x") + rng.normal(size=n) > 0.5, "p", "n")
    frame.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text(
        "name: t\nproblem: {task: binary, target: y}\ndata: {source: d.csv}\n"
        "models: {candidates: [lightgbm]}\nserving: {poll_s: 0}\n"
        "engine: {kind: ray, num_cpus: 2, object_store_mb: 100}\n"
    )
    run = mlsd("train", cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    return folder, frame.drop(columns="y").head(200).to_dict("records")


def _own_ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/readyz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def test_two_replicas_share_the_port_one_log_and_feedback(system):
    import time

    folder, instances = system
    spec = load_spec(folder / "system.yaml")
    # ready once one replica answers; each replica also answers on port + 1 + its index
    proc = ServerProcess(folder, "--replicas", "2", port=free_port_block(3))
    port = proc.port
    try:
        deadline = time.monotonic() + 90
        while not all(_own_ready(port + 1 + i) for i in range(2)):  # each replica's own port
            assert proc.proc.poll() is None, proc.proc.communicate()
            assert time.monotonic() < deadline, "the replicas did not both come up"
            time.sleep(0.2)
        served = load_served(Workspace.for_spec(spec).root, "t", "champion", spec.serving)
        expected = served.predict({k: [r[k] for r in instances] for k in ("a", "b")})
        ids = []
        for i, instance in enumerate(instances):  # a new connection each: the kernel spreads
            client = Client(port)
            status, body, _ = client.call("POST", "/v1/predict", {"instances": [instance]},
                                          headers={"x-request-id": f"r{i}"})  # fmt: skip
            client.close()
            assert status == 200, body
            assert body["predictions"][0] == json.loads(json.dumps(expected[i]))
            ids.append(body["request_id"])
        # labels at once, each to whichever replica takes the connection: all are known
        unknown, recorded = [], 0
        for i, request_id in enumerate(ids):
            client = Client(port)
            status, body, _ = client.call(
                "POST", "/v1/feedback", {"request_id": request_id, "label": "p" if i % 2 else "n"}
            )
            client.close()
            assert status == 200, body
            recorded += body["recorded"]
            unknown += body["unknown_request_ids"]
        assert (recorded, unknown) == (len(ids), [])
    finally:
        out, err = proc.stop()
    assert proc.proc.returncode == 0, err
    assert out.count("serving t version 1") == 2, out
    # one log: every row, written by two processes, each in its own segments
    ws = Workspace.for_spec(spec)
    predictions = read_predictions(ws)
    assert sorted(predictions.column("request_id").to_pylist()) == sorted(ids)
    segments = list((ws.log / "predictions").glob("*.jsonl"))
    writers = {path.name.split("-")[1] for path in segments}
    assert len(writers) == 2, writers  # both replicas answered
    assert read_feedback(ws).num_rows == len(ids)
    for pid in writers:  # the replicas ended with the server
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)
