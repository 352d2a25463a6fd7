"""A canary through a real `mlsd serve` process with real feedback: clients send requests and
labels over HTTP while `mlsd rollout step` takes decisions on what the server logged. A much
worse model rolls back by itself with zero failed requests; a model as good as the champion
walks the steps and becomes champion, and the server follows both without a restart."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from server import Client, ServerProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
from loop_helpers import frame, three_versions

from mlsd.cli import main
from mlsd.events import EventLog
from mlsd.models import aliases, routing
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

EXTRA = """serving: {poll_s: 0.1, log_flush_s: 0.1}
rollout:
  canary: {steps: [20, 50, 100], min_requests: 40, min_duration: 0s, margin: 0.3}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return three_versions(tmp_path_factory.mktemp("canary") / "system", EXTRA)


@pytest.fixture
def system(trained, tmp_path):
    folder = tmp_path / "system"
    shutil.copytree(trained, folder)
    spec = load_spec(folder / "system.yaml")
    return folder, spec, Workspace.for_spec(spec)


class Traffic(threading.Thread):
    """Sends one request per new unit and its label right after, until stopped; counts
    every answer by version and every failure."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.client = Client(port)
        self.stop = threading.Event()
        self.versions: list[str] = []
        self.failures: list[tuple[int, object]] = []

    def run(self) -> None:
        rows = frame(20_000, 77)
        for i, row in enumerate(rows.to_dict("records")):
            if self.stop.is_set():
                break
            label = row.pop("y")
            rid = f"u{i}"
            status, body, _ = self.client.call(
                "POST", "/v1/predict", {"instances": [row]}, {"X-Request-ID": rid}
            )
            if status != 200:
                self.failures.append((status, body))
                continue
            self.versions.append(str(body["model_version"]))
            status, body, _ = self.client.call(
                "POST", "/v1/feedback", {"request_id": rid, "label": label}
            )
            if status != 200:
                self.failures.append((status, body))
        self.client.close()


def _run_canary(folder: Path, spec, model: str, *, timeout: float = 90) -> tuple:
    """Serve, start a canary of ``model``, step it every half second until it ends; return
    the decisions and the (stopped) traffic."""
    config = ["-c", str(folder / "system.yaml")]
    server = ServerProcess(folder)
    traffic = Traffic(server.port)
    decisions = []
    try:
        traffic.start()
        assert main(["rollout", "start", "--strategy", "canary", "--model", model, *config]) == 0
        deadline = time.time() + timeout
        while time.time() < deadline:
            time.sleep(0.5)
            state = _step(config)
            decisions.append(state["decision"])
            if state["experiment"]["status"] != "running":
                break
        time.sleep(0.5)  # the server's next poll, then more traffic on what it follows now
        settled = len(traffic.versions)
        time.sleep(0.5)
        after = set(traffic.versions[settled:])
    finally:
        traffic.stop.set()
        traffic.join(timeout=30)
        server.stop()
    return decisions, traffic, after


def _step(config: list[str]) -> dict:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["rollout", "step", "--json", *config]) == 0
    return json.loads(out.getvalue())


def test_a_canary_of_a_much_worse_model_rolls_back_with_no_failed_request(system):
    folder, spec, ws = system
    decisions, traffic, after = _run_canary(folder, spec, "2")
    assert traffic.failures == []  # not one request failed, before, during or after
    actions = [d["action"] for d in decisions]
    assert actions[-1] == "rolled_back", decisions[-1]
    assert "mae is worse than the champion's" in decisions[-1]["reasons"][0]
    assert aliases.read(ws.root, spec.name)["aliases"]["champion"] == 1
    assert routing.read(ws.root, spec.name) is None
    assert "2" in traffic.versions and after == {"1"}  # it answered, then the champion only
    ended = EventLog(ws.root / "events.sqlite").read(kind="rollout_ended")[-1]
    assert ended["evidence"]["status"] == "rolled_back"
    assert "mae is worse" in ended["message"]


def test_a_canary_of_a_good_model_walks_the_steps_and_becomes_champion(system):
    folder, spec, ws = system
    decisions, traffic, after = _run_canary(folder, spec, "3")
    assert traffic.failures == []
    walked = [d["action"] for d in decisions if d["action"] != "hold"]
    assert walked == ["advance", "advance", "promote"], decisions[-1]
    assert decisions[-1]["evidence"]["non_inferiority"]["status"] == "pass"
    assert aliases.read(ws.root, spec.name)["aliases"]["champion"] == 3
    assert routing.read(ws.root, spec.name) is None
    assert after == {"3"}  # the server followed the alias and the table's removal
    shares = np.array([v == "3" for v in traffic.versions])
    assert 0 < shares.mean() < 1
    history = EventLog(ws.root / "events.sqlite").read(kind=["rollout_advanced", "rollout_ended"])
    assert [e["kind"] for e in history] == ["rollout_advanced", "rollout_advanced", "rollout_ended"]
