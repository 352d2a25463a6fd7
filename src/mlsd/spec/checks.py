"""Checks that span sections, run once every section is valid on its own.

Each finding is (key path, problem, hint); the loader turns it into a SpecError line.
"""

from __future__ import annotations

from mlsd.model_params import FAMILIES
from mlsd.spec.system import SystemSpec
from mlsd.tasks import get_task
from mlsd.tasks.metric_names import MetricError, resolve
from mlsd.tasks.online_metrics import online_metric


def _consistency(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """Checks that span sections (they need no data; data checks live in mlsd.data.validate)."""
    found = []
    target = spec.problem.target
    if target in spec.features.exclude:
        found.append(
            (
                (("features", "exclude")),
                f"the target '{target}' is listed",
                "the target is never a feature already; remove it from the list",
            )
        )
    if spec.features.include and target in spec.features.include:
        found.append(
            (
                (("features", "include")),
                f"the target '{target}' is listed",
                "remove the target from features.include",
            )
        )
    task = get_task(spec.problem.task)
    if spec.problem.positive_class is not None and not task.thresholded:
        found.append(
            (
                (("problem", "positive_class")),
                f"set for a {spec.problem.task} task",
                "remove it, or set problem.task: binary",
            )
        )
    found += _funnel_problems(spec)
    if task.grouped and not spec.problem.group and not spec.architecture.funnel:
        found.append(
            (
                ("problem", "task"),
                f"a {task.name} task needs the column that groups the rows ranked together",
                "set problem.group (a query, session or user id column)",
            )
        )
    if spec.problem.group and not task.grouped:
        found.append(
            (
                ("problem", "group"),
                f"set for a {task.name} task",
                "remove it, or set problem.task: ranking",
            )
        )
    if spec.split_method in ("time", "per_user_time") and not spec.problem.time:
        found.append(
            (
                (("data", "split", "method")),
                "a time split needs event-time columns",
                "set problem.time to the column(s) that order the rows",
            )
        )
    found += _metric_problems(spec)
    found += _online_metric_problems(spec)
    found += _evaluation_problems(spec)
    found += _model_param_problems(spec)
    if spec.split_method == "group" and not spec.split_group and not task.grouped:
        found.append(
            (
                (("data", "split", "method")),
                "a group split needs a group column",
                "set data.split.group or problem.id",
            )
        )
    return found


def _funnel_problems(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """A funnel recommends items (problem.target) to users (problem.id) from interactions."""
    if not spec.architecture.funnel:
        if spec.data.split.method in ("per_user", "per_user_time"):
            return [
                (
                    ("data", "split", "method"),
                    f"{spec.data.split.method} splits a recommender's interactions",
                    "use random, stratified, time or group; or set architecture.kind: funnel",
                )
            ]
        return []
    found = []
    if spec.problem.task != "ranking":
        found.append(
            (
                ("problem", "task"),
                f"a funnel ranks items for each user, not a {spec.problem.task} task",
                "set problem.task: ranking",
            )
        )
    if not spec.problem.id:
        found.append(
            (
                ("problem", "id"),
                "a funnel needs the user column",
                "set problem.id to the interactions' user column (problem.target is the item)",
            )
        )
    if spec.split_method not in ("per_user", "per_user_time", "time"):
        found.append(
            (
                ("data", "split", "method"),
                f"a funnel splits each user's interactions, not by {spec.split_method}",
                "use per_user (random), per_user_time (each user's last interactions held "
                "out) or time (the newest interactions of all)",
            )
        )
    if "recent" in spec.architecture.generators and not spec.problem.time:
        found.append(
            (
                ("architecture", "generators", spec.architecture.generators.index("recent")),
                "recent popularity counts the newest interactions, and there are no times",
                "set problem.time to the interactions' time column, or drop recent",
            )
        )
    if spec.architecture.filters.rules and spec.data.items is None:
        found.append(
            (
                ("architecture", "filters", "rules"),
                "rules are conditions over the item table, and there is none",
                "set data.items to a table with one row per item",
            )
        )
    return found


def _online_metric_problems(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """The online metrics a rollout decides on must exist for the task."""
    task = get_task(spec.problem.task)
    named = [(("metrics", "online", i), name) for i, name in enumerate(spec.metrics.online)]
    if spec.rollout.bandit.reward is not None:
        named.append((("rollout", "bandit", "reward"), spec.rollout.bandit.reward))
    found = []
    for path, name in named:
        try:
            online_metric(name, task)
        except MetricError as exc:
            found.append((path, exc.message, exc.hint or ""))
    return found


def _evaluation_problems(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """Behavioural tests and the threshold policy, checked against the rest of the spec."""
    found = []
    ev = spec.evaluation
    for i, test in enumerate(ev.tests):
        path = ("evaluation", "tests", i)
        if test.kind in ("invariance", "directional") and not test.feature:
            found.append(
                (path, f"{test.kind} tests need a feature", "add feature: COLUMN to the test")
            )
        if test.kind == "directional" and not test.direction:
            found.append(
                (path, "a directional test needs a direction", "add direction: up (or down)")
            )
        if test.kind != "directional" and test.direction:
            found.append((path, f"direction is set on the {test.kind} test", "remove direction"))
        if test.feature and test.feature == spec.problem.target:
            found.append(
                (path, f"the test names the target {test.feature!r}", "test an input feature")
            )
        if test.kind != "invariance" and test.feature in spec.features.exclude:
            found.append(
                (
                    path,
                    f"{test.feature!r} is in features.exclude, so moving it cannot move the output",
                    "test a feature the model uses, or make it an invariance test",
                )
            )
    rule = ev.threshold.rule
    if rule != "cost" and not get_task(spec.problem.task).thresholded:
        found.append(
            (
                ("evaluation", "threshold", "rule"),
                f"a decision threshold is for binary tasks; this one is {spec.problem.task}",
                "remove evaluation.threshold",
            )
        )
    if rule in ("precision", "recall") and ev.threshold.target is None:
        found.append(
            (
                ("evaluation", "threshold", "target"),
                f"rule {rule} needs a target",
                f"add target: 0.8 (the {rule} to reach on valid)",
            )
        )
    if rule == "fixed" and ev.threshold.value is None:
        found.append(
            (
                ("evaluation", "threshold", "value"),
                "rule fixed needs a value",
                "add value: 0.5",
            )
        )
    return found


def _model_param_problems(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """``models.params`` checked against each family's parameter table."""
    found = []
    for family, params in spec.models.params.items():
        path = ("models", "params", family)
        if family not in spec.models.candidates:
            found.append(
                (
                    path,
                    f"{family} is not in models.candidates, so its parameters are never used",
                    f"add {family} to models.candidates, or remove models.params.{family}",
                )
            )
        for p in FAMILIES[family].problems(params, spec.problem.task, for_spec=True):
            found.append(((*path, p.name) if p.name else path, p.problem, p.hint))
    return found


def _metric_problems(spec: SystemSpec) -> list[tuple[tuple, str, str]]:
    """Metric names in the spec that do not exist or do not fit the task."""
    named = [(("metrics", "primary"), spec.metrics.primary)] if spec.metrics.primary else []
    named += [(("metrics", "guardrails", name), name) for name in spec.metrics.guardrails]
    found = []
    for path, name in named:
        try:
            resolve(name, get_task(spec.problem.task))
        except MetricError as exc:
            found.append((path, exc.message, exc.hint or ""))
    return found
