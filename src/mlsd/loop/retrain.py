"""``mlsd retrain``: triggers, fresh data, a challenger trained as ``mlsd train`` does, the
champion/challenger gate, and promotion.

The order is the crash-safe one. Nothing in the registry changes until the challenger's
package is complete (``train`` builds packages atomically and sets aliases last); the
champion alias moves only at the very end, once the gate has passed. A run killed anywhere
leaves the registry and the serving model as they were (at most a new ``challenger``).

The gate, in order: the challenger passed ``train``'s own gate (beat the baselines, every
guardrail, every blocking behavioural test) → it beats the champion on the fresh holdout by
``retraining.beat_champion_by`` on the primary metric → it passes every guardrail on the
fresh holdout. Either way one event (``retrain_promoted`` / ``retrain_refused``) records the
triggers, the data, the comparison and the reasons; ``retrain.json`` and ``retrain.html``
are written to the workspace's reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mlsd.events import EventLog, jsonable
from mlsd.loop.data import champion, to_epoch
from mlsd.spec import SystemSpec
from mlsd.workspace import Workspace, write_json

RETRAIN_PROMOTED = "retrain_promoted"
RETRAIN_ROLLOUT = "retrain_rolled_out"  # passed the gate; a rollout decides on live traffic
RETRAIN_REFUSED = "retrain_refused"
_EVIDENCE = (  # what the event keeps of the result
    "champion_version",
    "challenger_version",
    "promoted",
    "triggers",
    "data",
    "validation",
    "training",
    "comparison",
    "reasons",
    "report",
)


@dataclass
class RetrainResult:
    """What one ``mlsd retrain`` decided, and why."""

    system: str
    triggers: list[dict[str, Any]] = field(default_factory=list)
    needed: bool = True  # a trigger fired (or the retrain was asked for without --if-needed)
    trained: bool = False
    promoted: bool = False
    champion_version: int | None = None  # before the retrain
    challenger_version: int | None = None
    comparison: dict[str, Any] | None = None
    rollout: dict[str, Any] | None = None  # the experiment the challenger was handed to
    reasons: list[str] = field(default_factory=list)  # why not promoted (or not run)
    data: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # the challenger's train summary
    report: dict[str, str] = field(default_factory=dict)  # json/html paths
    event_id: int | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 promoted, handed to a rollout or not needed; 1 retrained (or tried to) but the
        gate refused."""
        return 0 if self.promoted or self.rollout or not self.needed else 1

    @property
    def fired(self) -> list[dict[str, Any]]:
        """The triggers that fired."""
        return [t for t in self.triggers if t["fired"]]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` object of ``mlsd retrain``."""
        return jsonable(
            {
                "system": self.system,
                "needed": self.needed,
                "trained": self.trained,
                "promoted": self.promoted,
                "champion_version": self.champion_version,
                "challenger_version": self.challenger_version,
                "triggers": self.triggers,
                "comparison": self.comparison,
                "rollout": self.rollout,
                "reasons": self.reasons,
                "data": self.data,
                "validation": self.validation,
                "training": self.training,
                "report": self.report,
                "event_id": self.event_id,
                "exit_code": self.exit_code,
                "seconds": round(self.seconds, 3),
            }
        )

    def summary_lines(self) -> list[str]:
        """What a person reads after ``mlsd retrain``."""
        lines = [f"retrain {self.system}: champion is version {self.champion_version}"]
        for t in self.triggers:
            lines.append(
                f"  trigger {t['name']}: {'FIRED' if t['fired'] else 'quiet'} — {t['reason']}"
            )
        if not self.triggers:
            lines.append("  no retraining.triggers in the spec")
        if not self.needed:
            lines.append("not needed: no trigger fired (--if-needed); the champion stays")
            return lines
        if self.data:
            c = self.data["counts"]
            lines.append(
                f"data: {c['train_rows']:,} training rows ({self.data['window']}; "
                f"{c['train_rows_from_log']:,} from the log), fresh holdout of "
                f"{c['holdout_rows']:,} labelled log rows"
            )
        if self.challenger_version is not None:
            lines.append(
                f"challenger: version {self.challenger_version} ({self.training.get('chosen')})"
            )
        cmp = self.comparison
        if cmp and cmp.get("champion") is not None:
            better = "higher" if cmp["direction"] == "max" else "lower"
            ci = (
                f", {cmp['level']:.0%} CI [{cmp['ci_low']:+.4g}, {cmp['ci_high']:+.4g}]"
                if cmp.get("ci_low") is not None
                else ""
            )
            lines.append(
                f"on the fresh holdout ({cmp['n_holdout']:,} rows): {cmp['metric']} champion "
                f"{cmp['champion']:.4g}, challenger {cmp['challenger']:.4g} ({better} is better); "
                f"difference {cmp['difference']:+.4g}{ci}; margin {cmp['margin']:g}"
            )
        if self.promoted:
            lines.append(
                f"PROMOTED: version {self.challenger_version} is the champion (was "
                f"{self.champion_version})"
            )
        elif self.rollout:
            lines.append(
                f"HANDED TO ROLLOUT: version {self.challenger_version} passed the offline gate; "
                f"{self.rollout['strategy']} {self.rollout['experiment']} decides on live "
                "traffic (`mlsd rollout status`)"
            )
        else:
            lines.append(f"REFUSED: the champion (version {self.champion_version}) stays")
            lines += [f"  - {r}" for r in self.reasons]
        if self.report.get("html"):
            lines.append(f"report: {self.report['html']}")
        return lines


def retrain(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    if_needed: bool = False,
    now: float | str | None = None,
    progress: bool | None = None,
    monitor_result: Any = None,
) -> RetrainResult:
    """Retrain ``spec``'s system once, under the workspace's retrain lock (see the module
    docstring). ``if_needed``: only when a trigger fires; ``now``: the time triggers and
    windows are measured at (default the clock); ``monitor_result`` reuses a monitoring
    result for the drift and performance triggers."""
    from mlsd.loop.lock import retrain_lock
    from mlsd.loop.triggers import evaluate

    started = time.perf_counter()
    ws = workspace or Workspace.for_spec(spec)
    with retrain_lock(ws, spec.name):
        champ = champion(spec, ws)
        result = RetrainResult(system=spec.name, champion_version=champ.version)
        result.triggers = evaluate(spec, ws, now=now, monitor_result=monitor_result)
        if if_needed and not result.fired:
            result.needed = False
            result.reasons = ["no trigger fired"]
            result.seconds = time.perf_counter() - started
            return result
        try:
            _run(spec, ws, champ, result, now=now, progress=progress)
        finally:
            result.seconds = time.perf_counter() - started
        return result


def _run(spec, ws: Workspace, champ, result: RetrainResult, *, now, progress) -> None:
    from mlsd.data.snapshot import load_dataset
    from mlsd.data.validate import validate_dataset
    from mlsd.engine import trial_pool
    from mlsd.loop.compare import compare
    from mlsd.loop.data import assemble
    from mlsd.models.gate import guardrail_failures
    from mlsd.models.train import train

    if spec.architecture.funnel:
        from mlsd.loop.recommender import retrain_funnel

        _decide(spec, ws, result, retrain_funnel(spec, ws, champ, result, progress=progress))
        return
    data = assemble(spec, ws, champ, now=to_epoch(now))
    result.data = data.to_dict()

    # the same validation as `mlsd train`; a blocking anomaly stops here, with its report
    dataset = load_dataset(spec, ws, table=data.train)
    validation = validate_dataset(spec, dataset)
    path = write_json(ws.reports / "retrain-validation.json", validation.to_dict())
    blocking = [a for a in validation.anomalies if a.blocking]
    result.validation = {
        "passed": not blocking,
        "snapshot": dataset.snapshot_id,
        "report": str(path),
        "blocking": [f"{a.check} on {a.column or 'the data'}: {a.message}" for a in blocking],
    }
    if blocking:
        result.reasons = [
            f"data validation of the retraining rows failed: {r}"
            for r in result.validation["blocking"]
        ]
        _finish(spec, ws, result)
        return

    trained = train(spec, ws, progress=progress, data=data.train, pool=trial_pool(spec))
    result.trained = True
    summary = trained.to_dict()
    result.training = {
        k: summary[k]
        for k in ("run_id", "model_version", "package", "chosen", "registered", "reasons", "test")
    }
    result.training["snapshot"] = trained.snapshot
    if not trained.registered:
        result.reasons = [f"the challenger failed training's gate: {r}" for r in trained.reasons]
        _finish(spec, ws, result)
        return
    result.challenger_version = trained.model_version

    cmp = compare(spec, champ.package, trained.package, data.holdout)
    result.comparison = cmp
    reasons = []
    if not cmp["beats"]:
        better = "higher" if cmp["direction"] == "max" else "lower"
        reasons.append(
            f"the challenger's {cmp['metric']} {_num(cmp['challenger'])} on the fresh holdout "
            f"does not beat the champion's {_num(cmp['champion'])} by "
            f"retraining.beat_champion_by = {cmp['margin']:g} ({better} is better; "
            f"{cmp['n_holdout']:,} rows)"
        )
    reasons += guardrail_failures(spec, cmp["challenger_metrics"], "the fresh holdout")
    _decide(spec, ws, result, reasons)


def _decide(spec, ws: Workspace, result: RetrainResult, reasons: list[str]) -> None:
    """Promote the challenger (or hand it to the rollout) when nothing stands against it;
    record the decision either way."""
    result.reasons = reasons
    if not reasons and spec.retraining.promote == "rollout" and spec.rollout.strategy != "direct":
        _hand_to_rollout(spec, ws, result)
    elif not reasons:  # the last step: only now does the serving model change
        from mlsd.models.registry import Registry

        registry = Registry(ws, spec.name, spec.models.tracking_uri)
        registry.promote(result.challenger_version, reason=_promotion_reason(result))
        result.promoted = True
    _finish(spec, ws, result)


def _hand_to_rollout(spec, ws: Workspace, result: RetrainResult) -> None:
    """Start the spec's rollout of the challenger that passed the offline gate: live
    traffic decides whether it becomes champion (each `mlsd loop` iteration steps it)."""
    from mlsd.rollout import controller

    experiment = controller.start(spec, ws, [str(result.challenger_version)])
    result.rollout = {
        "experiment": experiment.id,
        "strategy": experiment.strategy,
        "weights": experiment.weights,
    }


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4g}"


def _promotion_reason(result: RetrainResult) -> str:
    cmp = result.comparison or {}
    fired = ", ".join(t["name"] for t in result.fired) or "asked for"
    ci = (
        f", {cmp['level']:.0%} CI [{cmp['ci_low']:+.4g}, {cmp['ci_high']:+.4g}]"
        if cmp.get("ci_low") is not None
        else ""
    )
    return (
        f"retrain ({fired}): {cmp['metric']} {_num(cmp['challenger'])} against the champion's "
        f"{_num(cmp['champion'])} on {cmp['n_holdout']:,} fresh labelled rows "
        f"(difference {cmp['difference']:+.4g}{ci})"
    )


def _finish(spec: SystemSpec, ws: Workspace, result: RetrainResult) -> None:
    """Write the report and record the one event of this retrain."""
    from mlsd.loop.report import write_html

    json_path = ws.reports / "retrain.json"
    html_path = ws.reports / "retrain.html"
    result.report = {"json": str(json_path), "html": str(html_path)}
    kind = (
        RETRAIN_PROMOTED
        if result.promoted
        else RETRAIN_ROLLOUT
        if result.rollout
        else RETRAIN_REFUSED
    )
    if result.rollout:
        message = (
            f"version {result.challenger_version} passed the offline gate and was handed to "
            f"the {result.rollout['strategy']} rollout {result.rollout['experiment']}"
        )
    elif result.promoted:
        message = (
            f"version {result.challenger_version} promoted over version "
            f"{result.champion_version}: {_promotion_reason(result)}"
        )
    else:
        message = f"champion version {result.champion_version} kept: " + "; ".join(result.reasons)
    events = EventLog(ws.root / "events.sqlite")
    result.event_id = events.append(
        kind,
        message,
        system=spec.name,
        model_version=result.challenger_version or result.champion_version,
        evidence={k: v for k, v in result.to_dict().items() if k in _EVIDENCE},
    )
    write_json(json_path, result.to_dict())
    write_html(result, html_path)
