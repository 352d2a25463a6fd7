"""Security of `mlsd serve` against a real server: admin auth, JSON depth, metric labels,
request ids and field names from clients, and model references that point outside the
workspace."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from server import TOKEN, Client, ServerProcess, mlsd_command
from test_v2_triton import serving

ROW = {"x": 0.1, "n": 3, "flag": True, "color": "red"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    extra = "serving: {max_instances: 20, unknown_fields: reject}\n"
    with serving(tmp_path_factory.mktemp("security"), "multiclass", extra) as proc:
        yield proc


@pytest.mark.parametrize(
    "header", [None, "", "Bearer ", "Bearer wrong", f"bearer {TOKEN}", f"Bearer {TOKEN}x", TOKEN]
)
def test_admin_reload_refuses_missing_empty_or_wrong_token(served, header):
    headers = {} if header is None else {"Authorization": header}
    status, body, _ = served.client.call("POST", "/v1/admin/reload", headers=headers)
    assert status == 401, body


def test_admin_reload_accepts_the_token(served):
    status, body, _ = served.client.call(
        "POST", "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, body


def test_deep_nesting_is_a_fast_4xx(served):
    raw = b"[" * 10_000 + b"]" * 10_000
    started = time.monotonic()
    status, body, _ = served.client.call("POST", "/v1/predict", raw=raw)
    assert 400 <= status < 500, body
    assert time.monotonic() - started < 5


def _label_lines(client: Client) -> set[str]:
    status, text, _ = client.call("GET", "/metrics")
    assert status == 200
    return {line.split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}


def test_junk_paths_do_not_grow_metric_labels(served):
    client = served.client
    client.call("GET", "/nothing-here")  # any one-off label for unknown routes appears now
    _label_lines(client)  # /metrics itself becomes a route label on its first call
    before = _label_lines(client)
    for i in range(200):
        status, _, _ = client.call("GET", f"/junk/{i}/x{i}")
        assert status == 404
    after = _label_lines(client)
    assert not any("junk" in line for line in after)
    assert len(after - before) == 0, sorted(after - before)[:5]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/..%2F..%2Fetc%2Fpasswd/ready",
        "/v2/models/%2Fetc%2Fpasswd",
        "/v2/models/tiny-kinds/versions/..%2F..%2F1/ready",
        "/v2/models/tiny-kinds/versions/%2Ftmp",
    ],
)
def test_v2_model_refs_never_name_a_path(served, path):
    status, body, _ = served.client.call("GET", path)
    assert 400 <= status < 500, body


def test_admin_routes_are_forbidden_when_no_token_is_set(served):
    proc = ServerProcess(served.folder, env={"MLSD_ADMIN_TOKEN": ""})
    try:
        for header in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}"}):
            status, body, _ = proc.client.call("POST", "/v1/admin/reload", headers=header)
            assert status == 403 and body["error"]["code"] == "admin_disabled", body
    finally:
        proc.stop()


def test_client_field_names_cannot_grow_metric_labels(served):
    client = served.client
    before = _label_lines(client)
    for i in range(100):
        status, body, _ = client.call(
            "POST", "/v1/predict", {"instances": [{**ROW, f"junk_{i}": 1, f"bad name {i}!": 2}]}
        )
        assert status == 422, body
    grown = _label_lines(client) - before
    fields = {line.split('field="')[1].split('"')[0] for line in grown if 'field="' in line}
    assert len(fields) <= 33, sorted(fields)[:5]  # 32 plain names of its own, then _other
    assert "_other" in fields and not any(" " in f for f in fields)


def test_a_request_cannot_make_its_rejection_larger_than_itself(served):
    long_name = "z" * 10_000
    instances = [{**ROW, **{f"u{k}": 0 for k in range(9)}, long_name: 0} for _ in range(20)]
    status, body, _ = served.client.call("POST", "/v1/predict", {"instances": instances})
    assert status == 422
    problems = body["error"]["details"]
    assert len(problems) == 100 and "200 problem(s)" in body["error"]["message"]
    assert max(len(p["field"]) for p in problems) <= 201


@pytest.mark.parametrize(
    "given, problem",
    [("r" * 129, "at most 128"), ("r-é", "printable ASCII"), ("r\tid", "printable ASCII")],
)
def test_request_ids_are_checked_not_silently_changed(served, given, problem):
    status, body, headers = served.client.call(
        "POST", "/v1/predict", {"instances": [ROW]}, headers={"X-Request-ID": given}
    )
    assert status == 400 and body["error"]["code"] == "invalid_request_id", body
    assert problem in body["error"]["message"]
    # other control characters never reach mlsd: the HTTP parser refuses the request
    status, _, _ = served.client.call("POST", "/v1/predict", headers={"X-Request-ID": "r-\x01"})
    assert status == 400
    ok = "r" * 128
    status, body, headers = served.client.call(
        "POST", "/v1/predict", {"instances": [ROW]}, headers={"X-Request-ID": ok}
    )
    assert status == 200 and body["request_id"] == ok and headers["x-request-id"] == ok


def test_a_v2_inference_id_is_checked(served):
    status, body, _ = served.client.call(
        "POST", "/v2/models/tiny-kinds/infer", {"id": "i" * 129, "inputs": []}
    )
    assert status == 400 and "at most 128" in body["error"], body


def test_model_references_never_reach_outside_the_workspace(served, tmp_path):
    """A real package copied outside the workspace is refused, named by an absolute path or
    by one climbing out with ``../``, and no output is written."""
    folder = served.folder
    package = next((folder / ".mlsd" / "packages").iterdir())
    outside = shutil.copytree(package, tmp_path / "copied")
    for ref in (str(outside), os.path.relpath(outside, folder)):
        run = subprocess.run(
            [*mlsd_command(), "predict", "--input", "data.csv", "--output", str(tmp_path / "o.csv"),
             "--model", ref],
            cwd=folder, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert run.returncode != 0 and "outside the workspace" in run.stderr, run.stderr
        assert not (tmp_path / "o.csv").exists()
