"""The rollout controller on real parts: trained and registered versions, MLflow on SQLite,
the prediction log written the way the server writes it (each row with its experiment, arm,
unit and assignment probability, assigned by the published routing table), labels arriving
as feedback. Time is simulated: every row and decision carries an explicit timestamp.

Three versions of one regression system: 1 (the champion) and 3 learned the world as it is;
2 learned another world and is worse on today's traffic."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "loop"))
from loop_helpers import OTHER, champion, frame, three_versions

from mlsd.cli import main
from mlsd.events import EventLog
from mlsd.models import aliases, package, routing
from mlsd.predlog.writer import PredictionLog
from mlsd.rollout import controller
from mlsd.rollout.experiment import RolloutError, latest
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

ROLLOUT = """rollout:
  canary: {steps: [10, 50, 100], min_requests: 30, min_duration: 1m, margin: 0.3}
  shadow: {min_requests: 100, min_duration: 1m, margin: 0.3}
  ab: {mde: 0.1}
  bandit: {min_requests: 40, floor: 0.1}
"""
T0 = 1_800_000_000.0  # simulated time: every row and decision is stamped explicitly


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return three_versions(tmp_path_factory.mktemp("rollout") / "system", ROLLOUT)


@pytest.fixture
def system(trained, tmp_path):
    """A private copy of the trained system (the registry and aliases are changed)."""
    folder = tmp_path / "system"
    shutil.copytree(trained, folder)
    spec = load_spec(folder / "system.yaml")
    ws = Workspace.for_spec(spec)
    published = json.loads(aliases.aliases_path(ws.root, spec.name).read_text())
    assert published["aliases"]["champion"] == 1 and len(published["versions"]) == 3
    return spec, ws


class Clients:
    """Sends traffic the way the server logs it: each unit assigned by the published table,
    scored by its arm's package (and by the shadows), labelled ``delay`` seconds later."""

    def __init__(self, spec, ws):
        self.spec, self.ws, self.sent, self.models = spec, ws, 0, {}

    def _model(self, arm):
        if arm.version not in self.models:
            self.models[arm.version] = package.load(arm.package)
        return self.models[arm.version]

    def send(self, n: int, at: float, *, coef=None, labelled=True) -> float:
        """``n`` single-instance requests from new units, one a second from ``at``; returns
        the time after the last."""
        table = routing.read(self.ws.root, self.spec.name)
        seed = 1000 + self.sent
        rows = frame(n, seed) if coef is None else frame(n, seed, coef=coef)
        units = [f"u{self.sent + i}" for i in range(n)]
        chosen = [table.assign(u) for u in units]
        columns = {c: rows[c].to_numpy() for c in "abcd"}
        answers = {
            arm.name: self._model(arm).predict_matrix(columns)
            for arm in (*table.arms, *table.shadows)
        }
        with PredictionLog(self.ws) as log:
            for i, (unit, (arm, p)) in enumerate(zip(units, chosen, strict=True)):
                ts = at + i
                inputs = [{c: float(rows[c].iloc[i]) for c in "abcd"}]
                log.prediction(
                    request_id=unit,
                    model_version=str(arm.version),
                    inputs=inputs,
                    outputs=[{"value": float(answers[arm.name][i])}],
                    latency_ms=2.0,
                    ts=ts,
                    routed={"experiment": table.experiment, "arm": arm.name, "unit": unit, "p": p},
                )
                for shadow in table.shadows if table.mirrored(unit) else ():
                    log.shadow(
                        request_id=unit,
                        model_version=str(shadow.version),
                        experiment=table.experiment,
                        arm=shadow.name,
                        outputs=[{"value": float(answers[shadow.name][i])}],
                        latency_ms=3.0,
                        ts=ts,
                    )
                if labelled:
                    log.feedback(request_id=unit, label=float(rows["y"].iloc[i]), ts=ts + 0.5)
        self.sent += n
        return at + n


def _events(ws, kind):
    return EventLog(ws.root / "events.sqlite").read(kind=kind)


def _champion(spec, ws) -> int:
    return aliases.read(ws.root, spec.name)["aliases"]["champion"]


