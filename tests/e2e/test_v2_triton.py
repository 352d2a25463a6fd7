"""The Open Inference Protocol V2 as Triton's own client speaks it (`tritonclient[http]`, its
default settings: binary tensor data in, binary outputs back), against a real `mlsd serve`.

Three small systems trained once per module (binary, multiclass, regression) on one
synthetic table with a float, an integer, a boolean and a categorical input; every answer
is compared with `/v1/predict`'s for the same rows.
"""

from __future__ import annotations

import csv
import http.client
import json
import random
import subprocess
from contextlib import contextmanager

import numpy as np
import pytest
from server import ServerProcess, mlsd_command

tritonclient_http = pytest.importorskip("tritonclient.http")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

TASKS = {  # name: (task, target, system name)
    "binary": ("binary", "buy", "tiny-buyers"),
    "multiclass": ("multiclass", "kind", "tiny-kinds"),
    "regression": ("regression", "amount", "tiny-amounts"),
}
TARGETS = [target for _, target, _ in TASKS.values()]


def table() -> list[dict]:
    """300 rows: x (float), n (int), flag (boolean), color (category) and three targets."""
    rng = random.Random(0)
    rows = []
    for _ in range(300):
        x, n = round(rng.gauss(0, 1), 4), rng.randint(0, 9)
        flag, color = rng.random() < 0.5, rng.choice(["red", "green", "blue"])
        z = x + 0.15 * n - 0.7 + rng.gauss(0, 0.6) + (0.5 if color == "red" else 0)
        amount = 3 * x + n + 2 * flag + {"red": 1, "green": 0, "blue": -1}[color]
        rows.append(
            {
                "x": x,
                "n": n,
                "flag": "true" if flag else "false",
                "color": color,
                "buy": "Yes" if z + rng.gauss(0, 0.5) > 0.3 else "No",
                "kind": 0 if z < -0.4 else (1 if z < 0.4 else 2),
                "amount": round(amount + rng.gauss(0, 1.5), 3),
            }
        )
    return rows


def write_table(path) -> None:
    rows = table()
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_system(folder, key: str, extra: str = ""):
    """The system of ``TASKS[key]`` in ``folder``: the table (:func:`write_table`) and a
    system.yaml predicting that target from the four inputs, ``extra`` appended to it."""
    task, target, name = TASKS[key]
    write_table(folder / "data.csv")
    others = [t for t in TARGETS if t != target]
    (folder / "system.yaml").write_text(
        f"name: {name}\n"
        f"problem: {{task: {task}, target: {target}}}\n"
        "data:\n  source: data.csv\n  columns: {color: categorical}\n"
        f"features: {{exclude: [{', '.join(others)}]}}\n"
        "models: {candidates: [linear]}\n" + extra
    )
    return folder


