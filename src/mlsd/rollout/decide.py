"""One decision per strategy, from the arms' live figures: hold, advance, reweight, promote,
roll back or stop, with the reasons and the statistics behind it.

Every test here is safe to repeat at each decision: metric comparisons use always-valid
confidence sequences and p-values (:mod:`mlsd.rollout.stats`), so deciding every loop
iteration does not inflate the false-positive rate the spec's ``rollout.alpha`` sets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from mlsd.monitoring.drift import (
    DEFAULT_THRESHOLDS,
    chi2_homogeneity,
    jensen_shannon,
    ks_p_value,
)
from mlsd.rollout import online, stats
from mlsd.rollout.bandit import ips, thompson_weights
from mlsd.rollout.experiment import Experiment
from mlsd.spec.base import parse_duration
from mlsd.tasks import LABEL, Task
from mlsd.tasks.online_metrics import OnlineMetric

HOLD, ADVANCE, REWEIGHT, PROMOTE, ROLLBACK, STOP = (
    "hold",
    "advance",
    "reweight",
    "promote",
    "rolled_back",
    "stopped",
)
MIN_LABELLED_UNITS = 30  # per arm, before a metric is judged at all


@dataclass
class Context:
    """What a decision reads besides the experiment: the task, the arms' traffic, the
    online metrics (the first decides canary, shadow and bandit), and the spec's bounds."""

    task: Task
    classes: list | None
    traffic: online.Traffic
    metrics: list[OnlineMetric]
    alpha: float
    latency_budget_ms: float
    now: float = field(default_factory=time.time)
    funnel: bool = False  # a recommender: shadows are compared list by list


@dataclass
class Decision:
    """What to do now and why; ``evidence`` holds every figure behind it."""

    action: str
    reasons: list[str]
    evidence: dict[str, Any]
    waiting_for: list[str] = field(default_factory=list)
    winner: str | None = None  # the arm to promote

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what the history and ``--json`` show)."""
        return {
            "action": self.action,
            "reasons": self.reasons,
            "waiting_for": self.waiting_for,
            "winner": self.winner,
            "evidence": self.evidence,
        }


def decide(experiment: Experiment, ctx: Context) -> Decision:
    """The decision of ``experiment``'s strategy now."""
    return {"shadow": _shadow, "canary": _canary, "ab": _ab, "bandit": _bandit}[
        experiment.strategy
    ](experiment, ctx)


# --------------------------------------------------------------------------- shared tests


def prediction_drift(
    task: Task,
    live: pd.DataFrame,
    other: pd.DataFrame,
    alpha: float,
    material_at: float | None = None,
) -> dict:
    """Whether ``other``'s watched output is distributed unlike ``live``'s: KS for numbers,
    chi-square for labels; drifted when significant at ``alpha`` and the distance is at least
    ``material_at`` (default: monitoring's threshold for the method)."""
    watched = task.watched_output
    a, b = live.get(watched.name), other.get(watched.name)
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return {"output": watched.name, "tested": False, "drifted": False}
    if watched.kind == LABEL:
        keys = sorted(set(map(str, a)) | set(map(str, b)))
        ca = np.array([(a.astype(str) == k).sum() for k in keys], dtype=float)
        cb = np.array([(b.astype(str) == k).sum() for k in keys], dtype=float)
        _, p, _ = chi2_homogeneity(ca, cb)
        distance, method = jensen_shannon(ca, cb), "jensen_shannon"
    else:
        from scipy.stats import ks_2samp

        x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        distance = float(ks_2samp(x, y).statistic) if len(x) and len(y) else 0.0
        p, method = ks_p_value(distance, len(x), len(y)), "ks"
    material_at = DEFAULT_THRESHOLDS[method] if material_at is None else material_at
    return {
        "output": watched.name,
        "tested": True,
        "method": method,
        "distance": distance,
        "p_value": p,
        "material_at": material_at,
        "drifted": bool(p < alpha and distance >= material_at),
    }


def _tau(experiment: Experiment, metric: OnlineMetric, control: stats.Sample, mde: float) -> float:
    """The mixing scale of ``metric``'s sequential test, fixed the first time the control
    arm has data (changing it later would void the always-valid guarantee)."""
    if metric.name not in experiment.tau:
        sd = float(np.sqrt(control.var)) if control.n > 1 else 1.0
        experiment.tau[metric.name] = stats.default_tau(control.mean, sd, mde)
    return experiment.tau[metric.name]


