"""What ``mlsd monitor`` found: :class:`MonitorResult`, its JSON (the report) and the
summary a person reads after the command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlsd.monitoring.alerts import Alert
from mlsd.monitoring.windows import window_span


@dataclass
class MonitorResult:
    """What one ``mlsd monitor`` found: the report, every alert, those of the latest
    window, and what was recorded and sent."""

    report: dict[str, Any]
    alerts: list[Alert] = field(default_factory=list)
    latest_alerts: list[Alert] = field(default_factory=list)
    published: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def exit_code(self) -> int:
        """1 when the latest window alerts, else 0."""
        return 1 if self.latest_alerts else 0

    def to_dict(self) -> dict[str, Any]:
        return self.report

    def summary_lines(self) -> list[str]:
        """What a person reads after ``mlsd monitor``."""
        r = self.report
        window = r["window"]
        lines = [
            f"monitored {r['system']}: {r['n_predictions']:,} predictions, "
            f"{r['n_labelled']:,} with labels, windows of {window['text']}"
        ]
        for model in r["models"]:
            lines.append(_model_line(model))
            for w in model["windows"]:
                lines.append("  " + _window_line(model, w))
        bad = r.get("skipped_segments") or []
        if bad:
            lines.append(
                f"skipped {len(bad)} log segment(s) that do not parse, moved aside: "
                + ", ".join(str(b["moved_to"] or b["segment"]) for b in bad)
            )
        latest = self.latest_alerts
        if latest:
            lines.append(f"ALERTS in the latest window ({alert_counts(latest)}):")
            lines += [f"  [{a.kind}] {a.message}" for a in latest]
        else:
            lines.append("no alert in the latest window")
        older = len(self.alerts) - len(latest)
        if older:
            lines.append(f"{older} alert(s) in earlier windows (see the report)")
        pub = self.published
        if pub:
            lines.append(
                f"event log: {pub['recorded']} new alert(s) recorded, "
                f"{pub['already_recorded']} already there"
            )
            hook = pub.get("webhook")
            if hook:
                state = f"sent {hook['sent']}" + (
                    f", FAILED {hook['failed']} ({hook['error']})" if hook["failed"] else ""
                )
                lines.append(f"webhook {hook['url']}: {state}")
        for kind, path in self.paths.items():
            lines.append(f"{kind}: {path}")
        if self.run_id:
            lines.append(f"MLflow run {self.run_id}")
        return lines


def alert_counts(alerts: list[Alert]) -> str:
    """How many alerts of which kind, so a count elsewhere (a retraining trigger counts its
    own kind only) is read against the right total: ``7 for model version 1: 6 drift, 1 quality``."""
    kinds: dict[str, int] = {}
    for a in alerts:
        name = a.kind.removesuffix("_alert")
        kinds[name] = kinds.get(name, 0) + 1
    shown = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    versions = sorted({a.model_version for a in alerts})
    of = f"model version{'s' if len(versions) > 1 else ''} {', '.join(versions)}"
    return f"{len(alerts)} for {of}: {shown}"


def _model_line(model: dict) -> str:
    age = model.get("age_days")
    stale = " STALE" if model.get("stale") else ""
    shown = (
        f", age {age:.1f} d of max {model['max_age_days']:g} d{stale}" if age is not None else ""
    )
    return (
        f"model version {model['model_version']} ({model['task']}): {model['n']:,} predictions "
        f"in {len(model['windows'])} window(s){shown}"
    )


def _window_line(model: dict, w: dict) -> str:
    drift = w.get("drift") or {}
    drifted = drift.get("drifted") or []
    pred = w.get("prediction_drift") or {}
    perf = (w.get("performance") or {}).get("realised") or {}
    primary = perf.get("primary") or {}
    parts = [f"#{w['index']} {window_span(w)} n={w['n']:,}"]
    if not w.get("tested"):
        parts.append("(too few rows to test)")
    else:
        parts.append(f"drift: {', '.join(drifted) if drifted else 'none'}")
        if pred:
            parts.append(f"predictions {'DRIFT' if pred.get('drifted') else 'ok'}")
    if primary.get("value") is not None:
        parts.append(f"{primary['metric']} {primary['value']:.4g} on {perf['n']:,} labelled")
    estimated = ((w.get("performance") or {}).get("estimated") or {}).get("metrics") or {}
    if estimated:
        parts.append(f"est. accuracy {estimated['accuracy']:.3f}")
    latency = w.get("latency") or {}
    if latency.get("p99_ms") is not None:
        parts.append(f"p99 {latency['p99_ms']:.1f} ms")
    if w.get("alerts"):
        parts.append(f"{len(w['alerts'])} alert(s)")
    return " · ".join(parts)
