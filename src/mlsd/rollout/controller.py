"""``mlsd rollout``: start an experiment, take its decisions, end it.

The controller is the only writer of the routing table and of an experiment's state. Each
change is ordered so that a crash between two writes leaves a consistent system: the
champion alias moves before the table is cleared (both say the winner answers), and the
table is cleared before the state says the experiment ended (a rerun finishes the job).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsd.events import EventLog
from mlsd.models import aliases, routing
from mlsd.rollout import online, stats
from mlsd.rollout.decide import ADVANCE, HOLD, PROMOTE, REWEIGHT, Context, Decision, decide
from mlsd.rollout.experiment import (
    Experiment,
    Member,
    RolloutError,
    latest,
    save,
)
from mlsd.rollout.report import write_report
from mlsd.spec import SystemSpec, parse_duration
from mlsd.tasks import get_task
from mlsd.tasks.online_metrics import OnlineMetric, default_online, online_metric
from mlsd.workspace import Workspace

STARTED, ADVANCED, REWEIGHTED, ENDED = (
    "rollout_started",
    "rollout_advanced",
    "rollout_reweighted",
    "rollout_ended",
)
_PROMOTING = "promoting"  # the outcome while the aliases move: a rerun finishes the job


def _events(ws: Workspace) -> EventLog:
    return EventLog(ws.root / "events.sqlite")


def running(ws: Workspace) -> Experiment | None:
    """The experiment taking decisions now, if any."""
    experiment = latest(ws)
    return experiment if experiment is not None and experiment.running else None


def _member(ws: Workspace, ref: str | int, name: str) -> Member:
    version, folder = aliases.resolve(ws.root, ws.system, ref)
    if version is None:
        raise RolloutError(
            f"{ref!r} is a package folder, not a registered version",
            hint="register it first (mlsd train registers what passes the gate)",
        )
    return Member(name, int(version), str(folder))


def metrics_of(spec: SystemSpec, strategy: str | None = None) -> list[OnlineMetric]:
    """The online metrics that decide, the first one first (``metrics.online``, else the
    task's default; a bandit's ``rollout.bandit.reward`` goes first)."""
    task = get_task(spec.problem.task)
    names = list(spec.metrics.online or [default_online(task)])
    reward = spec.rollout.bandit.reward
    if strategy == "bandit" and reward:
        names = [reward, *(n for n in names if n != reward)]
    return [online_metric(n, task) for n in names]


def _signature(package: str) -> dict[str, Any]:
    """The package's signature; a recommender's package has none (its output is a score)."""
    path = Path(package) / "signature.json"
    return json.loads(path.read_text()) if path.exists() else {"output": {}}


def start(
    spec: SystemSpec,
    ws: Workspace,
    models: list[str],
    strategy: str | None = None,
    *,
    now: float | None = None,
    salt: str | None = None,
) -> Experiment:
    """Start ``strategy`` (default: ``rollout.strategy``) of ``models`` (refs: versions or
    aliases) against the champion; publish its routing table and record the event.

    The assignment's salt defaults to the experiment's key (system, strategy and versions),
    so the same experiment started again splits the units the same way; pass ``salt`` to
    draw a new split."""
    strategy = strategy or spec.rollout.strategy
    if strategy == "direct":
        raise RolloutError(
            "strategy direct has no experiment: the champion alias moves at once",
            hint="use `mlsd promote VERSION`, or pick shadow, canary, ab or bandit",
        )
    current = running(ws)
    if current is not None:
        raise RolloutError(
            f"experiment {current.id} ({current.strategy}) is still running",
            hint="end it first: `mlsd rollout promote` or `mlsd rollout abort`",
        )
    if not models:
        raise RolloutError("no model to roll out", hint="pass --model VERSION (or challenger)")
    champion = _member(ws, "champion", "champion")
    names = (
        ["challenger"] if len(models) == 1 else [f"challenger{i + 1}" for i in range(len(models))]
    )
    challengers = [_member(ws, ref, name) for ref, name in zip(models, names, strict=True)]
    versions = [champion.version, *(m.version for m in challengers)]
    if len(set(versions)) != len(versions):
        raise RolloutError(
            f"the arms must be different versions (champion {champion.version}, models "
            f"{[m.version for m in challengers]})",
            hint="train a new version first, or pass another --model",
        )
    if strategy != "bandit" and len(challengers) != 1:
        raise RolloutError(
            f"{strategy} compares one model with the champion ({len(challengers)} given)",
            hint="pass one --model, or use the bandit strategy for several",
        )
    now = time.time() if now is None else now
    config = getattr(spec.rollout, strategy).model_dump()
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S")
    experiment = Experiment(
        id=f"{stamp}-{strategy}-v{challengers[0].version}",
        system=spec.name,
        strategy=strategy,
        champion=champion,
        challengers=challengers,
        config=config,
        salt=salt or f"{spec.name}/{strategy}/" + "/".join(f"v{v}" for v in versions),
        unit_field=spec.problem.id,
        started_at=now,
        step_started_at=now,
    )
    if strategy == "canary":
        experiment.weights = _canary_weights(config["steps"][0])
    elif strategy == "ab":
        share = config["split"] / 100
        experiment.weights = {"challenger": share, "champion": 1 - share}
        experiment.plan = _plan(spec, ws, experiment)
    elif strategy == "bandit":
        equal = 1 / len(experiment.members)
        experiment.weights = {m.name: equal for m in experiment.members}
    save(ws, experiment)
    routing.publish(ws.root, experiment.table())
    _events(ws).append(
        STARTED,
        f"{strategy} of version(s) {', '.join(str(m.version) for m in challengers)} against "
        f"champion {champion.version} started ({experiment.id})",
        system=spec.name,
        model_version=challengers[0].version,
        evidence={"experiment": experiment.id, "weights": experiment.weights, "config": config},
    )
    return experiment


def _canary_weights(percent: float) -> dict[str, float]:
    share = percent / 100
    return {"challenger": share, "champion": round(1 - share, 12)}


def _plan(spec: SystemSpec, ws: Workspace, experiment: Experiment) -> dict[str, Any]:
    """The A/B test's sample size from the champion's recent labelled traffic (the first
    online metric's mean and spread); {} when there is no labelled traffic yet."""
    baseline = baseline_of(spec, ws, experiment.champion)
    if baseline is None:
        return {}
    cfg = spec.rollout.ab
    plan = stats.plan(
        baseline.mean,
        max(baseline.var, 1e-12) ** 0.5,
        cfg.mde,
        alpha=spec.rollout.alpha,
        power=cfg.power,
        weights=(cfg.split / 100, 1 - cfg.split / 100),
    )
    experiment.tau[metrics_of(spec)[0].name] = plan.tau
    return {**plan.to_dict(), "baseline": baseline.to_dict(), "metric": metrics_of(spec)[0].name}


def baseline_of(spec: SystemSpec, ws: Workspace, champion: Member) -> stats.Sample | None:
    """The champion's per-unit sample of the first online metric over its labelled log rows
    (None when it has fewer than 30 labelled units)."""
    from mlsd.predlog.reader import labelled

    rows = labelled(ws, model_version=str(champion.version)).to_pandas()
    if rows.empty:
        return None
    rows["unit"] = rows["unit"].fillna(rows["request_id"])
    task = get_task(spec.problem.task)
    classes = _signature(champion.package)["output"].get("classes")
    metric = metrics_of(spec)[0]
    sample = online.unit_sample(rows, online.row_values(metric, task, classes, rows))
    return sample if sample.n >= 30 else None


def context(spec: SystemSpec, ws: Workspace, experiment: Experiment, now: float) -> Context:
    """What a decision reads: the task, the arms' traffic since the start, the metrics."""
    task = get_task(spec.problem.task)
    return Context(
        task=task,
        classes=_signature(experiment.champion.package)["output"].get("classes"),
        traffic=online.load_traffic(
            ws,
            experiment.id,
            experiment.started_at,
            # a ranked or recommended item's feedback is a click: silence is a 0
            silent_after=now - parse_duration(spec.data.label_delay) if task.grouped else None,
        ),
        metrics=metrics_of(spec, experiment.strategy),
        alpha=spec.rollout.alpha,
        latency_budget_ms=spec.problem.latency_budget_ms,
        now=now,
        funnel=spec.architecture.funnel,
    )


def step(
    spec: SystemSpec, ws: Workspace, *, now: float | None = None
) -> tuple[Experiment, Decision]:
    """Take one decision for the running experiment, carry it out, and rewrite its page."""
    experiment = _require_running(spec, ws)
    now = time.time() if now is None else now
    ctx = context(spec, ws, experiment, now)
    if experiment.outcome == _PROMOTING:  # a previous decision died while promoting
        winner = experiment.history[-1].get("winner") if experiment.history else None
        decision = Decision(PROMOTE, ["finishing an interrupted promotion"], {}, winner=winner)
    else:
        decision = decide(experiment, ctx)
    apply(spec, ws, experiment, decision, now=now)
    write_report(ws, experiment, ctx)
    return experiment, decision


def apply(
    spec: SystemSpec, ws: Workspace, experiment: Experiment, decision: Decision, *, now: float
) -> None:
    """Carry out ``decision``: move traffic, promote, or end; record it."""
    if decision.action == ADVANCE:
        experiment.step += 1
        experiment.step_started_at = now
        experiment.weights = _canary_weights(experiment.config["steps"][experiment.step])
    elif decision.action == REWEIGHT:
        experiment.weights = dict(decision.evidence["weights"])
    experiment.record({**decision.to_dict(), "weights": dict(experiment.weights)})
    if decision.action not in (HOLD, ADVANCE, REWEIGHT):
        end(spec, ws, experiment, decision.action, decision.reasons, winner=decision.winner)
        return
    save(ws, experiment)
    if decision.action == HOLD:
        _republish_if_stale(ws, experiment)
        return
    routing.publish(ws.root, experiment.table())
    if decision.action == REWEIGHT:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in experiment.weights.items())
        _events(ws).append(
            REWEIGHTED,
            f"bandit {experiment.id} reweighted: {shares}",
            system=spec.name,
            evidence={
                "experiment": experiment.id,
                "weights": experiment.weights,
                **decision.to_dict(),
            },
        )
    if decision.action == ADVANCE:
        share = experiment.config["steps"][experiment.step]
        _events(ws).append(
            ADVANCED,
            f"canary of version {experiment.challengers[0].version} advanced to {share:g}%: "
            + "; ".join(decision.reasons),
            system=spec.name,
            model_version=experiment.challengers[0].version,
            evidence={"experiment": experiment.id, **decision.to_dict()},
        )