def _tau_at(experiment: Experiment, key: str, variance: float, n: int) -> float:
    """The mixing scale that makes the confidence sequence tightest when the difference has
    ``variance`` (of one unit) over ``n`` units (GrowthBook's tuning on the expected sample
    size): the standard error there. Fixed the first time, as in :func:`_tau`."""
    if key not in experiment.tau:
        experiment.tau[key] = max(float(np.sqrt(variance / max(n, 1))), 1e-9)
    return experiment.tau[key]


def _elapsed(since: float, now: float) -> float:
    return max(0.0, now - since)


# --------------------------------------------------------------------------- strategies


def _canary(experiment: Experiment, ctx: Context) -> Decision:
    cfg = experiment.config
    challenger, champion = experiment.challengers[0], experiment.champion
    steps = cfg["steps"]
    share = steps[experiment.step]
    since = experiment.step_started_at
    arms = {
        m.name: online.arm_summary(ctx.traffic, m.name, str(m.version), since)
        for m in experiment.members
    }
    ch, base = arms[challenger.name], arms[champion.name]
    evidence: dict[str, Any] = {"step": experiment.step, "share": share, "arms": arms}
    failed, waiting = [], []

    excess = (ch["error_rate"] or 0.0) - (base["error_rate"] or 0.0)
    if ch["error_rate"] is not None and excess > cfg["max_error_rate"]:
        failed.append(
            f"error rate {ch['error_rate']:.2%} is {excess:.2%} over the champion's "
            f"(bound {cfg['max_error_rate']:.2%})"
        )
    bound = cfg.get("p99_ms") or ctx.latency_budget_ms
    enough = ch["requests"] >= cfg["min_requests"]
    if enough and ch["p99_ms"] is not None and ch["p99_ms"] > bound:
        failed.append(f"p99 latency {ch['p99_ms']:.1f} ms over the bound of {bound:g} ms")
    live = ctx.traffic.arm_rows(champion.name, since)
    drift = prediction_drift(
        ctx.task,
        live,
        ctx.traffic.arm_rows(challenger.name, since),
        cfg["drift_alpha"],
        cfg["max_drift"],
    )
    evidence["prediction_drift"] = drift
    if drift["drifted"]:
        failed.append(
            f"its {drift['output']} is distributed unlike the champion's "
            f"({drift['method']} {drift['distance']:.3f} over the bound {drift['material_at']:g}, "
            f"p = {drift['p_value']:.2g})"
        )
    metric = ctx.metrics[0]
    samples = online.metric_samples(
        ctx.traffic, metric, ctx.task, ctx.classes, [champion.name, challenger.name]
    )
    judged = min(s.n for s in samples.values()) >= MIN_LABELLED_UNITS
    ni = None
    if judged:
        control, test = samples[champion.name], samples[challenger.name]
        margin = cfg["margin"] * abs(control.mean)  # relative to the champion's value
        tau = _tau_at(experiment, metric.name, control.var + test.var, cfg["min_requests"])
        ni = stats.non_inferiority(
            control,
            test,
            margin=margin,
            higher_is_better=metric.higher_is_better,
            tau=tau,
            alpha=ctx.alpha,
        )
        evidence["non_inferiority"] = {"metric": metric.name, **ni.to_dict()}
        if ni.status == "fail":
            failed.append(
                f"{metric.name} is worse than the champion's by more than the margin "
                f"{margin:.4g} ({cfg['margin']:.0%}; difference {ni.difference:+.4g}, always-valid CI "
                f"[{ni.ci_low:+.4g}, {ni.ci_high:+.4g}])"
            )
    if failed:
        return Decision(ROLLBACK, failed, evidence)
    held = _elapsed(since, ctx.now)
    if not enough:
        waiting.append(f"{cfg['min_requests'] - ch['requests']} more challenger requests")
    if held < parse_duration(cfg["min_duration"]):
        waiting.append(f"{parse_duration(cfg['min_duration']) - held:.0f} s more at {share:g}%")
    last = experiment.step == len(steps) - 1
    next_is_last = experiment.step == len(steps) - 2
    if (last or next_is_last) and not waiting and ni is not None and ni.status != "pass":
        waiting.append(
            f"{metric.name} shown not worse than the champion's by {cfg['margin']:.0%} "
            "(the interval is still too wide)"
        )
    if waiting:
        if held >= parse_duration(cfg["max_duration"]):
            return Decision(
                ROLLBACK,
                [f"step {share:g}% not passed within {cfg['max_duration']}: " + "; ".join(waiting)],
                evidence,
            )
        return Decision(HOLD, [], evidence, waiting)
    labels = (
        f"{metric.name} not worse (difference {ni.difference:+.4g}, + favours the challenger)"
        if ni is not None
        else f"no labels yet: {metric.name} not judged"
    )
    passed = (
        f"{share:g}% passed: {ch['requests']} requests, error rate "
        f"{(ch['error_rate'] or 0):.2%}, p99 {ch['p99_ms'] or 0:.1f} ms, no prediction drift, "
        + labels
    )
    if last:
        return Decision(PROMOTE, [passed], evidence, winner=challenger.name)
    return Decision(ADVANCE, [passed], evidence)