def train_system(folder, times: int = 1) -> None:
    """`mlsd train` in ``folder``, ``times`` over (each run registers a new version)."""
    for _ in range(times):
        run = subprocess.run(
            [*mlsd_command(), "train"], cwd=folder, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0, run.stdout + run.stderr


@contextmanager
def serving(folder, key: str, extra: str = ""):
    """The system of ``TASKS[key]`` (``extra`` appended to its spec) written in ``folder``,
    trained once and served by `mlsd serve` until the block ends: yields the process."""
    train_system(write_system(folder, key, extra))
    proc = ServerProcess(folder)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One trained champion per task kind (trained side by side to save time)."""
    base = tmp_path_factory.mktemp("v2")
    out, runs = {}, []
    for key in TASKS:
        folder = base / key
        folder.mkdir()
        write_system(folder, key)
        runs.append(
            subprocess.Popen(
                [*mlsd_command(), "train"],
                cwd=folder,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        out[key] = folder
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
    return out


@pytest.fixture(scope="module")
def servers(folders):
    procs = {key: ServerProcess(folder) for key, folder in folders.items()}
    yield procs
    for proc in procs.values():
        proc.stop()


def instances(n: int = 5) -> list[dict]:
    """The table's first n rows as JSON instances (typed as a client would send them)."""
    rows = []
    for row in table()[:n]:
        rows.append(
            {
                "x": row["x"],
                "n": row["n"],
                "flag": row["flag"] == "true",
                "color": row["color"],
            }
        )
    return rows


def triton(proc: ServerProcess):
    return tritonclient_http.InferenceServerClient(f"127.0.0.1:{proc.port}")


NUMERIC_TYPES = {
    "FP64": np.float64,
    "FP32": np.float32,
    "INT64": np.int64,
    "INT32": np.int32,
}


def infer_inputs(rows: list[dict], x_type="FP64", n_type="INT64", binary=True) -> list:
    """One tensor per input column, filled with ``set_data_from_numpy`` (binary by default)."""
    arrays = {
        "x": (x_type, np.array([r["x"] for r in rows], dtype=NUMERIC_TYPES[x_type])),
        "n": (n_type, np.array([r["n"] for r in rows], dtype=NUMERIC_TYPES[n_type])),
        "flag": ("BOOL", np.array([r["flag"] for r in rows], dtype=bool)),
        "color": ("BYTES", np.array([r["color"].encode() for r in rows], dtype=np.object_)),
    }
    tensors = []
    for name, (datatype, array) in arrays.items():
        tensor = tritonclient_http.InferInput(name, list(array.shape), datatype)
        if binary:
            tensor.set_data_from_numpy(array)  # the client's default: binary_data=True
        else:
            tensor.set_data_from_numpy(array, binary_data=False)
        tensors.append(tensor)
    return tensors


def v1_answer(proc: ServerProcess, rows: list[dict]) -> list[dict]:
    status, body, _ = proc.client.call("POST", "/v1/predict", {"instances": rows})
    assert status == 200, body
    return body["predictions"]


def texts(array) -> list[str]:
    """A BYTES tensor's values: bytes when sent as binary data, str when sent as JSON."""
    return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]


def assert_same_as_v1(result, proc: ServerProcess, key: str, rows: list[dict]) -> None:
    """Each V2 output tensor equals the JSON API's answer for the same rows."""
    expected = v1_answer(proc, rows)
    if key == "binary":
        np.testing.assert_allclose(result.as_numpy("score"), [p["score"] for p in expected])
        labels = texts(result.as_numpy("label"))
        assert labels == [str(p["label"]) for p in expected]
    elif key == "multiclass":
        labels = texts(result.as_numpy("label"))
        assert labels == [str(p["label"]) for p in expected]
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(rows), 3)
        np.testing.assert_allclose(
            probabilities, [list(p["probabilities"].values()) for p in expected]
        )
    else:
        np.testing.assert_allclose(result.as_numpy("value"), [p["value"] for p in expected])


def test_server_health_and_metadata(servers):
    proc = servers["multiclass"]
    client = triton(proc)
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "mlsd" and meta["version"]
    assert "binary_tensor_data" in meta["extensions"]


def test_model_ready_metadata_and_config_plain_and_versioned(servers):
    proc = servers["multiclass"]
    client = triton(proc)
    assert client.is_model_ready("tiny-kinds")
    assert client.is_model_ready("tiny-kinds", model_version="1")
    assert not client.is_model_ready("tiny-kinds", model_version="2")
    assert not client.is_model_ready("other")

    meta = client.get_model_metadata("tiny-kinds")
    assert meta == client.get_model_metadata("tiny-kinds", model_version="1")
    assert meta["versions"] == ["1"]
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "x": "FP64",
        "n": "FP64",
        "flag": "BOOL",
        "color": "BYTES",
    }
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("probabilities", "FP64", [-1, 3]),
    ]

    config = client.get_model_config("tiny-kinds")
    assert config == client.get_model_config("tiny-kinds", model_version="1")
    assert config["name"] == "tiny-kinds" and config["max_batch_size"] > 0
    assert [(i["name"], i["data_type"]) for i in config["input"]] == [
        ("x", "TYPE_FP64"),
        ("n", "TYPE_FP64"),
        ("flag", "TYPE_BOOL"),
        ("color", "TYPE_STRING"),
    ]
    assert [o["name"] for o in config["output"]] == ["label", "probabilities"]

    for call in (
        lambda: client.get_model_metadata("tiny-kinds", model_version="2"),
        lambda: client.get_model_config("tiny-kinds", model_version="2"),
        lambda: client.get_model_metadata("other"),
    ):
        with pytest.raises(InferenceServerException) as caught:
            call()
        assert caught.value.status() == "404"
        assert "tiny-kinds" in str(caught.value)  # prints: the body's error is a string


