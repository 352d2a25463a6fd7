"""Security of `mlsd serve` against a real server: admin auth, JSON depth, metric labels."""

from __future__ import annotations

import time

import pytest
from server import TOKEN, Client, ServerProcess
from test_v2_triton import train_system, write_system


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("security")
    write_system(folder, "multiclass", "serving: {max_instances: 20}\n")
    train_system(folder)
    proc = ServerProcess(folder)
    yield proc
    proc.stop()


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
