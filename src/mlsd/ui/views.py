"""The dashboard's two kinds of page: the systems of a workspace, and one system whole
(its models and why each was chosen, its last training, the live rollout, its monitoring
over time, alerts and retraining)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlsd.ui import state
from mlsd.ui.pages import esc, line_chart, link, number, page, system_href, table

MAX_FEATURES_CHARTED = 6  # the features that drifted most; the rest are in the table
RECOMMENDER_QUALITY = ("hit_rate@", "ctr@")  # a recommender's monitoring window's figures


def _age(days: float | None) -> str:
    if days is None:
        return "–"
    return f"{days * 24:.1f} hours" if days < 1 else f"{days:.1f} days"


def _rollout_line(experiment: dict[str, Any] | None) -> str:
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


def systems_page(root: Path) -> str:
    rows = []
    for name in state.systems(root):
        s = state.status(root, name)
        champ = s["champion"]
        alert = s["latest_alert"]
        rows.append(
            [
                link(system_href(name), name),
                f"v{champ['version']} ({esc(champ['family'])})" if champ else "none",
                _age(s["age_days"]),
                f'<span class="bad">{esc(alert["kind"])}</span> {esc(alert["message"])} '
                f'<span class="muted">{esc(alert["ts"][:19])}</span>'
                if alert
                else '<span class="good">none</span>',
                _rollout_line(s["rollout"]),
            ]
        )
    body = table(
        "Systems",
        ["system", "champion", "champion's age", "latest alert", "rollout"],
        rows,
    )
    return page(f"Systems in {root}", body)


def _versions(root: Path, name: str, known: list[dict], runs: dict, mlflow_url: str) -> str:
    rows = []
    for v in known:
        run = runs.get(v["version"])
        evaluation = state.run_file(run, "evaluation.html")
        rows.append(
            [
                f"v{v['version']}",
                esc(", ".join(v["aliases"])) or '<span class="muted">–</span>',
                esc(v["family"]),
                esc((v["created_at"] or "")[:19]),
                f"{esc(v['primary'])} {number(v['test'])}" if v["primary"] else "–",
                link(
                    f"{system_href(name)}/versions/{v['version']}/evaluation.html",
                    f"evaluation of v{v['version']}",
                )
                if evaluation
                else "–",
                link(
                    f"{mlflow_url}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}",
                    f"run {run['run_id'][:8]}",
                )
                if run
                else "–",
            ]
        )
    history = [
        [
            esc(e["ts"][:19]),
            esc(e["kind"]),
            f"v{esc(e['model_version'])}" if e["model_version"] else "",
            esc(e["message"]),
        ]
        for e in state.events(root, name, state.MODEL_KINDS, limit=50)
    ]
    return (
        "<h2>Models</h2>"
        + table(
            "Registered versions",
            ["version", "aliases", "family", "created", "test", "evaluation", "MLflow"],
            rows,
        )
        + f'<p class="muted">MLflow links open <code>mlflow ui --backend-store-uri '
        f"sqlite:///{esc(root)}/mlflow.db</code> at {esc(mlflow_url)}.</p>"
        + table(
            "Champion history and the reason for each change",
            ["when", "what", "version", "why"],
            history,
        )
    )


STEPS = {  # system.yaml's sections and the step of ML system design each one is
    "problem": "step 1, problem formulation",
    "metrics": "step 2, metrics",
    "architecture": "step 3, architecture",
    "data": "step 4, data",
    "features": "step 5, features",
    "models": "step 6, model development",
    "serving": "step 7, prediction service",
    "rollout": "step 8, online testing and deployment",
    "monitoring": "step 9, monitoring",
    "retraining": "step 9, continual learning",
    "engine": "scaling",
}


def _spec(champion: dict[str, Any] | None, runs: dict) -> str:
    """The champion's system.yaml as its training run logged it, section by section."""
    import yaml

    path = state.run_file(runs.get(champion["version"]), "system.yaml") if champion else None
    if path is None:
        return "<h2>Spec</h2><p class='muted'>The champion's system.yaml is not in its run.</p>"
    text = path.read_text()
    try:
        sections = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        sections = {}
    parts = [f"<h2>Spec</h2><p>The system.yaml v{champion['version']} was trained with.</p>"]
    for key, value in sections.items() if isinstance(sections, dict) else []:
        if not isinstance(value, dict | list):
            parts.append(f"<p><strong>{esc(key)}</strong>: {esc(value)}</p>")
            continue
        body = yaml.safe_dump(value, sort_keys=False, default_flow_style=False)
        parts.append(
            f"<details><summary><strong>{esc(key)}</strong> "
            f'<span class="muted">({esc(STEPS.get(key, "other"))})</span></summary>'
            f"<pre>{esc(body)}</pre></details>"
        )
    return "".join(parts)


