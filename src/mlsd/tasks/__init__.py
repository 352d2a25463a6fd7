"""One class per task kind (DESIGN.md: ``Task``). Code outside this package asks the task
(``task.outputs``, ``task.metrics``, ``task.thresholded``…) instead of comparing its name, so a
new kind is a new class here plus its own code.

``TASKS`` maps each name to its one instance; :func:`get_task` looks a name up with a
did-you-mean. numpy only: the server imports it.
"""

from __future__ import annotations

from mlsd.errors import MlsdError, did_you_mean
from mlsd.tasks.base import LABEL, NUMBER, PER_CLASS, OutputField, Task
from mlsd.tasks.binary import Binary
from mlsd.tasks.multiclass import Multiclass
from mlsd.tasks.ranking import Ranking
from mlsd.tasks.regression import Regression

BINARY, MULTICLASS, REGRESSION, RANKING = Binary(), Multiclass(), Regression(), Ranking()
TASKS: dict[str, Task] = {t.name: t for t in (BINARY, MULTICLASS, REGRESSION, RANKING)}
NAMES: tuple[str, ...] = tuple(TASKS)


class TaskError(MlsdError):
    """A task kind that does not exist."""

    headline = "unknown task"


def get_task(task: str | Task) -> Task:
    """The task called ``task`` (a Task is returned as it is)."""
    if isinstance(task, Task):
        return task
    try:
        return TASKS[task]
    except (KeyError, TypeError):
        raise TaskError(
            f"unknown task {task!r}{did_you_mean(task, NAMES)}",
            hint=f"use one of: {', '.join(NAMES)}",
        ) from None


__all__ = [
    "BINARY",
    "LABEL",
    "MULTICLASS",
    "NAMES",
    "NUMBER",
    "PER_CLASS",
    "RANKING",
    "REGRESSION",
    "TASKS",
    "OutputField",
    "Task",
    "TaskError",
    "get_task",
]