def test_a_canary_walks_its_steps_and_promotes_a_model_that_is_not_worse(system):
    spec, ws = system
    experiment = controller.start(spec, ws, ["3"], "canary", now=T0)
    table = routing.read(ws.root, spec.name)
    assert [(a.name, a.version, a.weight) for a in table.arms] == [
        ("challenger", 3, pytest.approx(0.1)),
        ("champion", 1, pytest.approx(0.9)),
    ]
    clients, t = Clients(spec, ws), T0
    t = clients.send(20, t)
    _, decision = controller.step(spec, ws, now=t)
    assert decision.action == "hold"  # too few requests, and a step is held for min_duration
    assert any("more challenger requests" in w for w in decision.waiting_for)
    assert any("40 s more at 10%" in w for w in decision.waiting_for)
    shares = []
    for _ in range(6):
        t = clients.send(400, t + 60)
        experiment, decision = controller.step(spec, ws, now=t + 61)
        shares.append(experiment.weights.get("challenger"))
        if decision.action == "promote":
            break
    assert decision.action == "promote", decision.to_dict()
    assert list(dict.fromkeys(shares)) == [pytest.approx(0.5), pytest.approx(1.0)]
    assert experiment.status == "promoted" and _champion(spec, ws) == 3
    assert routing.read(ws.root, spec.name) is None  # everything back on the champion alias
    ni = decision.evidence["non_inferiority"]
    assert ni["status"] == "pass" and ni["metric"] == "mae"
    ended = _events(ws, "rollout_ended")[-1]
    assert ended["evidence"]["status"] == "promoted" and ended["model_version"] == "3"
    assert [e["kind"] for e in _events(ws, ["rollout_started", "rollout_advanced"])] == [
        "rollout_started",
        "rollout_advanced",
        "rollout_advanced",
    ]
    report = ws.reports / f"rollout-{experiment.id}.html"
    assert report.exists() and "challenger" in report.read_text()


def test_a_canary_of_a_worse_model_rolls_back_to_the_champion(system, capsys):
    spec, ws = system
    controller.start(spec, ws, ["2"], "canary", now=T0)
    clients, t = Clients(spec, ws), T0
    for _ in range(4):
        t = clients.send(300, t + 60)
        experiment, decision = controller.step(spec, ws, now=t + 61)
        if decision.action != "hold" and decision.action != "advance":
            break
    assert decision.action == "rolled_back", decision.to_dict()
    assert experiment.status == "rolled_back" and _champion(spec, ws) == 1
    assert routing.read(ws.root, spec.name) is None
    assert "mae is worse than the champion's" in decision.reasons[0]
    ni = decision.evidence["non_inferiority"]
    assert ni["status"] == "fail" and ni["ci_high"] < -ni["margin"]
    assert main(["rollout", "status", "-c", str(spec.path)]) == 0
    out = capsys.readouterr().out
    assert "rolled_back" in out and "mae is worse" in out


def test_an_ab_test_promotes_the_better_model_with_an_always_valid_p_value(system):
    spec, ws = system
    # today's world is the one version 2 learned: it should win
    clients, t = Clients(spec, ws), T0
    experiment = controller.start(spec, ws, ["2"], "ab", now=T0)
    assert experiment.weights == {"challenger": 0.5, "champion": 0.5}
    for _ in range(10):
        t = clients.send(100, t, coef=OTHER)
        experiment, decision = controller.step(spec, ws, now=t)
        if decision.action != "hold":
            break
    assert decision.action == "promote" and decision.winner == "challenger"
    result = decision.evidence["metrics"]["mae"]
    assert result["always_valid_p"] < 0.05 and result["ci_high"] < 0  # lower MAE
    assert decision.evidence["srm"]["mismatch"] is False
    assert _champion(spec, ws) == 2