@pytest.mark.parametrize("key", list(TASKS))
@pytest.mark.parametrize("outputs", ["default", "binary", "json"])
def test_infer_equals_v1_predict(servers, key, outputs):
    proc = servers[key]
    client = triton(proc)
    rows = instances(5)
    name = TASKS[key][2]
    fields = {
        "binary": ["score", "label"],
        "multiclass": ["label", "probabilities"],
        "regression": ["value"],
    }[key]
    requested = (
        None
        if outputs == "default"
        else [
            tritonclient_http.InferRequestedOutput(f, binary_data=outputs == "binary")
            for f in fields
        ]
    )
    result = client.infer(name, infer_inputs(rows), outputs=requested, request_id=f"v2-{key}")
    response = result.get_response()
    assert response["id"] == f"v2-{key}" and response["model_version"] == "1"
    for output in response["outputs"]:
        assert ("data" in output) == (outputs == "json"), output
    assert_same_as_v1(result, proc, key, rows)


@pytest.mark.parametrize(
    ("x_type", "n_type", "binary"),
    [("FP32", "INT32", True), ("FP64", "INT64", False), ("FP64", "FP64", True)],
)
def test_infer_numeric_datatypes_and_json_inputs(servers, x_type, n_type, binary):
    proc = servers["regression"]
    client = triton(proc)
    rows = instances(4)
    result = client.infer(
        "tiny-amounts",
        infer_inputs(rows, x_type, n_type, binary=binary),
        model_version="1",
    )
    if x_type == "FP32":  # the server scores what it was sent: float32 values
        rows = [dict(r, x=float(np.float32(r["x"]))) for r in rows]
    assert_same_as_v1(result, proc, "regression", rows)


def test_infer_errors_print_as_the_protocol_says(servers):
    proc = servers["binary"]
    client = triton(proc)
    rows = instances(2)
    inputs = infer_inputs(rows)
    with pytest.raises(InferenceServerException) as caught:
        client.infer("tiny-buyers", inputs[:3])  # no color
    assert caught.value.status() == "422"
    assert "color" in str(caught.value) and "missing required field" in str(caught.value)

    wrong = tritonclient_http.InferInput("x", [2], "BYTES")
    wrong.set_data_from_numpy(np.array([b"a", b"b"], dtype=np.object_))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("tiny-buyers", [wrong, *inputs[1:]])
    assert caught.value.status() == "422" and "expected a number" in str(caught.value)

    with pytest.raises(InferenceServerException) as caught:
        client.infer(
            "tiny-buyers", inputs, outputs=[tritonclient_http.InferRequestedOutput("nope")]
        )
    assert caught.value.status() == "400" and "unknown output 'nope'" in str(caught.value)

    with pytest.raises(InferenceServerException) as caught:
        client.infer("tiny-buyers", inputs, model_version="7")
    assert caught.value.status() == "404" and "no version '7'" in str(caught.value)


def raw(proc: ServerProcess, method: str, path: str, body: bytes | None = None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def test_v2_error_bodies_are_strings_and_v1_keeps_its_shape(servers):
    proc = servers["binary"]
    for method, path, body, status in [
        ("GET", "/v2/nowhere", None, 404),
        ("GET", "/v2/models/tiny-buyers/infer", None, 405),
        ("POST", "/v2/models/tiny-buyers/infer", b"\xf0not json", 400),
        ("POST", "/v2/models/tiny-buyers/infer", b'{"inputs": 3}', 400),
    ]:
        got, text, headers = raw(proc, method, path, body)
        assert got == status, text
        error = json.loads(text)
        assert set(error) == {"error"} and isinstance(error["error"], str), error
        if status == 405:
            assert headers["allow"] == "POST"
    # a binary header that overruns the body
    got, text, _ = raw(
        proc,
        "POST",
        "/v2/models/tiny-buyers/infer",
        b"{}",
        {"Inference-Header-Content-Length": "99"},
    )
    assert got == 400 and isinstance(json.loads(text)["error"], str)
    got, text, _ = raw(proc, "GET", "/nowhere")
    assert got == 404 and set(json.loads(text)["error"]) == {"code", "message", "details"}
