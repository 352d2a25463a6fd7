"""The dashboard's two kinds of page: the systems of a workspace, and one system whole
(its models and why each was chosen, its last training, the live rollout, its monitoring
over time, alerts and retraining)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from mlsd.ui import state
from mlsd.ui.monitoring_view import monitoring_section
from mlsd.ui.pages import esc, link, number, page, system_href, table
from mlsd.ui.rollout_view import rollout_line, rollout_section


def _age(days: float | None) -> str:
    if days is None:
        return "–"
    return f"{days * 24:.1f} hours" if days < 1 else f"{days:.1f} days"


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
                rollout_line(s["rollout"]),
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
    ) + f"rollout: {rollout_line(s['rollout'])}."
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
        + monitoring_section(root, name)
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
