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


def _versions(root: Path, name: str) -> str:
    rows = [
        [
            f"v{v['version']}",
            esc(", ".join(v["aliases"])) or '<span class="muted">–</span>',
            esc(v["family"]),
            esc((v["created_at"] or "")[:19]),
            f"{esc(v['primary'])} {number(v['test'])}" if v["primary"] else "–",
        ]
        for v in state.versions(root, name)
    ]
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
        + table("Registered versions", ["version", "aliases", "family", "created", "test"], rows)
        + table(
            "Champion history and the reason for each change",
            ["when", "what", "version", "why"],
            history,
        )
    )


def _training(root: Path, name: str) -> str:
    board = state.report(root, name, "leaderboard") or []
    validation = state.report(root, name, "validation") or {}
    # the metric the versions were chosen by (their packages record it), else the first
    primary = next((v["primary"] for v in state.versions(root, name) if v["primary"]), None)
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


def _rollout(root: Path, name: str) -> str:
    experiment = state.rollout(root, name)
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
    arms = (last.get("evidence") or {}).get("arms") or {}
    arm_rows = [
        [
            esc(arm),
            f"{a.get('requests', 0):,}",
            f"{a.get('labelled_rows', 0):,}",
            f"{100 * (a.get('error_rate') or 0):.2f}%",
            number(a.get("p99_ms"), 3),
        ]
        for arm, a in arms.items()
    ]
    return (
        "<h2>Rollout</h2>"
        f"<p>Experiment {esc(experiment.get('id'))}: {_rollout_line(experiment)}; step "
        f"{esc(experiment.get('step'))}. Last decision: {esc(last.get('action', '–'))} "
        f"({esc(reasons)}). Waiting for: {esc(waits)}.</p>"
        + table(
            "Arms at the last decision",
            ["arm", "requests", "labelled", "errors", "p99 ms"],
            arm_rows,
        )
        + line_chart(
            "Traffic share of each arm at each decision",
            [str(i + 1) for i in range(len(history))],
            {
                arm: [None if v is None else float(v) for v in points]
                for arm, points in shares.items()
            },
            y_label="share",
        )
    )


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
        distance: dict[str, list[float | None]] = {}
        threshold = None
        for i, w in enumerate(windows):
            for col in (w.get("drift") or {}).get("columns", []):
                distance.setdefault(col["column"], [None] * len(windows))[i] = col.get("distance")
                threshold = threshold or col.get("threshold")
        top = sorted(distance, key=lambda c: -max(v or 0 for v in distance[c]))
        top = top[:MAX_FEATURES_CHARTED]
        parts.append(f"<h3>Model version {esc(model.get('model_version'))}</h3>")
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


def _events(root: Path, name: str, kinds: tuple[str, ...], title: str, caption: str) -> str:
    rows = [
        [esc(e["ts"][:19]), esc(e["kind"]), esc(e["message"])]
        for e in state.events(root, name, kinds, limit=30)
    ]
    return f"<h2>{esc(title)}</h2>" + table(caption, ["when", "what", "message"], rows)


def system_page(root: Path, name: str) -> str:
    s = state.status(root, name)
    champ = s["champion"]
    line = (
        f"Champion v{champ['version']} ({esc(champ['family'])}), {_age(s['age_days'])} old; "
        if champ
        else "No champion yet; "
    ) + f"rollout: {_rollout_line(s['rollout'])}."
    reports = [
        [link(f"{system_href(name)}/reports/{quote(f)}", f)] for f in state.html_reports(root, name)
    ]
    body = (
        f"<p>{line}</p>"
        + _versions(root, name)
        + _rollout(root, name)
        + _monitoring(root, name)
        + _events(root, name, state.ALERT_KINDS, "Alerts", "Latest alerts, newest first")
        + _events(
            root,
            name,
            ("retrain_triggered", "retrain_promoted", "retrain_refused", "retrain_rolled_out"),
            "Retraining",
            "Retraining history",
        )
        + _training(root, name)
        + "<h2>Reports</h2>"
        + table("The system's HTML reports", ["report"], reports)
    )
    return page(name, body, crumbs=[("/", "systems")])
