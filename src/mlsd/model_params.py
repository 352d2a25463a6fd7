"""The model families, declared once: each family's name, the tasks it learns, how its
importance is read, and one parameter table.

A :class:`Param` holds a parameter's type, default, allowed range, search distribution and
description; that one declaration drives the model's own checks and the spec's
(``models.params``), their error text, the tuning space and the JSON schema of ``mlsd
schema`` (scikit-learn's ``_param_validation`` idea). The model classes live in
:mod:`mlsd.models`; this module stays below the spec, which checks names against it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

from mlsd.errors import MlsdError, did_you_mean
from mlsd.tasks import BINARY, MULTICLASS, RANKING, REGRESSION, Task

# How tuning draws a parameter (Search.distribution).
UNIFORM = "uniform"
LOG_UNIFORM = "log-uniform"
CATEGORICAL = "categorical"
FIXED = "fixed"  # held at one value in every searched trial

# How a family's importance is read (Family.importance).
TREES = "trees"  # LightGBM's split gain and TreeSHAP contributions
COEFFICIENTS = "coefficients"  # the weights of a linear model on standardised features

CLASSIFICATION = (BINARY.name, MULTICLASS.name)
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


class ParamError(MlsdError):
    """A model parameter that does not exist, does not apply, or is out of range."""

    headline = "invalid model parameter"


@dataclass(frozen=True)
class Search:
    """How tuning draws a parameter: ``uniform`` or ``log-uniform`` over [low, high] (whole
    numbers for an int parameter), one of ``choices``, or ``fixed`` at ``value``."""

    distribution: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None

    def describe(self) -> str:
        """``log-uniform over [7, 255]``, ``one of false, true``, ``fixed at 1``."""
        if self.distribution == CATEGORICAL:
            return "one of " + ", ".join(_show(c) for c in self.choices)
        if self.distribution == FIXED:
            return f"fixed at {_show(self.value)}"
        return f"{self.distribution} over [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Param:
    """One parameter of a family: type, default, allowed values, search and description.

    ``low``/``high`` bound numbers (``low_open``: the bound itself is excluded); ``choices``
    lists the allowed values instead. None is allowed when it is the default (it means
    "automatic" or "off"). ``tasks`` limits the parameter to some of the family's tasks;
    ``set_by`` names the spec key that sets it for every family, so ``models.params`` does not.
    """

    name: str
    type: type
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[Any, ...] = ()
    search: Search | None = None
    tasks: tuple[str, ...] | None = None
    set_by: str | None = None

    def allowed(self) -> str:
        """The allowed values in words: ``an integer in [2, 131072]``, ``a number > 0``."""
        if self.choices:
            text = "one of " + ", ".join(_show(c) for c in self.choices)
        elif self.type is bool:
            text = "true or false"
        else:
            text = "an integer" if self.type is int else "a number"
            if self.low is not None and self.high is not None:
                text += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
        return text + (" or null" if self.default is None and None not in self.choices else "")

    def coerce(self, value: Any) -> Any:
        """``value`` as this parameter's type; ValueError when it is not allowed."""
        if value is None and self.default is None:
            return None
        if self.choices:
            if value not in self.choices:
                raise ValueError
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError
        if not math.isfinite(value) or (self.type is int and not float(value).is_integer()):
            raise ValueError
        value = int(value) if self.type is int else float(value)
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if below or (self.high is not None and value > self.high):
            raise ValueError
        return value

    def json_schema(self) -> dict[str, Any]:
        """This parameter as a JSON-schema property (type, default, range, description)."""
        schema: dict[str, Any] = {"type": _JSON_TYPES[self.type]}
        if self.choices:
            schema = {"enum": list(self.choices)}
        elif self.default is None:
            schema["type"] = [schema["type"], "null"]
        if self.low is not None:
            schema["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            schema["maximum"] = self.high
        notes = [f"Allowed: {self.allowed()}."]
        if self.search is not None:
            notes.append(f"Tuning: {self.search.describe()}.")
        if self.tasks is not None:
            notes.append(f"Tasks: {', '.join(self.tasks)}.")
        schema["default"] = self.default
        schema["description"] = " ".join([self.description, *notes])
        return schema


@dataclass(frozen=True)
class Problem:
    """One finding of :meth:`Family.problems`: the parameter (None: the family itself), what
    is wrong and how to fix it."""

    name: str | None
    problem: str
    hint: str


@dataclass(frozen=True)
class Family:
    """A model family: its name, the tasks it learns, how its importance is read, whether its
    fit reports validation loss per round (``pruning``: tuning stops hopeless trials), and its
    parameter table."""

    name: str
    description: str
    tasks: tuple[str, ...]
    importance: str
    params: tuple[Param, ...]
    pruning: bool = False

    def param(self, name: str) -> Param | None:
        """The declaration of parameter ``name`` (None when the family has none)."""
        return next((p for p in self.params if p.name == name), None)

    def applicable(self, task: Task | str) -> tuple[Param, ...]:
        """The parameters that apply to ``task``, in table order."""
        name = _task_name(task)
        return tuple(p for p in self.params if p.tasks is None or name in p.tasks)

    def defaults(self, task: Task | str) -> dict[str, Any]:
        """Every parameter that applies to ``task`` with its default."""
        return {p.name: p.default for p in self.applicable(task)}

    def search_space(self, task: Task | str) -> dict[str, Param]:
        """The parameters tuning searches for ``task`` (each has a ``search``), in the order
        trials draw them."""
        return {p.name: p for p in self.applicable(task) if p.search is not None}

    def problems(
        self, params: dict[str, Any], task: Task | str, for_spec: bool = False
    ) -> list[Problem]:
        """Everything wrong with ``params`` for ``task``; with ``for_spec`` also the parameters
        set by another spec key (``set_by``)."""
        task_name = _task_name(task)
        if task_name not in self.tasks:
            return [
                Problem(
                    None,
                    f"the {self.name} model cannot learn a {task_name!r} task",
                    f"use it for {', '.join(self.tasks)}",
                )
            ]
        applicable = {p.name for p in self.applicable(task_name)}
        found = []
        for name, value in params.items():
            param = self.param(name)
            if param is None:
                names = [p.name for p in self.applicable(task_name) if not (for_spec and p.set_by)]
                found.append(
                    Problem(
                        name,
                        f"unknown {self.name} parameter {name!r}{did_you_mean(name, names)}",
                        f"use one of: {', '.join(names)}",
                    )
                )
            elif for_spec and param.set_by:
                found.append(
                    Problem(
                        name,
                        f"{name} is set for every family by {param.set_by}",
                        f"remove it here and set {param.set_by}",
                    )
                )
            elif name not in applicable:
                # None is every parameter's "not set": callers pass class_weight=None always
                if value is not None:
                    tasks = " and ".join(param.tasks or ())
                    found.append(
                        Problem(
                            name,
                            f"{self.name} parameter {name} applies to {tasks} tasks, "
                            f"not {task_name}",
                            f"leave {name} out for {task_name}",
                        )
                    )
            else:
                try:
                    param.coerce(value)
                except ValueError:
                    found.append(
                        Problem(
                            name,
                            f"{self.name} parameter {name} must be {param.allowed()} — given "
                            f"{value!r}",
                            f"set {name} to {param.allowed()} (default {_show(param.default)})",
                        )
                    )
        return found

    def validate(
        self, params: dict[str, Any], task: Task | str, error: type[MlsdError] = ParamError
    ) -> dict[str, Any]:
        """The parameters in effect for ``task``: the defaults overlaid with ``params``, each
        of its declared type. The first problem is raised as ``error``."""
        found = self.problems(params, task)
        if found:
            raise error(found[0].problem, hint=found[0].hint)
        return {
            p.name: p.coerce(params[p.name]) if p.name in params else p.default
            for p in self.applicable(task)
        }

    def json_schema(self, task: Task | str | None = None) -> dict[str, Any]:
        """The parameters a spec may fix (``models.params.<family>``) as a JSON-schema object;
        with ``task`` only those that apply to it."""
        params = self.params if task is None else self.applicable(task)
        return {
            "type": "object",
            "description": f"{self.description} Learns {', '.join(self.tasks)}.",
            "properties": {p.name: p.json_schema() for p in params if not p.set_by},
            "additionalProperties": False,
        }


def _task_name(task: Task | str) -> str:
    return task if isinstance(task, str) else task.name


def _show(value: Any) -> str:
    """A value as system.yaml spells it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


_CLASS_WEIGHT = Param(
    "class_weight",
    str,
    None,
    "balanced: weigh each class inversely to its frequency.",
    choices=(None, "balanced"),
    tasks=CLASSIFICATION,
    set_by="models.class_weight",
)

LINEAR = Family(
    name="linear",
    description="Ridge regression, or L2-penalised logistic regression for classes, on "
    "standardised one-hot features; for ranking, a pointwise ridge on the relevance.",
    tasks=(BINARY.name, MULTICLASS.name, REGRESSION.name, RANKING.name),
    importance=COEFFICIENTS,
    params=(
        Param(
            "alpha",
            float,
            1.0,
            "Strength of the ridge penalty.",
            low=0.0,
            low_open=True,
            search=Search(LOG_UNIFORM, 1e-4, 1e3),
            tasks=(REGRESSION.name, RANKING.name),
        ),
        Param(
            "C",
            float,
            1.0,
            "Inverse strength of the logistic regression's penalty.",
            low=0.0,
            low_open=True,
            search=Search(LOG_UNIFORM, 1e-4, 1e3),
            tasks=CLASSIFICATION,
        ),
        _CLASS_WEIGHT,
    ),
)

# Defaults suit small-to-medium tables; allowed ranges are LightGBM's own.
LIGHTGBM = Family(
    name="lightgbm",
    description="LightGBM gradient-boosted trees on integer-coded features (categories "
    "split as categories); for ranking, trained per group with a listwise objective.",
    tasks=(BINARY.name, MULTICLASS.name, REGRESSION.name, RANKING.name),
    importance=TREES,
    pruning=True,
    params=(
        Param(
            "objective",
            str,
            "lambdarank",
            "Ranking objective: LambdaMART's lambdarank, or rank_xendcg (cross-entropy "
            "NDCG, faster per round).",
            choices=("lambdarank", "rank_xendcg"),
            search=Search(CATEGORICAL, choices=("lambdarank", "rank_xendcg")),
            tasks=(RANKING.name,),
        ),
        Param(
            "learning_rate",
            float,
            0.05,
            "Shrinkage of each tree's contribution.",
            low=0.0,
            low_open=True,
            search=Search(LOG_UNIFORM, 0.01, 0.3),
        ),
        Param(
            "num_leaves",
            int,
            31,
            "Most leaves per tree, the main control of tree complexity.",
            low=2,
            high=131072,
            search=Search(LOG_UNIFORM, 7, 255),
        ),
        Param(
            "min_data_in_leaf",
            int,
            20,
            "Fewest training rows in a leaf.",
            low=0,
            search=Search(UNIFORM, 5, 100),
        ),
        Param(
            "feature_fraction",
            float,
            0.9,
            "Share of the features each tree may split on.",
            low=0.0,
            high=1.0,
            low_open=True,
            search=Search(UNIFORM, 0.5, 1.0),
        ),
        Param(
            "bagging_fraction",
            float,
            1.0,
            "Share of the rows each tree is grown on (when bagging_freq > 0).",
            low=0.0,
            high=1.0,
            low_open=True,
            search=Search(UNIFORM, 0.5, 1.0),
        ),
        Param(
            "bagging_freq",
            int,
            0,
            "Resample the rows every k trees; 0 = no bagging.",
            low=0,
            # searched trials bag every tree, so the bagging_fraction they draw takes effect
            search=Search(FIXED, value=1),
        ),
        Param("lambda_l1", float, 0.0, "L1 penalty on leaf values.", low=0.0),
        Param(
            "lambda_l2",
            float,
            0.0,
            "L2 penalty on leaf values.",
            low=0.0,
            search=Search(LOG_UNIFORM, 1e-8, 10.0),
        ),
        Param("max_depth", int, -1, "Deepest a tree may grow; 0 or less = no limit."),
        Param("min_sum_hessian_in_leaf", float, 1e-3, "Least hessian sum in a leaf.", low=0.0),
        Param("max_bin", int, 255, "Most histogram bins per numeric feature.", low=2),
        Param("cat_smooth", float, 10.0, "Smoothing of categorical split statistics.", low=0.0),
        Param("cat_l2", float, 10.0, "L2 penalty in categorical splits.", low=0.0),
        Param("min_data_per_group", int, 100, "Fewest rows per categorical group.", low=1),
        Param("max_cat_threshold", int, 32, "Most categories on one side of a split.", low=1),
        Param(
            "extra_trees",
            bool,
            False,
            "Random split thresholds: a bagging-like ensemble that often wins on small, noisy "
            "data.",
            search=Search(CATEGORICAL, choices=(False, True)),
        ),
        _CLASS_WEIGHT,
        Param(
            "num_boost_round",
            int,
            None,
            "Trees to grow; null: early stopping on the validation split decides (a fixed "
            "number without one).",
            low=1,
        ),
        Param(
            "early_stopping_rounds",
            int,
            50,
            "Trees without improvement on the validation split before boosting stops.",
            low=1,
        ),
    ),
)


def _shared(name: str, **changes: Any) -> Param:
    """LightGBM's declaration of parameter ``name``, with ``changes``."""
    return replace(LIGHTGBM.param(name), **changes)


# LightGBM's random-forest mode: every tree fits the same target on its own sample of rows
# and features, and the forest averages them; a family of its own because its good settings
# (deep trees, small leaves, heavy sampling) are not the boosted trees'.
RANDOM_FOREST = Family(
    name="random_forest",
    description="A random forest: LightGBM trees grown independently on samples of rows and "
    "features and averaged (boosting: rf), with extra_trees for extremely randomised "
    "trees; saved as LightGBM text.",
    tasks=(BINARY.name, MULTICLASS.name, REGRESSION.name, RANKING.name),
    importance=TREES,
    pruning=True,
    params=(
        LIGHTGBM.param("objective"),
        _shared("num_leaves", default=127, search=Search(LOG_UNIFORM, 15, 1023)),
        _shared("min_data_in_leaf", default=5, low=1, search=Search(UNIFORM, 1, 50)),
        _shared(
            "feature_fraction",
            default=0.6,
            description="Share of the features each tree may split on.",
            search=Search(UNIFORM, 0.2, 1.0),
        ),
        _shared(
            "bagging_fraction",
            default=0.632,
            high=0.95,
            description="Share of the rows each tree is grown on (drawn without replacement; "
            "below 1 so the trees differ).",
            search=Search(UNIFORM, 0.3, 0.95),
        ),
        _shared("extra_trees", description="Random split thresholds: extremely randomised trees."),
        LIGHTGBM.param("max_depth"),
        LIGHTGBM.param("max_bin"),
        _CLASS_WEIGHT,
        # no early stopping: more trees only lower a forest's variance, and the count a
        # noisy validation plateau picks would be fitted to that split
        _shared("num_boost_round", default=200, description="Trees in the forest."),
    ),
)

FAMILIES: dict[str, Family] = {f.name: f for f in (LINEAR, LIGHTGBM, RANDOM_FOREST)}
NAMES: tuple[str, ...] = tuple(FAMILIES)