def _republish_if_stale(ws: Workspace, experiment: Experiment) -> None:
    """Publish the state's routing table when the published one says otherwise: a decision
    (or a start) killed between saving the state and publishing its table left the server
    on the old shares, and a hold would otherwise never publish them."""
    table = experiment.table()
    try:
        published = routing.read(ws.root, experiment.system)
    except routing.RoutingError:
        published = None
    same = published is not None and (
        (published.experiment, published.arms, published.shadows, published.mirror)
        == (table.experiment, table.arms, table.shadows, table.mirror)
    )
    if not same:
        routing.publish(ws.root, table)


def end(
    spec: SystemSpec,
    ws: Workspace,
    experiment: Experiment,
    outcome: str,
    reasons: list[str],
    *,
    winner: str | None = None,
) -> Experiment:
    """End ``experiment``: promote ``winner`` when the outcome is a promotion, send all
    traffic back to the champion alias, and record the event."""
    promoted = None
    if outcome == PROMOTE:
        member = experiment.member(winner or "challenger")
        experiment.outcome = _PROMOTING
        save(ws, experiment)
        from mlsd.models.registry import Registry

        registry = Registry(ws, spec.name, spec.models.tracking_uri, events=_events(ws))
        reason = f"rollout {experiment.id} ({experiment.strategy}): " + "; ".join(reasons)
        registry.promote(member.version, reason=reason)
        promoted = member.version
    routing.clear(ws.root, spec.name)  # after the alias moved: the server follows it
    experiment.status = "promoted" if outcome == PROMOTE else outcome
    experiment.outcome = "; ".join(reasons)
    experiment.ended_at = time.time()
    save(ws, experiment)
    _events(ws).append(
        ENDED,
        f"{experiment.strategy} {experiment.id} {experiment.status.replace('_', ' ')}: "
        + "; ".join(reasons),
        system=spec.name,
        model_version=promoted or experiment.champion.version,
        evidence={"experiment": experiment.id, "status": experiment.status, "reasons": reasons},
    )
    return experiment