def test_an_ab_test_refuses_to_decide_on_a_sample_ratio_mismatch(system):
    spec, ws = system
    experiment = controller.start(spec, ws, ["3"], "ab", now=T0)
    clients = Clients(spec, ws)
    t = clients.send(400, T0)
    # a broken assignment: 150 more units logged on the champion only
    with PredictionLog(ws) as log:
        for i in range(150):
            log.prediction(
                request_id=f"extra{i}",
                model_version="1",
                inputs=[{"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0}],
                outputs=[{"value": 0.0}],
                latency_ms=1.0,
                ts=t + i,
                routed={"experiment": experiment.id, "arm": "champion", "unit": f"x{i}", "p": 0.5},
            )
    _, decision = controller.step(spec, ws, now=t + 200)
    assert decision.action == "hold"
    assert decision.evidence["srm"]["mismatch"] is True
    assert "sample ratio mismatch" in decision.reasons[0]


def test_a_shadow_compares_both_models_on_the_same_requests(system):
    spec, ws = system
    controller.start(spec, ws, ["3"], "shadow", now=T0)
    table = routing.read(ws.root, spec.name)
    assert [(a.name, a.weight) for a in table.arms] == [("champion", 1.0)]
    assert [s.version for s in table.shadows] == [3]
    clients = Clients(spec, ws)
    t = clients.send(300, T0)
    _, decision = controller.step(spec, ws, now=t + 120)
    assert decision.evidence["pairs"] == 300
    drift = decision.evidence["prediction_drift"]
    assert drift["tested"] and not drift["drifted"]
    quantiles = decision.evidence["abs_difference_quantiles"]
    assert 0 <= quantiles["p50"] <= quantiles["p99"] < 1  # two fits of the same world
    assert decision.evidence["latency_ms"]["shadow"]["p50"] == pytest.approx(3.0)
    assert decision.action == "promote", decision.to_dict()
    assert _champion(spec, ws) == 3


def test_a_shadow_mirroring_half_the_requests_decides_on_those_pairs(system):
    spec, ws = system
    spec = spec.model_copy(deep=True)
    spec.rollout.shadow.share = 0.5
    controller.start(spec, ws, ["3"], "shadow", now=T0)
    table = routing.read(ws.root, spec.name)
    assert table.mirror == 0.5
    t = Clients(spec, ws).send(300, T0)
    mirrored = sum(table.mirrored(f"u{i}") for i in range(300))
    assert 110 < mirrored < 190
    _, decision = controller.step(spec, ws, now=t + 120)
    assert decision.evidence["pairs"] == mirrored
    assert decision.action == "promote", decision.to_dict()


def test_a_shadow_of_a_worse_model_stops_and_the_champion_stays(system):
    spec, ws = system
    controller.start(spec, ws, ["2"], "shadow", now=T0)
    t = Clients(spec, ws).send(300, T0)
    experiment, decision = controller.step(spec, ws, now=t + 120)
    assert decision.action == "stopped" and experiment.status == "stopped"
    assert decision.evidence["non_inferiority"]["status"] == "fail"
    assert _champion(spec, ws) == 1 and routing.read(ws.root, spec.name) is None


def test_a_bandit_starves_the_worse_arm(system):
    spec, ws = system
    experiment = controller.start(spec, ws, ["2", "3"], "bandit", now=T0)
    assert set(experiment.weights) == {"champion", "challenger1", "challenger2"}
    clients, t = Clients(spec, ws), T0
    t = clients.send(60, t)
    _, decision = controller.step(spec, ws, now=t)
    assert (
        decision.action == "hold" and "40 labelled requests on every arm" in decision.waiting_for[0]
    )
    t = clients.send(200, t)
    experiment, decision = controller.step(spec, ws, now=t)
    # version 2 learned another world: it keeps only its floor share of the traffic (or,
    # when one good arm is already shown best, the bandit ends on it)
    assert decision.evidence["p_best"]["challenger1"] < 0.01
    assert decision.evidence["weights"]["challenger1"] == pytest.approx(0.1 / 3, abs=1e-3)
    assert decision.action in ("reweight", "promote", "stopped")
    if decision.action == "reweight":  # every change of traffic is an event
        event = _events(ws, "rollout_reweighted")[-1]
        assert event["evidence"]["weights"] == pytest.approx(experiment.weights)
    else:
        assert _events(ws, "rollout_ended")[-1]["evidence"]["status"] == experiment.status
    ips = decision.evidence["ips"]
    assert ips["challenger1"]["mean"] < min(ips["champion"]["mean"], ips["challenger2"]["mean"])
    # versions 1 and 3 learned the same world: the bandit goes on, or ends on one of them
    while experiment.running and len(experiment.history) < 6:
        t = clients.send(200, t)
        experiment, decision = controller.step(spec, ws, now=t)
    assert decision.action in ("reweight", "promote", "stopped")
    assert decision.winner in (None, "challenger2")
    assert _champion(spec, ws) in (1, 3)


def test_a_crash_while_promoting_is_finished_by_the_next_step(system, monkeypatch):
    spec, ws = system
    controller.start(spec, ws, ["3"], "canary", now=T0)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while moving the alias")

    from mlsd.models.registry import Registry

    real = Registry.promote
    monkeypatch.setattr(Registry, "promote", crash)
    with pytest.raises(KeyboardInterrupt):
        controller.promote(spec, ws)
    state = latest(ws)
    assert state.running and state.outcome == "promoting"
    assert routing.read(ws.root, spec.name) is not None  # traffic still split: consistent
    monkeypatch.setattr(Registry, "promote", real)
    experiment, decision = controller.step(spec, ws, now=T0 + 10)
    assert decision.action == "promote" and experiment.status == "promoted"
    assert _champion(spec, ws) == 3 and routing.read(ws.root, spec.name) is None


def test_starting_twice_or_with_the_champion_is_refused(system):
    spec, ws = system
    with pytest.raises(RolloutError, match="different versions"):
        controller.start(spec, ws, ["1"], "canary")
    with pytest.raises(RolloutError, match="one model"):
        controller.start(spec, ws, ["2", "3"], "canary")
    controller.start(spec, ws, ["2"], "canary")
    with pytest.raises(RolloutError, match="still running"):
        controller.start(spec, ws, ["3"], "ab")
    controller.abort(spec, ws, "test")
    assert routing.read(ws.root, spec.name) is None and latest(ws).status == "aborted"


def test_the_planner_sizes_the_test_from_the_champions_labelled_traffic(system, capsys):
    spec, ws = system
    with pytest.raises(RolloutError, match="fewer than 30 labelled units"):
        controller.plan(spec, ws)
    rows = frame(200, 99)
    with PredictionLog(ws) as log:
        for i, row in enumerate(rows.to_dict("records")):
            y = row.pop("y")
            log.prediction(
                request_id=f"p{i}",
                model_version="1",
                inputs=[row],
                outputs=[{"value": y + 0.3}],
                latency_ms=1.0,
                ts=T0 + i,
            )
            log.feedback(request_id=f"p{i}", label=y, ts=T0 + i + 0.5)
    result = controller.plan(spec, ws)
    assert result["metric"] == "mae" and result["baseline"]["mean"] == pytest.approx(0.3)
    assert result["n_total"] > result["fixed_horizon_n_total"] > 0
    assert main(["rollout", "plan", "-c", str(spec.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_total"] == result["n_total"]


def test_models_history_shows_the_rollout_promotion(system, capsys):
    spec, ws = system
    controller.start(spec, ws, ["3"], "canary", now=T0)
    controller.promote(spec, ws)
    assert main(["models", "--history", "-c", str(spec.path)]) == 0
    out = capsys.readouterr().out
    assert "rollout" in out and "canary" in out and "promoted by hand" in out


def test_retraining_hands_the_challenger_to_the_rollout_and_the_loop_steps_it(tmp_path):
    from loop_helpers import serve

    from mlsd.loop.retrain import RETRAIN_ROLLOUT, retrain
    from mlsd.loop.run import run_iteration

    extra = (
        "retraining: {triggers: [{new_labels: 100}], window: {rows: 600}, promote: rollout}\n"
        "rollout: {strategy: canary}\n"
    )
    spec, ws = champion(tmp_path / "system", frame(1200, 0), extra)
    serve(ws, frame(800, 1, coef=OTHER))
    result = retrain(spec, ws, if_needed=True, progress=False)
    assert result.exit_code == 0 and not result.promoted
    assert result.rollout["strategy"] == "canary" and result.challenger_version == 2
    assert _champion(spec, ws) == 1  # live traffic decides, not the offline gate
    table = routing.read(ws.root, spec.name)
    assert {a.version: a.weight for a in table.arms} == {2: 0.05, 1: 0.95}
    assert _events(ws, RETRAIN_ROLLOUT)[-1]["model_version"] == "2"
    it = run_iteration(spec, ws)  # a running experiment is stepped, not retrained again
    assert it.retrain is None and it.rollout["action"] == "hold" and it.exit_code == 0
    assert "rollout canary: hold" in it.line()


def test_the_cli_starts_steps_and_aborts_with_text_and_json(system, capsys):
    spec, ws = system
    config = ["-c", str(spec.path)]
    assert main(["rollout", "status", *config]) == 0
    assert "no experiment yet" in capsys.readouterr().out
    assert main(["rollout", "start", "--strategy", "ab", "--model", "3", *config]) == 0
    out = capsys.readouterr().out
    assert "ab " in out and "started: challenger 50%, champion 50%" in out
    assert main(["rollout", "step", "--json", *config]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["decision"]["action"] == "hold" and state["experiment"]["status"] == "running"
    assert state["report"].endswith(".html") and Path(state["report"]).exists()
    assert main(["rollout", "abort", "--reason", "wrong model", *config]) == 0
    out = capsys.readouterr().out
    assert "aborted (wrong model)" in out
    assert main(["rollout", "abort", *config]) == 2  # nothing runs: a clear error
    assert "has no running experiment" in capsys.readouterr().err
    assert routing.read(ws.root, spec.name) is None