def _ab(experiment: Experiment, ctx: Context) -> Decision:
    cfg = experiment.config
    champion, challenger = experiment.champion, experiment.challengers[0]
    names = [challenger.name, champion.name]
    units = online.units_per_arm(ctx.traffic, names)
    weights = [experiment.weights[n] for n in names]
    srm = stats.srm(units, weights)
    evidence: dict[str, Any] = {
        "units": dict(zip(names, units, strict=True)),
        "srm": srm.to_dict(),
        "metrics": {},
    }
    if srm.mismatch:
        return Decision(
            HOLD,
            [
                f"sample ratio mismatch: units {units} against shares {weights} "
                f"(chi-square p = {srm.p_value:.2g}); no decision until it is explained"
            ],
            evidence,
            ["the assignment to be fixed (see the SRM evidence)"],
        )
    results, p_values = [], []
    for metric in ctx.metrics:
        samples = online.metric_samples(ctx.traffic, metric, ctx.task, ctx.classes, names)
        control, test = samples[champion.name], samples[challenger.name]
        if min(control.n, test.n) < MIN_LABELLED_UNITS:
            evidence["metrics"][metric.name] = {"n_control": control.n, "n_test": test.n}
            results.append(None)
            p_values.append(None)
            continue
        tau = _tau(experiment, metric, control, cfg["mde"])
        result = stats.msprt(control, test, tau=tau, alpha=ctx.alpha)
        p = stats.always_valid(experiment.running_p.get(metric.name), result.p_value)
        experiment.running_p[metric.name] = p
        evidence["metrics"][metric.name] = {**result.to_dict(), "always_valid_p": p}
        results.append(result)
        p_values.append(p)
    correct = stats.holm if cfg["correction"] == "holm" else stats.benjamini_hochberg
    rejected = correct(p_values, ctx.alpha)
    better, worse = [], []
    for metric, result, reject in zip(ctx.metrics, results, rejected, strict=True):
        if result is None or not reject:
            continue
        improved = (result.difference > 0) == metric.higher_is_better
        (better if improved else worse).append(
            f"{metric.name} {result.difference:+.4g} (CI [{result.ci_low:+.4g}, "
            f"{result.ci_high:+.4g}])"
        )
    if worse:
        return Decision(ROLLBACK, ["the challenger is worse: " + ", ".join(worse)], evidence)
    if better:
        return Decision(
            PROMOTE, ["the challenger wins: " + ", ".join(better)], evidence, winner=challenger.name
        )
    max_units = cfg.get("max_units") or experiment.plan.get("n_total")
    if max_units and sum(units) >= max_units:
        return Decision(
            STOP,
            [
                f"futility: {sum(units):,} units reached the plan's {max_units:,} without a difference"
            ],
            evidence,
        )
    waiting = [f"a significant difference on {', '.join(m.name for m in ctx.metrics)}"]
    if max_units:
        waiting.append(f"or {max_units - sum(units):,} more units (futility)")
    return Decision(HOLD, [], evidence, waiting)


