"""When to retrain: the spec's ``retraining.triggers``, each judged with its evidence.

- ``drift``: a drift alert in the champion's latest monitoring window;
- ``performance``: a performance alert there (realised metric or guardrail, or the CBPE
  estimate for binary models);
- ``{schedule: 7d}``: the champion package is at least that old;
- ``{new_labels: N}``: at least N labelled log rows arrived after the champion was built.

Each trigger is reported as ``{name, fired, reason, evidence}``, fired or not, so a person
reads why nothing happened as well as why something did.
"""

from __future__ import annotations

from typing import Any

from mlsd.errors import MlsdError
from mlsd.loop.data import Champion, champion, count_fresh, read_log, to_epoch
from mlsd.monitoring.windows import window_span
from mlsd.spec import SystemSpec, parse_duration
from mlsd.workspace import Workspace

ALERT_KINDS = {"drift": "drift_alert", "performance": "performance_alert"}


def _name_and_value(entry: str | dict) -> tuple[str, Any]:
    if isinstance(entry, str):
        return entry, None
    return next(iter(entry.items()))


def _monitored(spec: SystemSpec, workspace: Workspace, now: float) -> Any:
    """The champion's monitoring result without publishing alerts or writing reports; a
    MonitorError (no traffic yet) comes back as the error."""
    from mlsd.engine import log_reader
    from mlsd.monitoring.monitor import monitor

    try:
        return monitor(
            spec,
            workspace,
            model="champion",
            now=now,
            publish=False,
            write=False,
            engine=log_reader(spec),
        )
    except MlsdError as exc:
        return exc


def _alert_trigger(name: str, result: Any, champ: Champion) -> dict[str, Any]:
    kind = ALERT_KINDS[name]
    if isinstance(result, Exception):
        return {
            "name": name,
            "fired": False,
            "reason": f"not monitored: {getattr(result, 'message', result)}",
            "evidence": {},
        }
    version = str(champ.version)
    mine = [a for a in result.latest_alerts if a.model_version == version]
    alerts = [a for a in mine if a.kind == kind]
    if not alerts:
        windows = [m for m in result.report["models"] if m["model_version"] == version]
        last = windows[0]["windows"][-1] if windows and windows[0]["windows"] else {}
        others = f"; {len(mine)} alert(s) of other kinds" if mine else ""
        return {
            "name": name,
            "fired": False,
            "reason": f"no {name} alert in the champion's latest window"
            + (f" ({window_span(last)}, {last.get('n')} rows{others})" if last else ""),
            "evidence": {
                "window": {k: last.get(k) for k in ("start", "end", "n")},
                "alerts_in_window": len(mine),
            },
        }
    shown = "; ".join(a.message for a in alerts[:3])
    more = f" (and {len(alerts) - 3} more)" if len(alerts) > 3 else ""
    of = f" of the {len(mine)} alert(s)" if len(mine) > len(alerts) else ""
    return {
        "name": name,
        "fired": True,
        "reason": f"{len(alerts)} {name} alert(s){of} in the champion's latest window: "
        f"{shown}{more}",
        "evidence": {"alerts": [a.to_dict() for a in alerts], "alerts_in_window": len(mine)},
    }


def evaluate(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    now: float | str | None = None,
    monitor_result: Any = None,
) -> list[dict[str, Any]]:
    """Judge every trigger of ``spec.retraining.triggers`` for the current champion.

    ``now`` (epoch seconds or ISO time; default the clock) is when ages are measured;
    ``monitor_result`` reuses a :class:`MonitorResult` instead of monitoring again.
    Returns one ``{name, fired, reason, evidence}`` per trigger, in the spec's order.
    """
    workspace = workspace or Workspace.for_spec(spec)
    moment = to_epoch(now)
    champ = champion(spec, workspace)
    found: list[dict[str, Any]] = []
    log = None
    for entry in spec.retraining.triggers:
        name, value = _name_and_value(entry)
        if name in ALERT_KINDS:
            if monitor_result is None:
                monitor_result = _monitored(spec, workspace, moment)
            found.append(_alert_trigger(name, monitor_result, champ))
        elif name == "schedule":
            age_s = moment - champ.created_at
            limit = parse_duration(value)
            fired = age_s >= limit
            found.append(
                {
                    "name": "schedule",
                    "fired": fired,
                    "reason": f"the champion (version {champ.version}) is {age_s / 86400:.1f} "
                    f"days old, {'at least' if fired else 'less than'} {value}",
                    "evidence": {
                        "created_at": champ.created_iso,
                        "age_days": age_s / 86400,
                        "limit_days": limit / 86400,
                    },
                }
            )
        else:  # new_labels
            log = read_log(workspace, moment, inputs=champ.inputs) if log is None else log
            fresh = count_fresh(log, champ.created_at)
            fired = fresh >= value
            found.append(
                {
                    "name": "new_labels",
                    "fired": fired,
                    "reason": f"{fresh:,} labelled rows arrived since the champion was built "
                    f"({champ.created_iso}); the trigger needs {value:,}",
                    "evidence": {"new_labels": fresh, "needed": value, "since": champ.created_iso},
                }
            )
    return found
