"""Hyper-parameter search for one candidate family within a time budget.

Budget 0 fits the defaults (once per choice in ``param_choices``). Otherwise Optuna's TPE
sampler searches the family's space, read from its parameter table
(:meth:`mlsd.model_params.Family.search_space`), until the budget or the trial count runs out;
the first trials are always the defaults, so tuning never ends worse than the defaults on
validation. Families whose fit reports validation loss per round (LightGBM) report it every 10
rounds and a median pruner stops the hopeless trials. Optuna is imported only when a budget is
given. Given a :class:`TrialPool` (a Ray cluster's), the search asks for several trials at
once and tells each result as it comes back (Optuna's ask-and-tell), the fits running in the
pool and the scoring here.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from mlsd.model_params import CATEGORICAL, FAMILIES, FIXED, LOG_UNIFORM, Param
from mlsd.models.base import FitData, Model, ModelError, TaskInfo
from mlsd.models.families import family_class, make_model

REPORT_EVERY = 10  # LightGBM rounds between two reports to the pruner
DEFAULTS_ATTR = "mlsd_defaults"  # user attribute that marks an enqueued defaults trial
FITTED_ATTR = "mlsd_params"  # user attribute: the parameters the trial's model was given


@dataclass
class TuningResult:
    """The outcome of :func:`tune`: the best model (kept from its trial) and the search."""

    model: Model
    params: dict[str, Any]
    score: float  # best validation score (nan when there was no validation split)
    n_trials: int
    n_pruned: int
    elapsed_s: float
    default_score: float = math.nan  # the defaults' validation score, for comparison
    trials: list[dict[str, Any]] = field(default_factory=list)  # number, params, score, state
    # the best trial's predictions of the validation rows (out of fold under cross-validation)
    valid_pred: np.ndarray | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for the leaderboard and the run log."""
        return {
            "params": self.params,
            "score": self.score,
            "default_score": self.default_score,
            "n_trials": self.n_trials,
            "n_pruned": self.n_pruned,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def tune(
    family: str,
    task: TaskInfo,
    data: FitData,
    *,
    score: Callable[[np.ndarray], float],
    direction: Literal["max", "min"],
    budget_s: float,
    max_trials: int,
    seed: int,
    param_choices: dict[str, Sequence[Any]] | None = None,
    fixed: dict[str, Any] | None = None,
    pool: TrialPool | None = None,
) -> TuningResult:
    """Search ``family``'s parameters, scoring each fit by ``score(predictions on
    data.X_valid)``; ``direction`` says whether higher or lower scores are better.

    ``param_choices`` adds categorical choices to the search, e.g.
    ``{"class_weight": [None, "balanced"]}``; with budget 0 each combination is fitted once
    and the best on validation is kept. ``fixed`` holds parameters at one value in every
    trial, the defaults' included (the spec's ``models.params``); they are not searched.
    ``pool`` fits up to ``pool.slots`` trials at once (on a Ray cluster); TPE then proposes
    each trial from the ones finished so far, which depends on the order they finish in, so
    unlike a search here the trials are not the same from run to run.
    """
    family_class(family)  # unknown family: fail before any work
    if direction not in ("max", "min"):
        raise ModelError(f"direction must be 'max' or 'min', got {direction!r}", hint="fix it")
    fixed = fixed or {}
    FAMILIES[family].validate(fixed, task.kind, error=ModelError)
    if both := sorted(set(fixed) & set(param_choices or {})):
        raise ModelError(
            f"{', '.join(both)} both fixed and given choices",
            hint="fix a parameter or give it choices, not both",
        )
    choices = _choice_grid({**(param_choices or {}), **{n: [v] for n, v in fixed.items()}})
    has_valid = bool(data.folds) or (
        data.X_valid is not None and data.y_valid is not None and len(data.y_valid) > 0
    )
    start = time.perf_counter()
    if budget_s <= 0 or not has_valid:
        if budget_s > 0:
            raise ModelError(
                f"tuning {family} needs a validation split to score trials",
                hint="set data.split.valid above 0, or models.tuning.budget_s: 0",
            )
        return _defaults_only(family, task, data, score, direction, seed, choices, start)
    return _search(
        family, task, data, score, direction, budget_s, max_trials, seed, choices, start, pool
    )


# --- budget 0 ------------------------------------------------------------------------------


def _choice_grid(param_choices: dict[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the caller's choices (one empty dict when there are none)."""
    if not param_choices:
        return [{}]
    for name, values in param_choices.items():
        if not list(values):
            raise ModelError(f"param_choices[{name!r}] is empty", hint="give at least one value")
    names = list(param_choices)
    return [
        dict(zip(names, combo, strict=True))
        for combo in itertools.product(*(list(param_choices[n]) for n in names))
    ]


def _better(a: float, b: float, direction: str) -> bool:
    """True when score ``a`` beats ``b``; nan never wins."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a > b if direction == "max" else a < b


def _fit_and_score(
    family: str,
    task: TaskInfo,
    params: dict[str, Any],
    seed: int,
    data: FitData,
    score: Callable[[np.ndarray], float],
    callbacks: list | None = None,
    deadline: float | None = None,
) -> tuple[Model | None, dict[str, Any], float, np.ndarray | None]:
    """:func:`fit_trial`, then ``score`` its predictions (nan without a validation split)."""
    model, fitted, pred = fit_trial(family, task, params, seed, data, callbacks, deadline)
    if pred is None:
        return model, fitted, math.nan, None
    return model, fitted, *_scored(pred, score)


def fit_trial(
    family: str,
    task: TaskInfo,
    params: dict[str, Any],
    seed: int,
    data: FitData,
    callbacks: list | None = None,
    deadline: float | None = None,
) -> tuple[Model | None, dict[str, Any], np.ndarray | None]:
    """Fit ``params`` and predict the rows that judge them: the validation split (the fitted
    model returned), or, with ``data.folds``, each row out of fold (no model: the parameters
    returned carry what the final fit on every row needs, e.g. the rounds early stopping
    chose). Past ``deadline`` (``time.perf_counter``) no further fold is fitted:
    :class:`OutOfTime`. It needs no scorer, so a pool can run it elsewhere."""
    if not data.folds:
        model = make_model(family, task, params, seed)
        model.fit(data, callbacks=callbacks) if callbacks else model.fit(data)
        if data.X_valid is None:
            return model, params, None
        return model, params, np.asarray(model.predict(data.X_valid))
    folds = []
    for index in range(len(data.folds)):
        if deadline is not None and time.perf_counter() > deadline:
            raise OutOfTime(f"the budget ended before fold {index + 1}")
        folds.append(fit_fold(family, task, params, seed, data, index))
    final, oof = out_of_fold(data, params, folds)
    return None, final, oof


def fit_fold(
    family: str, task: TaskInfo, params: dict[str, Any], seed: int, data: FitData, index: int
) -> tuple[np.ndarray, int | None, float]:
    """Fit fold ``index`` of ``data.folds`` and predict its held-out rows: the predictions,
    the boosting rounds early stopping chose (None for a family without) and the seconds
    it took. Folds are independent: a pool may fit them at once."""
    began = time.perf_counter()
    fit, held_out = data.folds[index]
    model = make_model(family, task, params, seed).fit(data.fold(fit, held_out))
    pred = np.asarray(model.predict(data.X[held_out]), dtype=np.float64)
    return pred, model.refit_params().get("num_boost_round"), time.perf_counter() - began


def out_of_fold(
    data: FitData, params: dict[str, Any], folds: list[tuple[np.ndarray, int | None, float]]
) -> tuple[dict[str, Any], np.ndarray]:
    """Every row's prediction from the folds that held it out (:func:`fit_fold`'s results,
    in fold order; the mean over repeats) and the parameters of the fit on every row."""
    oof: np.ndarray | None = None
    seen = np.zeros(len(data.y))
    for (_, held_out), (pred, _, _) in zip(data.folds, folds, strict=True):
        if oof is None:
            oof = np.zeros((len(data.y), *pred.shape[1:]))
        oof[held_out] += pred
        seen[held_out] += 1
    assert oof is not None
    oof /= seen.reshape(-1, *([1] * (oof.ndim - 1)))  # repeats: the mean of a row's folds
    final = dict(params)
    rounds = [r for _, r, _ in folds]
    if all(r is not None for r in rounds):  # the fit on every row grows the folds' mean
        final["num_boost_round"] = max(1, round(float(np.mean(rounds))))
    return final, oof


def timed_trial(
    data: FitData,
    family: str,
    task: TaskInfo,
    params: dict[str, Any],
    seed: int,
    seconds: float | None,
) -> tuple[Model | None, dict[str, Any], np.ndarray | None, float]:
    """:func:`fit_trial` as a :class:`TrialPool` runs it: given the seconds it may take
    (a deadline does not cross processes), and returning the seconds it took."""  # fmt: skip
    began = time.perf_counter()
    deadline = None if seconds is None else began + seconds
    model, fitted, pred = fit_trial(family, task, params, seed, data, None, deadline)
    return model, fitted, pred, time.perf_counter() - began


class TrialPool(Protocol):
    """Somewhere trials are fitted several at once (:class:`mlsd.engine.ray_tuning.RayTrials`):
    ``share`` places the data once, ``submit`` runs :func:`timed_trial` on it with the other
    arguments and returns a handle, ``finished`` the handles done within ``timeout``
    seconds, ``result`` a finished trial's outcome (or raises its exception), ``cancel``
    gives up on one."""

    slots: int

    def share(self, data: FitData) -> Any: ...

    def submit(self, shared: Any, *args: Any) -> Any: ...

    def finished(self, handles: list[Any], timeout: float) -> list[Any]: ...

    def result(self, handle: Any) -> Any: ...

    def cancel(self, handle: Any) -> None: ...


def _scored(pred: np.ndarray, score: Callable[[np.ndarray], float]) -> tuple[float, np.ndarray]:
    """``score(pred)`` (nan when not finite) and ``pred``."""
    value = float(score(pred))
    return (value if math.isfinite(value) else math.nan), pred


class OutOfTime(Exception):
    """A trial the budget ended: left unfinished, never scored."""


def _final(
    family: str, task: TaskInfo, model: Model | None, params: dict, seed: int, data: FitData
) -> Model:
    """The model a tuning run hands on: the one fitted on the training split, or, after
    cross-validation, one fitted on every row with the chosen parameters."""
    if model is not None:
        return model
    return make_model(family, task, params, seed).fit(data.without_validation())


def _defaults_only(family, task, data, score, direction, seed, choices, start) -> TuningResult:
    """Fit the defaults once per choice combination; keep the best on validation (or the
    first combination when there is no validation split to compare them on)."""
    if data.X_valid is None and not data.folds:
        choices = choices[:1]
    best: tuple[Model | None, dict, float, np.ndarray | None] | None = None
    trials = []
    for number, params in enumerate(choices):
        model, fitted, value, pred = _fit_and_score(family, task, params, seed, data, score)
        trials.append({"number": number, "params": fitted, "score": value, "state": "COMPLETE"})
        if best is None or _better(value, best[2], direction):
            best = (model, fitted, value, pred)
    assert best is not None
    return TuningResult(
        model=_final(family, task, best[0], best[1], seed, data),
        params=best[1],
        score=best[2],
        n_trials=len(choices),
        n_pruned=0,
        elapsed_s=time.perf_counter() - start,
        default_score=trials[0]["score"],
        trials=trials,
        valid_pred=best[3],
    )


# --- search --------------------------------------------------------------------------------


def draw(trial: Any, param: Param) -> Any:
    """The value ``trial`` takes for ``param``, drawn as its table's search says."""
    search = param.search
    assert search is not None
    if search.distribution == FIXED:
        return search.value
    if search.distribution == CATEGORICAL:
        return trial.suggest_categorical(param.name, list(search.choices))
    suggest = trial.suggest_int if param.type is int else trial.suggest_float
    return suggest(param.name, search.low, search.high, log=search.distribution == LOG_UNIFORM)


def start_point(space: dict[str, Param]) -> dict[str, Any]:
    """Where the defaults sit inside ``space``: each drawn parameter's default, moved inside
    its search range when outside it (lambda_l2's 0 becomes the range's floor). The defaults
    trial itself fits no parameters at all; this only tells the sampler where it was."""
    point = {}
    for name, param in space.items():
        search = param.search
        assert search is not None
        if search.distribution == CATEGORICAL:
            point[name] = param.default
        elif search.distribution != FIXED:
            point[name] = min(max(param.default, search.low), search.high)
    return point


def pruning_callback(
    trial: Any, direction: str, every: int = REPORT_EVERY, deadline: float | None = None
) -> Callable:
    """A LightGBM callback reporting the validation loss to ``trial`` every ``every`` rounds
    and raising ``optuna.TrialPruned`` when the pruner says so, or once past ``deadline``
    (``time.perf_counter``). The loss is negated for a maximising study so that, as for the
    study's own score, higher is better."""
    import optuna

    sign = -1.0 if direction == "max" else 1.0

    def callback(env: Any) -> None:
        step = env.iteration + 1
        if step % every or not env.evaluation_result_list:
            return
        if deadline is not None and time.perf_counter() > deadline:
            raise optuna.TrialPruned(f"the budget ended at round {step}")
        _, _, loss, higher_is_better = env.evaluation_result_list[0][:4]
        loss = -loss if higher_is_better else loss
        trial.report(sign * float(loss), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at round {step}")

    return callback


def _search(
    family, task, data, score, direction, budget_s, max_trials, seed, choices, start, pool=None
) -> TuningResult:
    import optuna

    by_name = {name: list(values) for name, values in _choices_by_name(choices).items()}
    # names the caller fixes through param_choices are left out, so none is suggested twice
    space = {n: p for n, p in FAMILIES[family].search_space(task.kind).items() if n not in by_name}
    # pruning watches one validation split as it is fitted here: under cross-validation,
    # and in a pool (whose fits report to nobody), every trial ends
    pruning = FAMILIES[family].pruning and not data.folds and pool is None
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2 * REPORT_EVERY)
        if pruning
        else optuna.pruners.NopPruner()
    )
    previous_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="maximize" if direction == "max" else "minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner,
        )
        for combo in choices:
            study.enqueue_trial({**start_point(space), **combo}, user_attrs={DEFAULTS_ATTR: True})
        keeper = _Keeper(direction)

        def suggest(trial: Any) -> tuple[dict[str, Any], bool]:
            """The trial's parameters, and whether it is an enqueued defaults trial (which
            fits the plain defaults, is never pruned and always finishes: the search never
            ends without a model)."""
            combo = {n: trial.suggest_categorical(n, v) for n, v in by_name.items()}
            suggested = {name: draw(trial, param) for name, param in space.items()}
            is_default = bool(trial.user_attrs.get(DEFAULTS_ATTR))
            return (dict(combo) if is_default else {**suggested, **combo}), is_default

        n_trials = max(int(max_trials), len(choices))
        deadline = start + budget_s
        if pool is not None:
            _run_in_pool(study, suggest, pool, family, task, data, score, seed, keeper, n_trials,
                         deadline)  # fmt: skip
        else:

            def objective(trial: Any) -> float:
                nonlocal deadline
                params, is_default = suggest(trial)
                prune = pruning and not is_default
                callbacks = (
                    [pruning_callback(trial, direction, deadline=deadline)] if prune else None
                )
                began = time.perf_counter()
                try:
                    model, fitted, value, pred = _fit_and_score(
                        family, task, params, seed, data, score, callbacks,
                        None if is_default else deadline,
                    )  # fmt: skip
                except OutOfTime as exc:
                    raise optuna.TrialPruned(str(exc)) from None
                if data.folds and trial.number == 0:
                    deadline -= _final_fit_s(time.perf_counter() - began, data)
                trial.set_user_attr(FITTED_ATTR, fitted)
                keeper.offer(model, fitted, value, pred, first_default=trial.number == 0)
                return value  # nan marks the trial FAILED without stopping the study

            def stop(study: Any, _trial: Any) -> None:  # optuna's timeout only stops between
                if time.perf_counter() > deadline:  # trials, and not at a moved deadline
                    study.stop()

            study.optimize(objective, n_trials=n_trials, timeout=budget_s, callbacks=[stop])
    finally:
        optuna.logging.set_verbosity(previous_verbosity)
    final = _final(family, task, keeper.model, keeper.params, seed, data)
    return keeper.result(study, final, time.perf_counter() - start)


