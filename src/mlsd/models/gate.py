"""The gate a model passes before it is registered: beat the best baseline on test by
``models.gate.beat_baselines_by``, stay within every guardrail, fail no blocking behavioural
test. The retraining loop judges a challenger with the same ``beats`` and guardrails."""

from __future__ import annotations

from typing import Any

from mlsd.evaluation.metrics import Metric, get_metric
from mlsd.models.leaderboard import Entry
from mlsd.spec import SystemSpec


def beats(metric: Metric, a: float | None, b: float | None, margin: float) -> bool:
    """``a`` beats ``b`` by at least ``margin`` in the metric's direction (strictly if 0)."""
    if a is None or b is None:
        return False
    gain = (a - b) if metric.direction == "max" else (b - a)
    return gain > margin if margin == 0 else gain >= margin


def guardrail_failures(spec: SystemSpec, scores: dict[str, float | None], split: str) -> list:
    """Each guardrail of the spec that ``scores`` break, as a sentence."""
    failures = []
    for name, bound in spec.metrics.guardrails.items():
        value = scores.get(get_metric(name).name)
        if value is None:
            failures.append(f"guardrail {name} could not be computed on {split}")
        elif bound.min is not None and value < bound.min:
            failures.append(f"guardrail {name} >= {bound.min:g} failed: {value:.4g} on {split}")
        elif bound.max is not None and value > bound.max:
            failures.append(f"guardrail {name} <= {bound.max:g} failed: {value:.4g} on {split}")
    return failures


def blocking_failures(behavioral: list[dict[str, Any]]) -> list[str]:
    """A reason for each blocking behavioural test that failed (results of
    :func:`mlsd.evaluation.behavioral.run`)."""
    return [
        f"blocking behavioural test {t['name']!r} ({t['kind']}) failed on "
        f"{t.get('n_failed', 0)} of {t['n']} validation rows"
        + (f" ({t['note']})" if t.get("note") else "")
        + (
            f"; mean change {t['mean_change']:.4g} where {t['direction']} was declared"
            if t["kind"] == "directional" and "mean_change" in t
            else ""
        )
        for t in behavioral
        if t["blocking"] and not t["passed"]
    ]


def gate_failures(
    spec: SystemSpec,
    metric: Metric,
    leaderboard: list[Entry],
    chosen: Entry,
    behavioral: list[dict[str, Any]] | None,
) -> list[str]:
    """Reasons the chosen model may not be registered (empty when it may): judged on test
    against the baselines and the guardrails, then the behavioural tests run on valid."""
    scores = chosen.scores["test"]
    reasons = []
    baselines = [e for e in leaderboard if e.kind == "baseline"]
    best = max(baselines, key=lambda e: e.rank(metric, "test"))
    margin = spec.models.gate.beat_baselines_by
    if not beats(metric, scores[metric.name], best.scores["test"][metric.name], margin):
        reasons.append(
            f"{chosen.name} scores {metric.name} {scores[metric.name]:.4g} on test, which does "
            f"not beat the best baseline ({best.name}: {best.scores['test'][metric.name]:.4g}) "
            f"by the required margin {margin:g}"
        )
    return reasons + guardrail_failures(spec, scores, "test") + blocking_failures(behavioral or [])
