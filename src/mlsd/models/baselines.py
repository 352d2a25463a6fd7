"""Baselines: the simple answers every candidate model must beat.

They read raw pandas columns (not feature matrices), are fitted on the training split and are
never packaged. Each predicts in the task's shape (regression values, P(positive) for binary,
an ``(n, k)`` probability matrix for multiclass) and says what it did in ``describe()``.

- ``random``: scikit-learn's stratified dummy for classes (a label drawn with the class priors,
  its probability one-hot); for regression a draw from the training targets. Seeded.
- ``zero_rule``: the class priors (so AUC 0.5 and log loss = the label entropy), or the mean
  (median when asked) target.
- ``heuristic``: the spec's rule (``balance > 1800``) or group statistic
  (``mean of bikers by hr``), with its statistics learned on train.
- ``stump``: without a heuristic, the best single-column rule found on train.

Labels arrive as mlsd encodes them: binary 0/1 (1 = positive), multiclass 0..k-1, regression
floats; rows without a label were dropped by the caller.
"""

from __future__ import annotations

import json
import keyword
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from mlsd.errors import did_you_mean
from mlsd.models.base import ModelError, TaskInfo, check_labels

Statistic = Literal["mean", "median"]
HEURISTIC_KEY = "models.baselines.heuristic"
STUMP_QUANTILES = 64  # candidate thresholds per numeric column
STUMP_CATEGORIES = 20  # most frequent categories tried as `column == value`
_GROUP = re.compile(r"^\s*(mean|median)\s+of\s+(.+?)\s+by\s+(.+?)\s*$", re.IGNORECASE)
_EXAMPLES = 'e.g. `balance > 1800`, `student == "Yes" and balance > 1000`, `mean of bikers by hr`'


class Baseline(ABC):
    """A baseline fitted on raw training columns. Subclasses set ``name``."""

    name: ClassVar[str]

    def __init__(self, task: TaskInfo, *, seed: int = 0, statistic: Statistic = "mean"):
        if statistic not in ("mean", "median"):
            raise ModelError(
                f"baseline statistic must be 'mean' or 'median', got {statistic!r}",
                hint="use mean, or median for absolute-error metrics",
            )
        self.task = task
        self.seed = seed
        self.statistic = statistic
        self.fitted = False

    @abstractmethod
    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> Baseline:
        """Learn from the training columns and encoded labels; returns self."""

    @abstractmethod
    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions for every row of ``frame`` in the task's shape."""

    def describe(self) -> dict[str, Any]:
        """Name, task and what the baseline learned, as plain JSON."""
        return {"name": self.name, "task": self.task.kind}

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise ModelError(f"the {self.name} baseline is not fitted", hint="call fit() first")


# --- statistics shared by all baselines ----------------------------------------------------


def _n_classes(task: TaskInfo) -> int:
    return task.definition.n_labels(task.n_classes)


def _priors(y: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y.astype(np.int64), minlength=k) / len(y)


def _summary(y: np.ndarray, task: TaskInfo, statistic: Statistic) -> np.ndarray:
    """One prediction summarising ``y``: a scalar array (regression, P(positive)) or the
    class frequencies (multiclass)."""
    if not task.is_classification:
        return np.asarray(np.median(y) if statistic == "median" else np.mean(y))
    if not task.definition.per_class:  # P(positive): the share of positives
        return np.asarray(np.mean(y))
    return _priors(y, task.n_classes)


def _repeat(value: np.ndarray, n: int) -> np.ndarray:
    """``value`` for each of ``n`` rows: a vector, or an (n, k) matrix."""
    return np.tile(value, (n, 1)) if value.ndim else np.full(n, float(value))


def _jsonable(value: np.ndarray) -> float | list[float]:
    return value.tolist() if value.ndim else float(value)


# --- random and zero rule ------------------------------------------------------------------


