"""The online metrics a rollout decides on: per-row values from the prediction log joined
with feedback (``metrics.online`` in the spec names them).

Each is the mean of one number per labelled row (per unit, when requests name a unit), so
two arms compare by a difference of means; which direction is better is part of its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlsd.errors import did_you_mean
from mlsd.tasks import BINARY, MULTICLASS, NAMES, RANKING, REGRESSION, Task
from mlsd.tasks.metric_names import MetricError


@dataclass(frozen=True)
class OnlineMetric:
    """One online metric: its name, which way is better, the tasks it applies to."""

    name: str
    higher_is_better: bool
    tasks: tuple[str, ...]
    description: str


_CLASSIFICATION = (BINARY.name, MULTICLASS.name)
ONLINE_METRICS: dict[str, OnlineMetric] = {
    m.name: m
    for m in (
        OnlineMetric(
            "reward",
            True,
            NAMES,
            "the reward sent with the feedback, else the label read as a number",
        ),
        OnlineMetric("conversion", True, (BINARY.name,), "1 when the label is the positive class"),
        OnlineMetric(
            "ctr",
            True,
            (BINARY.name, RANKING.name),
            "clicks: 1 when the label is the positive class (ranked and recommended items: "
            "positive feedback; none by data.label_delay counts as 0)",
        ),
        OnlineMetric("accuracy", True, _CLASSIFICATION, "1 when the answered label is right"),
        OnlineMetric(
            "log_loss", False, _CLASSIFICATION, "minus the log of the true class's probability"
        ),
        OnlineMetric("brier", False, (BINARY.name,), "(score - outcome)², the outcome 0 or 1"),
        OnlineMetric("mae", False, (REGRESSION.name,), "|answer - true value|"),
        OnlineMetric("mse", False, (REGRESSION.name,), "(answer - true value)²"),
    )
}
_DEFAULT = {BINARY.name: "log_loss", MULTICLASS.name: "log_loss", REGRESSION.name: "mae"}


def online_metric(name: str, task: Task) -> OnlineMetric:
    """The online metric ``name`` for ``task``; unknown or inapplicable names raise
    :class:`MetricError` with the names that apply."""
    key = str(name).strip().lower()
    pool = [m for m, spec in ONLINE_METRICS.items() if task.name in spec.tasks]
    metric = ONLINE_METRICS.get(key)
    if metric is None or task.name not in metric.tasks:
        why = (
            f"no online metric named {name!r}{did_you_mean(key, pool, n=3)}"
            if metric is None
            else f"online metric {key!r} does not apply to a {task.name} task"
        )
        raise MetricError(
            why,
            hint=f"use one of the {task.name} online metrics: {', '.join(pool)}",
            headline="unknown metric",
        )
    return metric


def default_online(task: Task) -> str:
    """The online metric a rollout decides on when ``metrics.online`` names none."""
    return _DEFAULT.get(task.name, "reward")
