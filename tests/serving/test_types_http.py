"""Types over HTTP: integer class labels answer as integers (``"0"`` in V2's BYTES), and every
route names the model version as the same string."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.models.train import train
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from e2e.server import served_in_thread
    from mlsd.serving.app import Server

    folder = tmp_path_factory.mktemp("ints")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    y = np.digitize(x[:, 0] + 0.3 * rng.normal(size=300), [-0.5, 0.5])  # 0, 1, 2
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y}).to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: ints\nproblem: {task: multiclass, target: y}\ndata: {source: d.csv}\n"
        "models: {candidates: [lightgbm]}\n"
    )
    spec._path = folder / "system.yaml"
    workspace = Workspace(folder / "ws")
    assert train(spec, workspace, progress=False).registered
    server = Server(workspace.root, spec.name, spec.serving)
    server.load()
    with served_in_thread(server) as client:
        yield client


INSTANCES = [{"a": -1.5, "b": 0.0}, {"a": 0.0, "b": 0.0}, {"a": 1.5, "b": 0.0}]


def test_integer_labels_answer_as_integers(served):
    status, body, _ = served.call("POST", "/v1/predict", {"instances": INSTANCES})
    assert status == 200, body
    labels = [p["label"] for p in body["predictions"]]
    assert all(type(v) is int for v in labels) and set(labels) <= {0, 1, 2}
    assert all(list(p["probabilities"]) == ["0", "1", "2"] for p in body["predictions"])
    tensors = [
        {"name": k, "shape": [3], "datatype": "FP64", "data": [i[k] for i in INSTANCES]}
        for k in ("a", "b")
    ]
    status, v2, _ = served.call("POST", "/v2/models/ints/infer", {"inputs": tensors})
    assert status == 200, v2
    label = next(o for o in v2["outputs"] if o["name"] == "label")
    assert label["datatype"] == "BYTES" and label["data"] == [str(v) for v in labels]
    status, models, _ = served.call("GET", "/v1/models")
    assert models["signature"]["output"]["classes"] == [0, 1, 2]


def test_readyz_v2_and_answers_name_the_version_as_a_string(served):
    assert served.call("GET", "/readyz")[1]["model_version"] == "1"
    assert served.call("GET", "/v2/models/ints")[1]["versions"] == ["1"]
    body = served.call("POST", "/v1/predict", {"instances": INSTANCES[:1]})[1]
    assert body["model_version"] == "1"


def test_v1_models_names_the_version_as_a_string(served):
    assert served.call("GET", "/v1/models")[1]["version"] == "1"