def _training(root: Path, name: str, known: list[dict]) -> str:
    board = state.report(root, name, "leaderboard") or []
    validation = state.report(root, name, "validation") or {}
    # the metric the versions were chosen by (their packages record it), else the first
    primary = next((v["primary"] for v in known if v["primary"]), None)
    rows = []
    for entry in board:
        valid, test = entry.get("valid") or {}, entry.get("test") or {}
        metric = primary if primary in valid else next(iter(valid), None)
        rows.append(
            [
                esc(entry.get("name")),
                esc(entry.get("kind")),
                number(valid.get(metric)),
                number(test.get(metric)),
                '<span class="good">chosen</span>' if entry.get("chosen") else "",
            ]
        )
    anomalies = validation.get("anomalies") or []
    checks = (
        f"{validation.get('n_rows', 0):,} rows, {validation.get('n_columns', 0)} columns, "
        f"{'passed' if validation.get('passed') else 'FAILED'}; "
        f"{len(anomalies)} finding(s): "
        + "; ".join(str(a.get("message", a))[:160] for a in anomalies[:5])
        if validation
        else "no validation report yet"
    )
    return f"<h2>Data and training</h2><p>Latest validation: {esc(checks)}</p>" + table(
        f"Latest training: baselines and candidates, by {primary or 'their first metric'}",
        ["model", "kind", "validation", "test", "chosen"],
        rows,
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
        f"<p>Experiment {esc(experiment.get('id'))}: {_rollout_line(experiment)}{esc(step)}. "
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


def _performance(version: Any, windows: list[dict[str, Any]], labels: list[str]) -> str:
    """Per window: the realised primary metric against the offline test score (a
    recommender's hit rate and click-through), accuracy estimated from the scores (CBPE)
    beside the realised one, and p99 latency against the budget."""
    perf = [w.get("performance") or {} for w in windows]
    real = [(p.get("realised") or {}).get("primary") or {} for p in perf]
    metric = next((r["metric"] for r in real if r.get("metric")), None)
    charts = []
    if metric:
        offline = next((r["offline"] for r in real if r.get("offline") is not None), None)
        charts.append(
            line_chart(
                f"Realised {metric} on the labelled rows per window (version {version})",
                labels,
                {f"realised {metric}": [r.get("value") for r in real]},
                threshold=offline,
                threshold_label="offline test",
                y_label=metric,
                from_zero=False,
            )
        )
    online = dict.fromkeys(k for w in windows for k in w if k.startswith(RECOMMENDER_QUALITY))
    if online:  # a recommender's windows: its served lists' hit rate and click-through
        charts.append(
            line_chart(
                f"Hit rate and click-through of the served lists per window (version {version})",
                labels,
                {key: [w.get(key) for w in windows] for key in online},
                y_label="share of lists / items",
            )
        )
    estimated = [((p.get("estimated") or {}).get("metrics") or {}).get("accuracy") for p in perf]
    if any(v is not None for v in estimated):
        charts.append(
            line_chart(
                f"Accuracy per window, estimated from the scores (CBPE) and realised on the "
                f"labels (version {version})",
                labels,
                {
                    "estimated": estimated,
                    "realised": [
                        ((p.get("realised") or {}).get("metrics") or {}).get("accuracy")
                        for p in perf
                    ],
                },
                y_label="accuracy",
                from_zero=False,
            )
        )
    latency = [w.get("latency") or {} for w in windows]
    budget = next((lat["budget_ms"] for lat in latency if lat.get("budget_ms")), None)
    charts.append(
        line_chart(
            f"Latency p99 per window (version {version})",
            labels,
            {"p99 ms": [lat.get("p99_ms") for lat in latency]},
            threshold=budget,
            threshold_label="budget",
            y_label="ms",
        )
    )
    return "".join(charts)


def _monitoring(root: Path, name: str) -> str:
    report = state.report(root, name, "monitoring")
    if not report or not report.get("models"):
        return "<h2>Monitoring</h2><p class='muted'>No monitoring report yet.</p>"
    parts = [
        "<h2>Monitoring</h2>",
        f"<p>{report.get('n_predictions', 0):,} predictions, "
        f"{report.get('n_labelled', 0):,} with labels, windows of "
        f"{esc((report.get('window') or {}).get('text'))}.</p>",
    ]
    for model in report["models"]:
        windows = model.get("windows") or []
        labels = [str(w.get("start", ""))[:10] for w in windows]
        if len(set(labels)) < len(labels):  # windows shorter than a day: their hours
            labels = [str(w.get("start", ""))[5:16] for w in windows]
        distance: dict[str, list[float | None]] = {}
        threshold = None
        for i, w in enumerate(windows):
            for col in (w.get("drift") or {}).get("columns", []):
                distance.setdefault(col["column"], [None] * len(windows))[i] = col.get("distance")
                threshold = threshold or col.get("threshold")
        top = sorted(distance, key=lambda c: -max(v or 0 for v in distance[c]))
        top = top[:MAX_FEATURES_CHARTED]
        parts.append(f"<h3>Model version {esc(model.get('model_version'))}</h3>")
        parts.append(_performance(model.get("model_version"), windows, labels))
        parts.append(
            line_chart(
                f"Drift distance of the {len(top)} most drifted features per window "
                f"(version {model.get('model_version')})",
                labels,
                {c: distance[c] for c in top},
                threshold=threshold,
                y_label="distance",
            )
        )
        rows = []
        for w in windows:
            drifted = [
                c["column"] for c in (w.get("drift") or {}).get("columns", []) if c.get("drifted")
            ]
            real = ((w.get("performance") or {}).get("realised") or {}).get("primary") or {}
            latency = w.get("latency") or {}
            rows.append(
                [
                    esc(str(w.get("start", ""))[:16]),
                    f"{w.get('n', 0):,}",
                    f'<span class="bad">{esc(", ".join(drifted))}</span>' if drifted else "none",
                    f"{esc(real.get('metric'))} {number(real.get('value'))}" if real else "–",
                    number(latency.get("p99_ms"), 3),
                    str(len(w.get("alerts") or [])),
                ]
            )
        parts.append(
            table(
                f"Windows of version {model.get('model_version')}",
                ["window", "rows", "drifted features", "realised", "p99 ms", "alerts"],
                rows,
            )
        )
    return "".join(parts)


def _evidence(evidence: Any) -> str:
    import json

    if not evidence:
        return ""
    text = json.dumps(evidence, indent=1, default=str)
    return f"<details><summary>evidence</summary><pre>{esc(text[:4000])}</pre></details>"


def _events(root: Path, name: str, kinds: tuple[str, ...], title: str, caption: str) -> str:
    rows = [
        [esc(e["ts"][:19]), esc(e["kind"]), esc(e["message"]) + _evidence(e.get("evidence"))]
        for e in state.events(root, name, kinds, limit=30)
    ]
    return f"<h2>{esc(title)}</h2>" + table(caption, ["when", "what", "message"], rows)


def system_page(root: Path, name: str, mlflow_url: str = "http://127.0.0.1:5000") -> str:
    known, runs = state.versions(root, name), state.runs(root, name)
    s = state.status(root, name, known)
    champ = s["champion"]
    line = (
        f"Champion v{champ['version']} ({esc(champ['family'])}), {_age(s['age_days'])} old; "
        if champ
        else "No champion yet; "
    ) + f"rollout: {_rollout_line(s['rollout'])}."
    reports = [
        [link(f"{system_href(name)}/reports/{quote(f)}", f)] for f in state.html_reports(root, name)
    ]
    explore = (
        "<p>"
        + link(f"{system_href(name)}/explore", "Explore the recommendations of a user")
        + ": their history, each generator's candidates, the ranker's scores, the final list.</p>"
        if state.is_recommender(champ)
        else ""
    )
    body = (
        f"<p>{line}</p>"
        + explore
        + _versions(root, name, known, runs, mlflow_url)
        + rollout_section(state.rollout(root, name))
        + _monitoring(root, name)
        + _events(root, name, state.ALERT_KINDS, "Alerts", "Latest alerts, newest first")
        + _events(
            root,
            name,
            ("retrain_triggered", "retrain_promoted", "retrain_refused", "retrain_rolled_out"),
            "Retraining",
            "Retraining history",
        )
        + _training(root, name, known)
        + _spec(champ, runs)
        + "<h2>Reports</h2>"
        + table("The system's HTML reports", ["report"], reports)
    )
    return page(name, body, crumbs=[("/", "systems")])


MAX_USERS_LISTED = 50  # the form's suggestions: the users with the longest histories


def _user_form(name: str, explorer: state.Explorer, user: str | None) -> str:
    """A GET form for a user id, suggesting known users (no script)."""
    rec = explorer.recommender
    lengths = rec.indptr[1:] - rec.indptr[:-1]
    busiest = sorted(range(len(rec.users)), key=lambda r: -lengths[r])[:MAX_USERS_LISTED]
    options = "".join(f'<option value="{esc(rec.users[r])}"></option>' for r in busiest)
    return (
        f'<form method="get" action="{system_href(name)}/explore">'
        '<label for="user">User id</label> '
        f'<input id="user" name="user" list="known-users" value="{esc(user or "")}" required> '
        f'<datalist id="known-users">{options}</datalist>'
        '<button type="submit">Explain</button></form>'
    )


def _listed(flag: bool) -> str:
    return '<span class="good">listed</span>' if flag else ""


def _items(caption: str, rows: list[dict[str, Any]], listed: set) -> str:
    """A list of items (``item``, ``score``, ``rank``) and whether each made the final list."""
    return table(
        caption,
        ["rank", "item", "score", "in the final list"],
        [
            [
                str(r["rank"]),
                esc(r["item"]),
                number(r["score"]),
                _listed(r["item"] in listed),
            ]
            for r in rows
        ],
    )


def explore_page(name: str, explorer: state.Explorer, user: str | None) -> str:
    """A recommender's champion explained for one user: their history beside the final
    list, the ranker's score of every candidate, and each generator's proposals."""
    from mlsd.recsys.runtime import FUNNEL

    rec = explorer.recommender
    generators = ", ".join(rec.generators) or "none"
    how = (
        f"the generators ({generators}) propose {rec.candidates} candidates each and the "
        f"ranker orders them"
        if rec.chosen == FUNNEL
        else f"one generator, {rec.chosen}, lists its best items"
    )
    body = (
        f"<p>The champion, v{explorer.version}, recommends {rec.k} items: {esc(how)}; a user "
        f"without history gets the most popular items. Its {len(rec.users):,} users and "
        f"{len(rec.items):,} items are those it was trained on.</p>"
        + _user_form(name, explorer, user)
    )
    if user:
        body += _explained(rec.explain(explorer.user(user)))
    crumbs = [("/", "systems"), (system_href(name), name)]
    return page(f"{name}: a user's recommendations", body, crumbs=crumbs)


def _explained(found: dict[str, Any]) -> str:
    """The tables of :meth:`Recommender.explain`'s answer."""
    user, final = found["user"], found["final"]
    listed = {i["item"] for i in final}
    if found["cold_start"]:
        why = "is unknown" if not found["known"] else "has no history"
        note = (
            f'<p class="bad">User {esc(user)} {why}: a cold start. They get the fallback, '
            f"{esc(found['stage'])}: the most popular items.</p>"
        )
    else:
        note = f"<p>User {esc(user)}: {len(found['history'])} items in their history.</p>"
    history = table(
        f"History of user {user}",
        ["#", "item"],
        [[str(n), esc(item)] for n, item in enumerate(found["history"], 1)],
    )
    answer = table(
        f"Final list of user {user}",
        ["rank", "item", "score", "stage"],
        [
            [str(n), esc(i["item"]), number(i["score"]), esc(i["stage"])]
            for n, i in enumerate(final, 1)
        ],
    )
    parts = [note, f'<div class="side"><div>{history}</div><div>{answer}</div></div>']
    if found["ranker"] is not None:
        parts.append("<h2>The ranker</h2>")
        parts.append(
            table(
                f"The ranker's score of each of the {len(found['ranker'])} candidates, best first",
                ["rank", "item", "ranker's score", "proposed by (rank)", "in the final list"],
                [
                    [
                        str(n),
                        esc(c["item"]),
                        number(c["score"]),
                        esc(", ".join(f"{g} ({r})" for g, r in c["ranks"].items())),
                        _listed(c["listed"]),
                    ]
                    for n, c in enumerate(found["ranker"], 1)
                ],
            )
        )
    parts.append("<h2>The candidates of each generator</h2>")
    tables = [
        _items(f"Proposals of {generator}", proposals, listed)
        for generator, proposals in found["generators"].items()
    ]
    parts.append('<div class="side">' + "".join(f"<div>{t}</div>" for t in tables) + "</div>")
    return "".join(parts)