def promote(spec: SystemSpec, ws: Workspace, arm: str | None = None) -> Experiment:
    """End the running experiment now by promoting ``arm`` (default: the challenger)."""
    experiment = _require_running(spec, ws)
    name = arm or experiment.challengers[0].name
    experiment.member(name)  # an unknown arm fails before anything moves
    end(spec, ws, experiment, PROMOTE, [f"promoted by hand ({name})"], winner=name)
    write_report(ws, experiment, None)
    return experiment


def abort(spec: SystemSpec, ws: Workspace, reason: str = "") -> Experiment:
    """End the running experiment now; the champion answers everything again."""
    experiment = _require_running(spec, ws)
    end(spec, ws, experiment, "aborted", [reason or "aborted by hand"])
    write_report(ws, experiment, None)
    return experiment


def _require_running(spec: SystemSpec, ws: Workspace) -> Experiment:
    experiment = running(ws)
    if experiment is None:
        raise RolloutError(
            f"{spec.name!r} has no running experiment",
            hint="`mlsd rollout status` shows the latest one",
        )
    return experiment


def status(spec: SystemSpec, ws: Workspace, *, now: float | None = None) -> dict[str, Any]:
    """The latest experiment: arms and shares, sample sizes, each statistic, and (while it
    runs) the decision it would take now and what it waits for; nothing is changed."""
    experiment = latest(ws)
    if experiment is None:
        return {"experiment": None}
    out: dict[str, Any] = {"experiment": experiment.to_dict()}
    out["experiment"].pop("history")
    out["decisions"] = len(experiment.history)
    out["last_decision"] = experiment.history[-1] if experiment.history else None
    if experiment.running:
        now = time.time() if now is None else now
        out["now"] = decide(experiment, context(spec, ws, experiment, now)).to_dict()
    return out