def _bandit(experiment: Experiment, ctx: Context) -> Decision:
    cfg = experiment.config
    metric = ctx.metrics[0]
    names = [m.name for m in experiment.members]
    samples = online.metric_samples(ctx.traffic, metric, ctx.task, ctx.classes, names)
    if not metric.higher_is_better:  # a loss: reward its negative
        samples = {k: stats.Sample(s.n, -s.mean, s.var) for k, s in samples.items()}
    rows = ctx.traffic.labelled
    values = online.row_values(metric, ctx.task, ctx.classes, rows)
    bernoulli = bool(np.isin(values[~np.isnan(values)], (0.0, 1.0)).all())
    evidence: dict[str, Any] = {
        "reward": metric.name,
        "arms": {k: s.to_dict() for k, s in samples.items()},
    }
    ok = ~np.isnan(values) & rows["p"].notna().to_numpy()
    if ok.any():
        index = {n: i for i, n in enumerate(names)}
        arm_ids = rows["arm"].map(index).to_numpy()[ok].astype(int)
        rewards = values[ok] if metric.higher_is_better else -values[ok]
        estimates = ips(arm_ids, rewards, rows["p"].to_numpy(dtype=float)[ok], len(names))
        evidence["ips"] = {names[e.arm]: e.to_dict() for e in estimates}
    short = [n for n in names if samples[n].n < cfg["min_requests"]]
    if short:
        return Decision(
            HOLD,
            [],
            evidence,
            [f"{cfg['min_requests']} labelled requests on every arm (short: {', '.join(short)})"],
        )
    weights = thompson_weights(
        [samples[n] for n in names],
        floor=cfg["floor"],
        seed=len(experiment.history),
        bernoulli=bernoulli,
    )
    best = thompson_weights(
        [samples[n] for n in names], floor=0.0, seed=len(experiment.history), bernoulli=bernoulli
    )
    evidence["weights"] = dict(zip(names, map(float, weights), strict=True))
    evidence["p_best"] = dict(zip(names, map(float, best), strict=True))
    top = int(np.argmax(best))
    if best[top] >= cfg["stop_at"]:
        reason = f"{names[top]} is best with probability {best[top]:.3f} (>= {cfg['stop_at']})"
        if names[top] == experiment.champion.name:
            return Decision(STOP, [reason + ": the champion stays"], evidence)
        return Decision(PROMOTE, [reason], evidence, winner=names[top])
    return Decision(
        REWEIGHT,
        [f"traffic follows each arm's probability of being best (floor {cfg['floor']:.0%})"],
        evidence,
    )


def _shadow(experiment: Experiment, ctx: Context) -> Decision:
    cfg = experiment.config
    shadow = experiment.challengers[0]
    compare = _recommender_shadow if ctx.funnel else _model_shadow
    requests, evidence, paired = compare(shadow.name, ctx)
    if not requests:
        return Decision(HOLD, [], evidence, [f"{cfg['min_requests']} shadowed requests"])
    failed, waiting = [], []
    bound = ctx.latency_budget_ms
    p99 = evidence["latency_ms"]["shadow"]["p99"]
    if requests >= cfg["min_requests"] and p99 is not None and p99 > bound:
        failed.append(f"shadow p99 latency {p99:.1f} ms over the budget of {bound:g} ms")
    metric = ctx.metrics[0]
    ni = None
    if paired is not None:
        diff, live_mean = paired
        evidence["paired"] = {"metric": metric.name, "requests": diff.n, **diff.to_dict()}
        if diff.n >= MIN_LABELLED_UNITS:
            margin = cfg["margin"] * abs(live_mean)  # relative to the live model's
            zero = stats.Sample(diff.n, 0.0, 0.0)  # paired: the live side is the origin
            tau = _tau_at(experiment, metric.name, diff.var, cfg["min_requests"])
            ni = stats.non_inferiority(
                zero,
                diff,
                margin=margin,
                higher_is_better=metric.higher_is_better,
                tau=tau,
                alpha=ctx.alpha,
            )
            evidence["non_inferiority"] = {"metric": metric.name, **ni.to_dict()}
            if ni.status == "fail":
                failed.append(
                    f"on the same requests, {metric.name} is worse than the champion's "
                    f"(difference {ni.difference:+.4g}, CI [{ni.ci_low:+.4g}, {ni.ci_high:+.4g}])"
                    + (  # feedback came on the champion's lists only
                        "; users saw only the champion's lists: a canary shows the shadow's own"
                        if ctx.funnel
                        else ""
                    )
                )
    if failed:
        return Decision(STOP, [*failed, "the champion stays"], evidence)
    if requests < cfg["min_requests"]:
        waiting.append(f"{cfg['min_requests'] - requests} more shadowed requests")
    held = _elapsed(experiment.started_at, ctx.now)
    if held < parse_duration(cfg["min_duration"]):
        waiting.append(f"{parse_duration(cfg['min_duration']) - held:.0f} s more")
    if ni is None or ni.status != "pass":
        waiting.append(f"labels showing {metric.name} not worse on the same requests")
    if waiting:
        if held >= parse_duration(cfg["max_duration"]):
            return Decision(
                STOP, [f"no decision within {cfg['max_duration']}: the champion stays"], evidence
            )
        return Decision(HOLD, [], evidence, waiting)
    return Decision(
        PROMOTE,
        [
            f"on {diff.n} labelled requests both models answered, {metric.name} differs by "
            f"{ni.difference:+.4g} (CI [{ni.ci_low:+.4g}, {ni.ci_high:+.4g}]): not worse"
        ],
        evidence,
        winner=shadow.name,
    )


