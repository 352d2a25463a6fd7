"""The router: sticky assignment by unit, shares that follow the weights, shadows scored off
the request path (a full queue drops, never blocks), and tables that fail to load."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest

from mlsd.models import routing
from mlsd.models.routing import Arm, RoutingTable
from mlsd.serving.metrics import ServerMetrics
from mlsd.serving.model import ServingError
from mlsd.serving.router import (
    Routed,
    Routing,
    ShadowProcess,
    ShadowScorer,
    _Copy,
    _logged_copies,
    _Tally,
)
from mlsd.spec import ServingSpec


@dataclass
class FakeModel:
    """What the router touches of a ServedModel."""

    version: int
    folder: Path = Path("/nowhere")
    calls: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.version)

    @property
    def package(self):
        return SimpleNamespace(folder=self.folder, signature={"inputs": [{"name": "x"}]})

    @property
    def validator(self):

        class V:
            def validate(self, instances):
                accepted = [i for i, row in enumerate(instances) if row.get("x") is not None]
                return SimpleNamespace(
                    accepted=accepted,
                    problems=[{"instance": i} for i in range(len(instances)) if i not in accepted],
                    columns={"x": [instances[i]["x"] for i in accepted]},
                )

        return V()

    def predict(self, columns):
        self.calls.append(columns)
        return [{"value": float(self.version)} for _ in columns["x"]]


def table(weights=(0.5, 0.5), shadows=(), unit_field="user", salt="s1") -> RoutingTable:
    arms = tuple(
        Arm(name=f"a{i}", version=i + 1, package=f"/p/{i + 1}", weight=w)
        for i, w in enumerate(weights)
    )
    return RoutingTable(
        system="sys",
        experiment="exp",
        strategy="ab",
        salt=salt,
        arms=arms,
        shadows=tuple(shadows),
        unit_field=unit_field,
    )


def routing_of(t: RoutingTable, **models: FakeModel) -> Routing:
    def routed(arm: Arm) -> Routed:
        return Routed(arm, models.get(arm.name) or FakeModel(arm.version))

    return Routing(t, tuple(map(routed, t.arms)), tuple(map(routed, t.shadows)))


def test_the_same_unit_gets_the_same_arm_across_calls_and_instances():
    t = table()
    one, two = routing_of(t), routing_of(RoutingTable.from_dict(t.to_dict()))
    for u in range(300):
        instances = [{"user": u, "x": 1.0}]
        first, routed = one.choose(instances, f"req-{u}-a")
        assert routed["unit"] == str(u) and routed["experiment"] == "exp" and routed["p"] == 0.5
        for rid in ("b", "c"):
            again, routed_again = one.choose(instances, f"req-{u}-{rid}")
            assert again.label == first.label and routed_again["arm"] == routed["arm"]
        other, routed_other = two.choose(instances, "elsewhere")
        assert other.label == first.label and routed_other == {**routed}


def test_arm_shares_follow_the_weights_over_20k_units():
    weights = (0.2, 0.3, 0.5)
    r = routing_of(table(weights))
    n = 20_000
    counts = {f"a{i}": 0 for i in range(3)}
    for u in range(n):
        _, routed = r.choose([{"user": f"u{u}"}], "rid")
        counts[routed["arm"]] += 1
        assert routed["p"] == weights[int(routed["arm"][1])]
    for i, w in enumerate(weights):
        sd = math.sqrt(n * w * (1 - w))
        assert abs(counts[f"a{i}"] - n * w) < 4.5 * sd, counts


def test_unit_from_the_unit_field_else_the_request_id():
    r = routing_of(table())
    assert r.unit([{"user": 7, "x": 1}], "rid") == "7"
    assert r.unit([{"user": "ann"}, {"user": "bob"}], "rid") == "ann"  # the first instance
    assert r.unit([{"user": None}], "rid") == "rid"
    assert r.unit([{"x": 1}], "rid") == "rid"
    assert r.unit([], "rid") == "rid"
    assert r.unit("not a list", "rid") == "rid"
    assert r.unit([["a list"]], "rid") == "rid"
    no_field = routing_of(table(unit_field=None))
    assert no_field.unit([{"user": 7}], "rid") == "rid"
    # the same unit sent by the field and as a request id lands in the same arm
    assert r.choose([{"user": "k"}], "x")[1]["arm"] == r.choose([{}], "k")[1]["arm"]


def logged(rid: str, x: float, *, instance: int = 0, experiment: str | None = "exp") -> bytes:
    """A prediction log line as the server writes it (routed when ``experiment`` is given)."""
    row = {"request_id": rid, "instance": instance, "ts": 1.0, "inputs": {"x": x}, "output": 0}
    if experiment is not None:
        row.update(experiment=experiment, arm="a1", unit=rid, p=0.5)
    return orjson.dumps(row) + b"\n"


def test_the_shadow_process_queue_drops_when_full_and_counts_what_it_cannot_score(tmp_path):
    import os
    import signal

    t = table(shadows=[Arm(name="sh", version=9, package=str(tmp_path / "no-package"))])
    r = routing_of(t)
    metrics = ServerMetrics()
    log = SimpleNamespace(folder=tmp_path / "log", flush=lambda timeout=None: True)
    shadow = ShadowProcess(log, metrics, "sys", ServingSpec(), max_queue=20)
    shadow.tap([logged("r0", 0.0)])
    assert shadow._proc is None  # no table with shadows followed: nothing is sent
    shadow.follow(r)
    assert shadow.drain(60)  # the child starts and is told the table
    os.kill(shadow._proc.pid, signal.SIGSTOP)  # a child that takes nothing: the pipe fills
    try:
        wide = [logged(f"w{i}", float(i)) + b" " * 100_000 for i in range(11)]
        started = time.perf_counter()
        for i in range(0, 11):
            shadow.tap([wide[i]])  # about 1 MiB: the pipe is full
        for i in range(40):
            shadow.tap([logged(f"r{i}", float(i))])
        assert time.perf_counter() - started < 0.5  # never waits for the child
        assert shadow.dropped >= 20 and metrics.shadow_dropped._value.get() == shadow.dropped
    finally:
        os.kill(shadow._proc.pid, signal.SIGCONT)
    assert shadow.drain(60)  # the child cannot load the package: every copy it got is an error
    assert shadow.errors == 51 - shadow.dropped
    assert metrics.shadow_errors._value.get() == shadow.errors
    shadow.close()
    assert shadow._proc.poll() == 0


def test_a_shadow_process_that_dies_is_started_again_and_what_it_lost_counts(tmp_path):
    import os
    import signal

    t = table(shadows=[Arm(name="sh", version=9, package=str(tmp_path / "no-package"))])
    metrics = ServerMetrics()
    log = SimpleNamespace(folder=tmp_path / "log", flush=lambda timeout=None: True)
    shadow = ShadowProcess(log, metrics, "sys", ServingSpec())
    shadow.follow(routing_of(t))
    assert shadow.drain(60)
    first = shadow._proc
    os.kill(first.pid, signal.SIGSTOP)  # takes a frame and never answers it
    shadow.tap([logged("a", 1.0), logged("b", 2.0)])
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    shadow.tap([logged("c", 3.0)])  # a new child, told the table again
    assert shadow.drain(60)
    assert shadow._proc is not first and shadow._proc.poll() is None
    # a and b died with the first child; the second has no package for c: three errors
    assert shadow.errors == 3 and metrics.shadow_errors._value.get() == 3
    shadow.close()


def test_a_mirror_share_copies_that_share_of_requests_and_the_same_ones_everywhere(tmp_path):
    import dataclasses

    t = dataclasses.replace(
        table(shadows=[Arm(name="sh", version=9, package=str(tmp_path / "no-package"))]),
        mirror=0.25,
    )
    ids = [f"r{i}" for i in range(20_000)]
    picked = {rid for rid in ids if t.mirrored(rid)}
    assert abs(len(picked) - 5_000) < 4.5 * math.sqrt(20_000 * 0.25 * 0.75), len(picked)
    assert {rid for rid in ids if RoutingTable.from_dict(t.to_dict()).mirrored(rid)} == picked
    other = {rid for rid in ids if dataclasses.replace(t, salt="s2").mirrored(rid)}
    assert abs(len(picked & other) - 1_250) < 200  # another experiment, another sample
    assert all(dataclasses.replace(t, mirror=1.0).mirrored(rid) for rid in ids[:100])
    with pytest.raises(routing.RoutingError, match="must be in"):
        dataclasses.replace(t, mirror=0.0)
    # the shadow process keeps the mirrored requests of the experiment from the log's lines
    lines = b"".join(logged(rid, 1.0) for rid in ids[:400])
    lines += logged("other", 1.0, experiment="exp-2") + logged("pinned", 1.0, experiment=None)
    model = FakeModel(9)
    copies = _logged_copies(lines, {t.experiment: t}, lambda version, folder: model, _Tally())
    assert [c.request_id for c in copies] == [rid for rid in ids[:400] if rid in picked]


def test_a_logged_request_of_several_instances_is_one_copy_with_its_places():
    t = table(shadows=[Arm(name="sh", version=9, package="/p/9")])
    lines = logged("a", 1.0, instance=0) + logged("b", 2.0) + logged("a", 3.0, instance=2)
    model = FakeModel(9)
    copies = _logged_copies(lines, {t.experiment: t}, lambda version, folder: model, _Tally())
    assert [(c.request_id, c.instances, c.positions) for c in copies] == [
        ("a", [{"x": 1.0}, {"x": 3.0}], [0, 2]),
        ("b", [{"x": 2.0}], [0]),
    ]
    assert {c.routed.arm.name for c in copies} == {"sh"} and copies[0].ts == 1.0


def test_copies_are_scored_together_and_each_keeps_its_places():
    shadow = FakeModel(9)
    t = table(shadows=[Arm(name="sh", version=9, package="/p/9")])
    r = routing_of(t, sh=shadow)
    (sh,) = r.shadows
    rows: list[dict] = []
    metrics = ServerMetrics()
    scorer = ShadowScorer(SimpleNamespace(shadow=lambda **row: rows.append(row)), metrics)
    scorer.score(
        [
            _Copy(
                sh, "exp", "a", [{"x": 1.0}, {"x": None}, {"x": 3.0}], None, 0.0
            ),  # x=None refused
            _Copy(sh, "exp", "b", [{"x": None}], None, 0.0),  # refused whole: counted as an error
            _Copy(sh, "exp", "c", [{"x": 5.0}, {"x": 6.0}], [2, 7], 0.0),  # a partial answer
        ]
    )
    assert len(shadow.calls) == 1  # one validate and one predict for the three requests
    got = {row["request_id"]: row["positions"] for row in rows}
    assert got == {"a": [0, 2], "c": [2, 7]}
    assert scorer.errors == 1 and metrics.shadow_errors._value.get() == 1
    assert sum(len(row["outputs"]) for row in rows) == 4
    assert rows[0]["experiment"] == "exp" and rows[0]["model_version"] == "9"
    assert metrics.shadow_predictions.labels(arm="sh")._value.get() == 4


def test_a_table_naming_a_broken_package_raises_and_the_server_keeps_its_state(tmp_path):
    from mlsd.serving.app import Server

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    t = RoutingTable(
        system="sys",
        experiment="exp",
        strategy="canary",
        salt="s",
        arms=(Arm(name="champion", version=1, package=str(broken), weight=1.0),),
    )
    with pytest.raises(ServingError, match="arm 'champion'"):
        Routing.build(t, "sys", ServingSpec())

    server = Server(tmp_path / "ws", "sys", ServingSpec(poll_s=0))
    try:
        champion = FakeModel(1, folder=tmp_path / "champ")
        server.model = champion  # what load() would have put there
        previous = routing_of(table())
        server.routing = previous
        routing.publish(server.root, t)
        with pytest.raises(ServingError):
            server.load_routing()
        assert server.routing is previous  # the previous experiment keeps routing
        assert "arm 'champion'" in server.routing_error
        assert server.metrics.routing_failures._value.get() == 1
        routing.routing_path(server.root, "sys").write_text('{"arms": []}')  # malformed
        with pytest.raises(routing.RoutingError):
            server.load_routing()
        assert server.routing is previous and server.metrics.routing_failures._value.get() == 2
        routing.clear(server.root, "sys")  # no table: back to the champion
        assert server.load_routing() == {"routing": None}
        assert server.routing is None and server.routing_error is None
        assert server.served() is champion
    finally:
        server.close()
