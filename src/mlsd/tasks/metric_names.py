"""Which metric names exist and which tasks each one scores, read from the tasks' own lists.

The spec checks names here (no numpy metric code needed); :mod:`mlsd.evaluation.metrics`
holds how each is computed and refuses to start if a task names a metric it cannot compute.
"""

from __future__ import annotations

import re

from mlsd.errors import MlsdError, did_you_mean
from mlsd.tasks import TASKS, Task


class MetricError(MlsdError):
    """A metric was asked for by a wrong name, or given input it cannot score."""

    headline = "metric error"


# every metric a task reports by default, in task order, each once
ALL: tuple[str, ...] = tuple(dict.fromkeys(m for t in TASKS.values() for m in t.metrics))
CUTOFF_FAMILIES: tuple[str, ...] = tuple(
    dict.fromkeys(f for t in TASKS.values() for f in t.cutoff_metrics)
)
_CUTOFF = re.compile(rf"^({'|'.join(map(re.escape, CUTOFF_FAMILIES))})@(.*)$")


def cutoff(name: str) -> tuple[str, int | None]:
    """``("ndcg", 10)`` for ``ndcg@10``; ``(name, None)`` for a name without a cutoff."""
    family, _, k = name.partition("@")
    return (family, int(k)) if k else (name, None)


def tasks_of(name: str) -> tuple[str, ...]:
    """The names of the tasks that metric ``name`` (canonical, as :func:`resolve` gives) scores."""
    family, k = cutoff(name)
    return tuple(
        t.name
        for t in TASKS.values()
        if name in t.metrics or (k is not None and family in t.cutoff_metrics)
    )


def resolve(name: str, task: Task | None = None) -> str:
    """The canonical name of metric ``name`` (case-insensitive; ``ndcg@05`` is ``ndcg@10``'s
    sibling ``ndcg@5``). With ``task`` the metric must also score that task. Raises
    :class:`MetricError` ("unknown metric") with the closest names and the metrics available.
    """
    key = str(name).strip().lower()
    canonical = key if key in ALL else None
    if canonical is None and (match := _CUTOFF.match(key)):
        family, k_text = match.groups()
        if not k_text.isdigit() or int(k_text) < 1:
            raise MetricError(
                f"the cutoff of {name!r} must be a whole number >= 1 — given {k_text!r}",
                hint=f"write it like {family}@10",
                headline="unknown metric",
            )
        canonical = f"{family}@{int(k_text)}"
    pool = list(task.metrics) if task is not None else list(ALL)
    if canonical is None:
        free = task is None or task.cutoff_metrics
        raise MetricError(
            f"no metric named {name!r}{did_you_mean(key, pool, n=3)}",
            hint=f"use one of the {task.name if task else 'known'} metrics: {', '.join(pool)}"
            + ("; ranking cutoffs are free, e.g. ndcg@3" if free else ""),
            headline="unknown metric",
        )
    scores = tasks_of(canonical)
    if task is not None and task.name not in scores:
        raise MetricError(
            f"metric {canonical!r} does not apply to a {task.name} task — it scores "
            f"{' and '.join(scores)}{did_you_mean(key, pool, n=3)}",
            hint=f"use one of the {task.name} metrics: {', '.join(pool)}",
            headline="unknown metric",
        )
    return canonical