class RandomBaseline(Baseline):
    """Seeded random guessing: labels drawn with the class priors (probability one-hot, as
    scikit-learn's ``DummyClassifier(strategy="stratified")``), or regression values drawn
    with replacement from the training targets."""

    name = "random"

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> RandomBaseline:
        """Remember the training targets (regression) or the class priors."""
        y = check_labels(y, self.task)
        if self.task.is_classification:
            self.priors_ = _priors(y, _n_classes(self.task))
        else:
            self.values_ = y.copy()
        self.fitted = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The same draws for the same seed and row count."""
        self._check_fitted()
        rng = np.random.default_rng(self.seed)
        n = len(frame)
        if not self.task.is_classification:
            return rng.choice(self.values_, size=n, replace=True)
        drawn = rng.choice(len(self.priors_), size=n, p=self.priors_)
        if self.task.definition.per_class:
            return np.eye(len(self.priors_))[drawn]
        return drawn.astype(np.float64)

    def describe(self) -> dict[str, Any]:
        """Strategy and seed."""
        strategy = "stratified" if self.task.is_classification else "draw from training target"
        return {**super().describe(), "strategy": strategy, "seed": self.seed}


class ZeroRuleBaseline(Baseline):
    """One answer for every row: the class priors, or the training mean (median)."""

    name = "zero_rule"

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> ZeroRuleBaseline:
        """Learn the priors or the statistic of the training target."""
        y = check_labels(y, self.task)
        self.value_ = _summary(y, self.task, self.statistic)
        if self.task.is_classification:
            self.majority_ = int(np.argmax(_priors(y, _n_classes(self.task))))
        self.fitted = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The learned value repeated for each row."""
        self._check_fitted()
        return _repeat(self.value_, len(frame))

    def describe(self) -> dict[str, Any]:
        """The value predicted (and the majority class for classification)."""
        out = {**super().describe(), "value": _jsonable(self.value_)}
        if self.task.is_classification:
            out["statistic"] = "class priors"
            out["majority_class"] = self.majority_
        else:
            out["statistic"] = self.statistic
        return out


# --- rules ---------------------------------------------------------------------------------


def _suggest(name: str, columns: list[str]) -> str:
    guess = did_you_mean(name, columns, n=3)
    if guess:
        return guess
    shown = ", ".join(columns[:20]) + (", …" if len(columns) > 20 else "")
    return f"; the columns are: {shown or 'none'}"


def _expression_error(expr: str, problem: str, fix: str | None = None) -> ModelError:
    return ModelError(
        f"the heuristic baseline {expr!r} {problem}",
        hint=fix
        or f"edit {HEURISTIC_KEY} in system.yaml: a true/false rule over columns or "
        f"a group statistic, {_EXAMPLES}",
    )


def _unknown_names(expr: str, exc: Exception, columns: list[str]) -> list[str]:
    """The names pandas could not resolve (it renames `quoted names` internally)."""
    names = [n for n in re.findall(r"`([^`]*)`", expr) if n not in columns]
    match = re.search(r"name '([^']+)' is not defined", str(exc))
    if match and not match.group(1).startswith("BACKTICK_QUOTED_STRING"):
        names.append(match.group(1))
    return names or [str(exc)]


def eval_rule(frame: pd.DataFrame, expr: str) -> np.ndarray:
    """Evaluate a true/false rule over ``frame``'s columns (pandas ``eval`` syntax, no
    access to Python variables); missing values count as false."""
    from pandas.errors import UndefinedVariableError

    columns = [str(c) for c in frame.columns]
    try:
        result = frame.eval(expr, engine="python", local_dict={}, global_dict={})
    except UndefinedVariableError as exc:
        name = _unknown_names(expr, exc, columns)[0]
        raise _expression_error(
            expr,
            f"names an unknown column {name!r}{_suggest(name, columns)}",
            f"fix the column name in {HEURISTIC_KEY} in system.yaml (quote names with "
            "spaces in backticks: `my column` > 3)",
        ) from None
    except SyntaxError as exc:
        raise _expression_error(expr, f"is not a valid expression ({exc.msg})") from None
    except Exception as exc:  # type errors such as comparing text with a number
        raise _expression_error(expr, f"cannot be evaluated: {exc}") from None
    if not isinstance(result, pd.Series) or not (
        pd.api.types.is_bool_dtype(result.dtype) or result.dtype == object
    ):
        raise _expression_error(expr, "is not a true/false rule over the rows")
    try:
        return result.fillna(False).to_numpy(dtype=bool)
    except (TypeError, ValueError):
        raise _expression_error(expr, "is not a true/false rule over the rows") from None