def plan(
    spec: SystemSpec,
    ws: Workspace,
    *,
    mean: float | None = None,
    sd: float | None = None,
    mde: float | None = None,
) -> dict[str, Any]:
    """The sample size an A/B test of ``rollout.ab`` needs: from ``mean`` and ``sd`` of the
    first online metric when given, else from the champion's labelled traffic."""
    cfg = spec.rollout.ab
    source = "given"
    if mean is None or sd is None:
        champion = _member(ws, "champion", "champion")
        baseline = baseline_of(spec, ws, champion)
        if baseline is None:
            raise RolloutError(
                "the champion has fewer than 30 labelled units to take the baseline from",
                hint="pass --baseline MEAN --sd SD (e.g. --baseline 0.1 --sd 0.3 for a 10% rate)",
            )
        mean, sd, source = baseline.mean, baseline.var**0.5, f"champion {champion.version}'s log"
    result = stats.plan(
        mean,
        sd,
        mde if mde is not None else cfg.mde,
        alpha=spec.rollout.alpha,
        power=cfg.power,
        weights=(cfg.split / 100, 1 - cfg.split / 100),
    )
    return {
        "metric": metrics_of(spec)[0].name,
        "baseline": {"mean": mean, "sd": sd, "from": source},
        **result.to_dict(),
    }
