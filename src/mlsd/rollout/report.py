"""The page of one experiment: arms, the metric per arm over time with its band, the
decision statistic over time, traffic shares, and every decision with its reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.reporting import Page, subplots, svg
from mlsd.rollout import online
from mlsd.rollout.decide import Context
from mlsd.rollout.experiment import Experiment
from mlsd.workspace import Workspace

POINTS = 20  # times at which the per-arm metric is drawn


def report_path(ws: Workspace, experiment: Experiment) -> Path:
    """Where the page of ``experiment`` is written."""
    return ws.reports / f"rollout-{experiment.id}.html"


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def metric_over_time(experiment: Experiment, ctx: Context) -> dict[str, list[dict]]:
    """Each arm's running per-unit mean of the deciding metric at ``POINTS`` times, with a
    95% normal band (labelled rows up to each time)."""
    metric = ctx.metrics[0]
    rows = ctx.traffic.labelled
    if rows.empty:
        return {}
    values = online.row_values(metric, ctx.task, ctx.classes, rows)
    times = np.linspace(rows["ts"].min(), rows["ts"].max(), POINTS)
    out: dict[str, list[dict]] = {}
    for member in experiment.members:
        mine = (rows["arm"] == member.name).to_numpy()
        series = []
        for t in times:
            keep = mine & (rows["ts"] <= t).to_numpy()
            sample = online.unit_sample(rows[keep], values[keep])
            if sample.n >= 2:
                half = 1.96 * (sample.var / sample.n) ** 0.5
                series.append({"ts": float(t), "mean": sample.mean, "half": half, "n": sample.n})
        if series:
            out[member.name] = series
    return out


def _metric_figure(series: dict[str, list[dict]], metric: str) -> str:
    if not series:
        return ""
    fig, ax = subplots(5.6, 3.4)
    for arm, points in series.items():
        x = [_time(p["ts"]) for p in points]
        mean = np.array([p["mean"] for p in points])
        half = np.array([p["half"] for p in points])
        (line,) = ax.plot(x, mean, "-", label=arm)
        ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    ax.set(title=f"{metric} per arm (95% band)", ylabel=metric)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return svg(fig)


def _statistic(decision: dict[str, Any]) -> dict[str, Any] | None:
    """The interval a decision was judged on: the first metric's difference and bounds."""
    evidence = decision.get("evidence") or {}
    if "non_inferiority" in evidence:
        return evidence["non_inferiority"]
    for result in (evidence.get("metrics") or {}).values():
        if result.get("ci_low") is not None:
            return result
    return None


def _statistic_figure(history: list[dict]) -> str:
    points = [(h["ts"], s) for h in history if (s := _statistic(h)) is not None]
    points = [(t, s) for t, s in points if s.get("ci_low") is not None]
    if not points:
        return ""
    fig, ax = subplots(5.6, 3.4)
    x = [_time(t) for t, _ in points]
    diff = [s["difference"] for _, s in points]
    ax.plot(x, diff, "o-", label="difference (+: challenger better)")
    ax.fill_between(
        x,
        [s["ci_low"] for _, s in points],
        [s["ci_high"] for _, s in points],
        alpha=0.2,
        label="always-valid interval",
    )
    ax.axhline(0, color="#555", lw=0.8)
    margin = points[-1][1].get("margin")
    if margin:
        ax.axhline(-margin, color="#d62728", lw=0.8, ls="--", label="non-inferiority margin")
    ax.set(title="The decision statistic at each decision", ylabel="difference")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return svg(fig)


def _shares_figure(history: list[dict]) -> str:
    points = [(h["ts"], h["weights"]) for h in history if h.get("weights")]
    if len(points) < 2:
        return ""
    fig, ax = subplots(5.6, 3.0)
    arms = list(points[-1][1])
    x = [_time(t) for t, _ in points]
    for arm in arms:
        ax.step(x, [100 * w.get(arm, 0.0) for _, w in points], where="post", label=arm)
    ax.set(title="Traffic share (%)", ylabel="%", ylim=(0, 100))
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return svg(fig)


def write_report(ws: Workspace, experiment: Experiment, ctx: Context | None) -> Path:
    """Write the page of ``experiment`` (figures from ``ctx``'s traffic when given)."""
    page = Page(
        f"{experiment.system}: {experiment.strategy} {experiment.id}",
        f"status {experiment.status}" + (f" — {experiment.outcome}" if experiment.outcome else ""),
    )
    page.section("Arms")
    page.table(
        [
            {
                "arm": m.name,
                "version": m.version,
                "share": experiment.weights.get(m.name, 1.0 if m.name == "champion" else 0.0),
                "package": m.package,
            }
            for m in experiment.members
        ]
    )
    if ctx is not None:
        metric = ctx.metrics[0].name
        page.section(f"{metric} per arm over time")
        page.figures(_metric_figure(metric_over_time(experiment, ctx), metric))
    page.section("Decisions", "Each `mlsd rollout step` (or loop iteration) takes one.")
    page.figures(_statistic_figure(experiment.history), _shares_figure(experiment.history))
    page.table(
        [
            {
                "time (UTC)": _time(h["ts"]).strftime("%Y-%m-%d %H:%M:%S"),
                "action": h["action"],
                "why": "; ".join(h.get("reasons") or [])
                or "waiting for " + "; ".join(h.get("waiting_for") or []),
            }
            for h in experiment.history
        ]
    )
    return page.write(report_path(ws, experiment))