def _final_fit_s(trial_s: float, data: FitData) -> float:
    """Time to keep for the fit on every row that follows a cross-validated search: about
    one fold's fit (of a trial that took ``trial_s``) on k/(k-1) times its rows."""
    return trial_s / len(data.folds) * len(data.y) / max(len(data.folds[0][0]), 1)


def _run_in_pool(
    study, suggest, pool: TrialPool, family, task, data, score, seed, keeper, n_trials, deadline
) -> None:
    """Optuna's ask-and-tell with up to ``pool.slots`` trials fitted at once in ``pool``;
    each finished trial is scored here and told to the study as it comes back. At the
    deadline the trials still running are cancelled (the defaults are waited for)."""
    import optuna

    shared = pool.share(data)
    running: dict[Any, tuple[Any, bool]] = {}  # handle -> (trial, is_default)
    asked = 0
    while True:
        now = time.perf_counter()
        while len(running) < pool.slots and asked < n_trials and now < deadline:
            trial = study.ask()
            asked += 1
            params, is_default = suggest(trial)
            seconds = None if is_default else max(deadline - now, 0.0)
            running[pool.submit(shared, family, task, params, seed, seconds)] = (
                trial,
                is_default,
            )
        if not running:
            return
        waiting_for_defaults = any(d for _, d in running.values())
        if now >= deadline and not waiting_for_defaults:
            for handle, (trial, _) in running.items():
                pool.cancel(handle)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
        timeout = 1.0 if now >= deadline else min(deadline - now, 1.0)
        for handle in pool.finished(list(running), timeout=timeout):
            trial, is_default = running.pop(handle)
            try:
                model, fitted, pred, took = pool.result(handle)
            except OutOfTime:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            if data.folds and trial.number == 0:
                deadline -= _final_fit_s(took, data)
            value, pred = (math.nan, None) if pred is None else _scored(pred, score)
            trial.set_user_attr(FITTED_ATTR, fitted)
            keeper.offer(model, fitted, value, pred, first_default=trial.number == 0)
            if math.isnan(value):
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)