class _RuleBaseline(Baseline):
    """Predicts per side of a true/false rule the training statistic of that side."""

    def _fit_sides(self, mask: np.ndarray, y: np.ndarray) -> None:
        overall = _summary(y, self.task, self.statistic)
        # an empty side in training falls back to the overall statistic
        self.true_ = _summary(y[mask], self.task, self.statistic) if mask.any() else overall
        self.false_ = _summary(y[~mask], self.task, self.statistic) if (~mask).any() else overall
        self.true_share_ = float(mask.mean())

    def _predict_sides(self, mask: np.ndarray) -> np.ndarray:
        if self.true_.ndim:
            return np.where(mask[:, None], self.true_, self.false_)
        return np.where(mask, float(self.true_), float(self.false_))

    def _sides(self) -> dict[str, Any]:
        return {
            "when_true": _jsonable(self.true_),
            "when_false": _jsonable(self.false_),
            "train_share_true": round(self.true_share_, 6),
        }


@dataclass(frozen=True)
class _GroupSpec:
    statistic: Statistic
    target: str
    columns: list[str]


def _strip_quotes(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "`'\"":
        return name[1:-1]
    return name


def parse_group(expr: str) -> _GroupSpec | None:
    """``mean of <target> by <col>[, <col2>]`` (or ``median of``), else None."""
    match = _GROUP.match(expr)
    if not match:
        return None
    columns = [_strip_quotes(c) for c in match.group(3).split(",") if c.strip()]
    statistic = match.group(1).lower()
    return _GroupSpec(statistic, _strip_quotes(match.group(2)), columns)  # type: ignore[arg-type]


class HeuristicBaseline(_RuleBaseline):
    """The spec's heuristic: a rule (per-side statistics) or a group statistic (per-group
    statistics; groups unseen in training get the overall statistic)."""

    name = "heuristic"

    def __init__(
        self,
        task: TaskInfo,
        expression: str,
        *,
        seed: int = 0,
        statistic: Statistic = "mean",
        target: str | None = None,
    ):
        super().__init__(task, seed=seed, statistic=statistic)
        if not isinstance(expression, str) or not expression.strip():
            raise _expression_error(str(expression), "is empty")
        self.expression = expression.strip()
        self.group = parse_group(self.expression)
        if self.group and target is not None and self.group.target != target:
            raise _expression_error(
                self.expression,
                f"summarises {self.group.target!r} but the target is {target!r}"
                f"{_suggest(self.group.target, [target])}",
                f"write `{self.group.statistic} of {target} by ...` in {HEURISTIC_KEY}",
            )

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> HeuristicBaseline:
        """Learn per-side or per-group statistics on the training rows."""
        y = check_labels(y, self.task)
        if self.group is None:
            self._fit_sides(eval_rule(frame, self.expression), y)
        else:
            self._fit_groups(frame, y)
        self.fitted = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The learned statistic of each row's side or group."""
        self._check_fitted()
        if self.group is None:
            return self._predict_sides(eval_rule(frame, self.expression))
        return self._predict_groups(frame)

    # group statistics: a left merge of the rows' keys on the training table

    def _keys(self, frame: pd.DataFrame) -> pd.DataFrame:
        assert self.group is not None
        columns = [str(c) for c in frame.columns]
        for name in self.group.columns:
            if name not in frame.columns:
                raise _expression_error(
                    self.expression,
                    f"groups by an unknown column {name!r}{_suggest(name, columns)}",
                    f"fix the column name in {HEURISTIC_KEY} in system.yaml",
                )
        keys = frame[self.group.columns].copy()
        for name in keys.columns:  # category codes would not merge with plain values
            if isinstance(keys[name].dtype, pd.CategoricalDtype):
                keys[name] = keys[name].astype(object)
        return keys.reset_index(drop=True)

    def _outputs(self) -> list[str]:
        return [f"__mlsd_out{i}" for i in range(self.task.n_scores)]

    def _fit_groups(self, frame: pd.DataFrame, y: np.ndarray) -> None:
        assert self.group is not None
        keys, outputs = self._keys(frame), self._outputs()
        if self.task.definition.per_class:
            values = np.eye(self.task.n_classes)[y.astype(np.int64)]
        else:
            values = y[:, None]
        table = pd.concat([keys, pd.DataFrame(values, columns=outputs)], axis=1)
        how = (
            "median"
            if self.group.statistic == "median" and not self.task.is_classification
            else "mean"
        )
        grouped = table.groupby(self.group.columns, dropna=False, sort=True, observed=True)
        self.table_ = grouped[outputs].agg(how).reset_index()
        self.overall_ = _summary(y, self.task, how)  # for groups unseen in training

    def _predict_groups(self, frame: pd.DataFrame) -> np.ndarray:
        merged = self._keys(frame).merge(self.table_, on=self.group.columns, how="left")
        values = np.array(merged[self._outputs()], dtype=np.float64)  # writable copy
        unseen = np.isnan(values).any(axis=1)
        values[unseen] = np.atleast_1d(self.overall_)
        return values if self.task.definition.per_class else values[:, 0]

    def describe(self) -> dict[str, Any]:
        """The expression and what was learned from it."""
        out = {**super().describe(), "expression": self.expression}
        if self.group is None:
            return {**out, "kind": "rule", **(self._sides() if self.fitted else {})}
        out.update(kind="group", by=self.group.columns, statistic=self.group.statistic)
        if self.fitted:
            out.update(n_groups=len(self.table_), overall=_jsonable(self.overall_))
        return out


# --- stump ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """``column > threshold`` (numeric) or ``column == value`` (categorical)."""

    column: str
    op: Literal[">", "=="]
    value: Any

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows where the rule holds; missing values never do."""
        if self.column not in frame.columns:
            columns = [str(c) for c in frame.columns]
            raise ModelError(
                f"the stump baseline needs column {self.column!r}{_suggest(self.column, columns)}",
                hint="predict on frames with the training columns",
            )
        column = frame[self.column]
        if self.op == ">":
            x = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                return x > self.value
        return (column == self.value).fillna(False).to_numpy(dtype=bool)

    def text(self) -> str:
        """The rule in the heuristic syntax, e.g. ``hr > 6.5`` or ``weathersit == "clear"``."""
        name = self.column
        if not (name.isidentifier() and not keyword.iskeyword(name)):
            name = f"`{name}`"
        value = self.value
        if isinstance(value, str):
            shown = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool | np.bool_):
            shown = str(bool(value))
        else:
            shown = repr(value.item() if isinstance(value, np.generic) else value)
        return f"{name} {self.op} {shown}"


def _targets(y: np.ndarray, task: TaskInfo) -> np.ndarray:
    """Per-row sufficient statistics whose sums score a split: [1, y, y²] (centred y, for
    precision) or [1, one-hot classes]."""
    if task.is_classification:
        onehot = np.eye(_n_classes(task))[y.astype(np.int64)]
        return np.hstack([np.ones((len(y), 1)), onehot])
    centred = y - y.mean()
    return np.column_stack([np.ones(len(y)), centred, centred**2])


def _impurity(sums: np.ndarray, classification: bool) -> np.ndarray:
    """Squared error (regression) or n·Gini (classification) of sides given their sums
    (..., m); empty sides cost 0."""
    n = sums[..., 0]
    safe = np.where(n > 0, n, 1.0)
    if classification:
        return n - (sums[..., 1:] ** 2).sum(axis=-1) / safe
    return sums[..., 2] - sums[..., 1] ** 2 / safe


def _short_threshold(low: float, high: float) -> float:
    """The shortest decimal strictly between two neighbouring values (``hr > 6.5``, not
    ``hr > 6.000001``); ``low`` itself when they are adjacent floats."""
    middle = low + (high - low) / 2
    for digits in range(1, 18):
        t = float(f"{middle:.{digits}g}")
        if low < t < high:
            return t
    return low


def _numeric_candidates(x: np.ndarray, T: np.ndarray, classification: bool):
    """Best ``x > t`` split: (impurity, threshold) or None."""
    present = ~np.isnan(x)
    xs_all = x[present]
    if len(xs_all) < 2:
        return None
    order = np.argsort(xs_all, kind="stable")
    xs = xs_all[order]
    if xs[0] == xs[-1]:
        return None
    cum = np.cumsum(T[present][order], axis=0)
    missing = T[~present].sum(axis=0)
    picks = xs[np.linspace(0, len(xs) - 1, STUMP_QUANTILES + 2).astype(np.int64)[1:-1]]
    positions = np.unique(np.searchsorted(xs, np.unique(picks), side="right"))
    positions = positions[(positions > 0) & (positions < len(xs))]
    if len(positions) == 0:
        return None
    false_side = cum[positions - 1] + missing  # x <= t, or missing
    true_side = cum[-1] - cum[positions - 1]
    cost = _impurity(false_side, classification) + _impurity(true_side, classification)
    best = int(np.argmin(cost))
    p = positions[best]
    return float(cost[best]), _short_threshold(float(xs[p - 1]), float(xs[p]))


def _categorical_candidates(column: pd.Series, T: np.ndarray, classification: bool):
    """Best ``column == value`` split among the most frequent values: (impurity, value)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    if len(uniques) < 2:
        return None
    present = codes >= 0
    sums = np.zeros((len(uniques), T.shape[1]))
    np.add.at(sums, codes[present], T[present])
    top = np.argsort(-sums[:, 0], kind="stable")[:STUMP_CATEGORIES]
    true_side = sums[top]
    false_side = T.sum(axis=0) - true_side
    cost = _impurity(true_side, classification) + _impurity(false_side, classification)
    best = int(np.argmin(cost))
    value = uniques[top[best]]
    return float(cost[best]), value.item() if isinstance(value, np.generic) else value


def find_stump(frame: pd.DataFrame, y: np.ndarray, task: TaskInfo) -> Rule | None:
    """The single-column rule that best separates ``y`` on ``frame`` (least squared error,
    or least Gini impurity), or None when no rule beats no split."""
    T = _targets(y, task)
    classification = task.is_classification
    best_cost = float(_impurity(T.sum(axis=0), classification)) * (1 - 1e-9)
    best: Rule | None = None
    for name in frame.columns:
        column = frame[name]
        dtype = column.dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            if (
                pd.api.types.is_datetime64_any_dtype(dtype)
                or isinstance(dtype, pd.PeriodDtype | pd.IntervalDtype)
                or pd.api.types.is_timedelta64_dtype(dtype)
            ):
                continue
            found, op = _categorical_candidates(column, T, classification), "=="
        else:
            x = column.to_numpy(dtype=np.float64, na_value=np.nan)
            found, op = _numeric_candidates(x, T, classification), ">"
        if found is not None and found[0] < best_cost:
            best_cost, best = found[0], Rule(str(name), op, found[1])  # type: ignore[arg-type]
    return best


class StumpBaseline(_RuleBaseline):
    """The best single-column rule learned on train (numeric thresholds at up to 64
    quantiles; one value versus the rest for the 20 most frequent values of other columns);
    predicts per side like a heuristic rule."""

    name = "stump"

    def fit(self, frame: pd.DataFrame, y: np.ndarray) -> StumpBaseline:
        """Search every usable column, then learn per-side statistics of the best rule."""
        y = check_labels(y, self.task)
        self.rule_ = find_stump(frame, y, self.task)
        mask = self.rule_.mask(frame) if self.rule_ else np.zeros(len(y), dtype=bool)
        self._fit_sides(mask, y)
        self.fitted = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The learned statistic of each row's side of the rule."""
        self._check_fitted()
        if self.rule_ is None:
            return _repeat(self.false_, len(frame))
        return self._predict_sides(self.rule_.mask(frame))

    def describe(self) -> dict[str, Any]:
        """The rule found as text (``none`` when no split helps) and its side statistics."""
        out = super().describe()
        if self.fitted:
            out.update(rule=self.rule_.text() if self.rule_ else "none", **self._sides())
        return out


def make_baselines(
    task: TaskInfo,
    heuristic: str | None,
    *,
    seed: int,
    statistic: Statistic = "mean",
    target: str | None = None,
) -> list[Baseline]:
    """The baselines a model must beat: random, zero_rule, and the spec's heuristic or,
    without one, the learned stump. ``statistic`` is what regression baselines predict per
    side (median for absolute-error metrics); ``target`` lets a group heuristic be checked."""
    if task.definition.grouped:
        raise ModelError(
            f"these baselines score rows one by one, not the groups of a {task.kind} task",
            hint="use mlsd.models.ranking_baselines",
        )
    if task.is_classification and _n_classes(task) < 2:
        raise ModelError(f"a {task.kind} task needs n_classes >= 2", hint="set TaskInfo.n_classes")
    rule: Baseline = (
        HeuristicBaseline(task, heuristic, seed=seed, statistic=statistic, target=target)
        if heuristic is not None and str(heuristic).strip()
        else StumpBaseline(task, seed=seed, statistic=statistic)
    )
    return [
        RandomBaseline(task, seed=seed, statistic=statistic),
        ZeroRuleBaseline(task, seed=seed, statistic=statistic),
        rule,
    ]


__all__ = [
    "Baseline",
    "HeuristicBaseline",
    "RandomBaseline",
    "Rule",
    "StumpBaseline",
    "ZeroRuleBaseline",
    "eval_rule",
    "find_stump",
    "make_baselines",
    "parse_group",
]
