"""The dashboard's rollout section: a running experiment's arms, its last decision and what
it waits for, its strategy's statistic at each decision and each arm's share over them."""

from __future__ import annotations

from typing import Any

from mlsd.ui.pages import esc, line_chart, number, table


def rollout_line(experiment: dict[str, Any] | None) -> str:
    """One line: the strategy, its challengers, its status and each arm's share."""
    if not experiment:
        return "none"
    arms = ", ".join(
        f"{name} {share:.0%}" for name, share in (experiment.get("weights") or {}).items()
    )
    challengers = ", ".join(f"v{c['version']}" for c in experiment.get("challengers", []))
    return (
        f"{esc(experiment.get('strategy'))} of {esc(challengers)}: {esc(experiment.get('status'))}"
        + (f" ({esc(arms)})" if arms else "")
    )


def rollout_section(experiment: dict[str, Any] | None) -> str:
    """The rollout: its arms, the last decision and what it waits for, its strategy's
    statistics at each decision, and each arm's traffic share over the decisions."""
    if not experiment:
        return "<h2>Rollout</h2><p class='muted'>No rollout yet.</p>"
    history = experiment.get("history") or []
    last = history[-1] if history else {}
    shares = {
        arm: [h.get("weights", {}).get(arm) for h in history]
        for arm in (experiment.get("weights") or {})
    }
    waits = ", ".join(last.get("waiting_for") or []) or "nothing"
    reasons = "; ".join(last.get("reasons") or []) or "–"
    step = f"; step {experiment.get('step')}" if experiment.get("strategy") == "canary" else ""
    return (
        "<h2>Rollout</h2>"
        f"<p>Experiment {esc(experiment.get('id'))}: {rollout_line(experiment)}{esc(step)}. "
        f"Last decision: {esc(last.get('action', '–'))} "
        f"({esc(reasons)}). Waiting for: {esc(waits)}.</p>"
        + _arms(last.get("evidence") or {}, experiment.get("weights") or {})
        + (_rewards(history) or _statistic(history))
        + line_chart(
            "Traffic share of each arm at each decision",
            _decisions(history),
            {
                arm: [None if v is None else float(v) for v in points]
                for arm, points in shares.items()
            },
            y_label="share",
        )
    )


def _decisions(history: list[dict[str, Any]]) -> list[str]:
    return [str(i + 1) for i in range(len(history))]


def _interval(estimate: dict[str, Any] | None) -> str:
    if not estimate or estimate.get("mean") is None:
        return "–"
    low, high = number(estimate.get("ci_low"), 3), number(estimate.get("ci_high"), 3)
    return f"{number(estimate['mean'], 3)} [{low}, {high}]"


def _arms(evidence: dict[str, Any], weights: dict[str, float]) -> str:
    """Each arm at the last decision, in the terms of its strategy: a bandit's rewards, an
    A/B test's units, a canary's requests, errors and latency."""
    arms = evidence.get("arms") or {}
    caption = "Arms at the last decision"
    if "reward" in evidence:  # a bandit
        ips, best = evidence.get("ips") or {}, evidence.get("p_best") or {}
        rows = [
            [esc(arm), f"{a.get('n', 0):,}", number(a.get("mean"), 3), _interval(ips.get(arm)),
             number(best.get(arm), 3), number(weights.get(arm), 3)]
            for arm, a in arms.items()
        ]  # fmt: skip
        head = ["arm", "labelled", f"mean reward ({evidence['reward']})",
                "off-policy estimate [95% interval]", "P(best)", "share"]  # fmt: skip
        return table(caption, head, rows)
    if "units" in evidence:  # an A/B test
        rows = [[esc(arm), f"{n:,}", number(weights.get(arm), 3)]
                for arm, n in evidence["units"].items()]  # fmt: skip
        srm = evidence.get("srm") or {}
        check = (
            f"<p>Sample ratio check: p = {number(srm.get('p_value'), 3)}"
            f"{' — MISMATCH' if srm.get('mismatch') else ''}.</p>"
            if srm
            else ""
        )
        return table(caption, ["arm", "units", "share"], rows) + check
    rows = [
        [
            esc(arm),
            f"{a.get('requests', 0):,}",
            f"{a.get('labelled_rows', 0):,}",
            f"{100 * (a.get('error_rate') or 0):.2f}%",
            number(a.get("p99_ms"), 3),
        ]
        for arm, a in arms.items()
    ]
    return table(caption, ["arm", "requests", "labelled", "errors", "p99 ms"], rows)


def _statistic(history: list[dict[str, Any]]) -> str:
    """The decision's statistic at each decision, with its always-valid interval as a
    band: a canary's (or shadow's) non-inferiority difference on the online metric (+ when
    the challenger is better), or an A/B test's difference, challenger minus champion, on
    each of its metrics."""
    tests: dict[str, list[dict[str, Any]]] = {}
    for n, h in enumerate(history):
        evidence = h.get("evidence") or {}
        found = dict(evidence.get("metrics") or {})  # an A/B test's, by metric
        test = evidence.get("non_inferiority")
        if test:
            found[test.get("metric", "the online metric")] = test
        for metric, result in found.items():
            tests.setdefault(metric, [{}] * len(history))[n] = result
    charts = [
        _difference(metric, results, _decisions(history))
        for metric, results in tests.items()
        if any(r.get("difference") is not None for r in results)
    ]
    return "".join(charts) or (
        '<p class="muted">The statistic over time: no decision has one yet.</p>'
    )


def _difference(metric: str, results: list[dict[str, Any]], decisions: list[str]) -> str:
    margin = next((r["margin"] for r in reversed(results) if r.get("margin")), None)
    low, high = [r.get("ci_low") for r in results], [r.get("ci_high") for r in results]
    return line_chart(
        f"Difference in {metric}, "
        + ("+ when the challenger is better" if margin else "challenger minus champion")
        + ", with its always-valid confidence interval, at each decision",
        decisions,
        {"difference": [r.get("difference") for r in results]},
        bands={"difference": (low, high)},
        # non-inferiority holds once the interval is above -margin; an A/B test looks for 0
        threshold=-margin if margin else 0.0,
        threshold_label="margin" if margin else "no difference",
        y_label=metric,
        from_zero=False,
    )


def _rewards(history: list[dict[str, Any]]) -> str:
    """A bandit's estimate of each arm's reward at each decision: the off-policy (inverse
    propensity) estimate with its interval when the log allows one, else the arm's mean."""
    found = [h.get("evidence") or {} for h in history]
    reward = next((e["reward"] for e in found if e.get("reward")), None)
    if reward is None:
        return ""
    arms = list(dict.fromkeys(arm for e in found for arm in e.get("arms") or {}))
    if any(e.get("ips") for e in found):
        estimates = {arm: [(e.get("ips") or {}).get(arm) or {} for e in found] for arm in arms}
        title = "the off-policy (inverse propensity) estimate, with its 95% interval"
    else:
        estimates = {arm: [(e.get("arms") or {}).get(arm) or {} for e in found] for arm in arms}
        title = "the mean on its labelled rows"
    return line_chart(
        f"Reward ({reward}; a loss counts as its negative) of each arm at each decision: " + title,
        _decisions(history),
        {arm: [e.get("mean") for e in points] for arm, points in estimates.items()},
        bands={
            arm: ([e.get("ci_low") for e in points], [e.get("ci_high") for e in points])
            for arm, points in estimates.items()
        },
        y_label=f"reward ({reward})",
        from_zero=False,
    )