def _choices_by_name(choices: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Back from the grid to {name: distinct values in order}."""
    out: dict[str, list[Any]] = {}
    for combo in choices:
        for name, value in combo.items():
            if value not in out.setdefault(name, []):
                out[name].append(value)
    return out


class _Keeper:
    """Holds the best model seen so far (only one, to keep memory flat)."""

    def __init__(self, direction: str):
        self.direction = direction
        self.model: Model | None = None  # None under cross-validation: refitted at the end
        self.params: dict[str, Any] = {}
        self.score = math.nan
        self.default_score = math.nan
        self.pred: np.ndarray | None = None
        self.offered = False

    def offer(
        self,
        model: Model | None,
        params: dict,
        value: float,
        pred: np.ndarray | None,
        first_default: bool,
    ) -> None:
        if first_default:
            self.default_score = value
        if not self.offered or _better(value, self.score, self.direction):
            self.model, self.params, self.score, self.pred = model, params, value, pred
            self.offered = True

    def result(self, study: Any, model: Model, elapsed: float) -> TuningResult:
        """The search's outcome, handing on ``model`` (the best trial's, or its refit)."""
        import optuna

        states = [t.state for t in study.trials]
        if not self.offered:
            raise ModelError("no tuning trial finished", hint="raise models.tuning.budget_s")
        trials = [
            {
                "number": t.number,
                "params": t.user_attrs.get(FITTED_ATTR, t.params),
                "score": t.value if t.value is not None else math.nan,
                "state": t.state.name,
            }
            for t in study.trials
        ]
        return TuningResult(
            model=model,
            params=self.params,
            score=self.score,
            n_trials=len(study.trials),
            n_pruned=sum(s == optuna.trial.TrialState.PRUNED for s in states),
            elapsed_s=elapsed,
            default_score=self.default_score,
            trials=trials,
            valid_pred=self.pred,
        )