def _model_shadow(arm: str, ctx: Context) -> tuple[int, dict, tuple | None]:
    """A model's shadow: its answers beside the live ones on the same instances; the
    requests both answered, the evidence, and with labels the per-unit difference of the
    first metric (shadow minus live) with the live mean."""
    pairs = online.shadow_pairs(ctx.traffic, arm)
    evidence: dict[str, Any] = {"pairs": len(pairs)}
    if pairs.empty:
        return 0, evidence, None
    live, copy = online.side(pairs, "_live"), online.side(pairs, "_shadow")
    evidence.update(shadow_comparison(ctx.task, live, copy, ctx.alpha))
    labelled_pairs = pairs[pairs["true_label"].notna()]
    paired = None
    if len(labelled_pairs):
        metric = ctx.metrics[0]
        live = online.side(labelled_pairs, "_live")
        a = online.row_values(metric, ctx.task, ctx.classes, live)
        b = online.row_values(metric, ctx.task, ctx.classes, online.side(labelled_pairs, "_shadow"))
        paired = (online.unit_sample(live, b - a), float(np.nanmean(a)))
    return int(pairs["request_id"].nunique()), evidence, paired


def _recommender_shadow(arm: str, ctx: Context) -> tuple[int, dict, tuple | None]:
    """A recommender's shadow: its list beside the live list of the same request.
    ``agreement`` is the mean overlap (the share of the live list the shadow also listed).
    Feedback exists only for what users saw: the shadow's value of a request is the feedback
    on the live items it also listed, over its own list's length, its other items counted
    as 0. That favours the champion, so a shadow passing non-inferiority is not worse; one
    failing may only be unseen (a canary shows its own list)."""
    metric = ctx.metrics[0]
    value = partial(online.row_values, metric, ctx.task, ctx.classes)
    lists = online.shadow_lists(ctx.traffic, arm, value)
    evidence: dict[str, Any] = {"pairs": len(lists)}
    if lists.empty:
        return 0, evidence, None
    overlap = np.array(
        [
            len(set(live) & set(shadow)) / max(len(live), 1)
            for live, shadow in zip(lists["items_live"], lists["items_shadow"], strict=True)
        ]
    )
    evidence["agreement"] = float(overlap.mean())
    evidence["overlap_quantiles"] = {f"p{q}": float(np.percentile(overlap, q)) for q in (10, 50)}
    evidence["latency_ms"] = {
        side: _quantiles(lists[f"latency_ms_{side}"].to_numpy(float)) for side in ("live", "shadow")
    }
    labelled = lists[lists["values"].notna()]
    paired = None
    if len(labelled):
        a, b = [], []
        for live, shadow, values in zip(
            labelled["items_live"], labelled["items_shadow"], labelled["values"], strict=True
        ):
            a.append(np.nanmean([values.get(i, np.nan) for i in live]))
            b.append(sum(values.get(i, 0.0) for i in shadow) / max(len(shadow), 1))
        a, b = np.asarray(a), np.asarray(b)
        paired = (online.unit_sample(labelled, b - a), float(np.nanmean(a)))
    return len(lists), evidence, paired


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p99": None}
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def shadow_comparison(task: Task, live: pd.DataFrame, copy: pd.DataFrame, alpha: float) -> dict:
    """Agreement of the two models on the same requests, the shadow's prediction drift
    against the live answers, and the latency of each."""
    out: dict[str, Any] = {}
    if "label" in live and "label" in copy:
        out["agreement"] = float((live["label"].astype(str) == copy["label"].astype(str)).mean())
    if "value" in live and "value" in copy:
        diff = np.abs(copy["value"].to_numpy(float) - live["value"].to_numpy(float))
        out["abs_difference_quantiles"] = {
            f"p{q}": float(np.nanpercentile(diff, q)) for q in (50, 90, 99)
        }
    out["prediction_drift"] = prediction_drift(task, live, copy, alpha)

    out["latency_ms"] = {
        name: _quantiles(frame.drop_duplicates("request_id")["latency_ms"].to_numpy(float))
        for name, frame in (("live", live), ("shadow", copy))
    }
    return out
