"""``mlsd monitor`` for a recommender: what the served lists did, per model version and
window of the prediction log (one logged row per recommended item).

Per window: requests, users, items recommended and the share of cold starts; online
**CTR@k** (recommended items with positive feedback / items recommended) and **hit rate**
(requests with at least one positive / requests), counted on every request of the window,
so feedback that has not arrived yet counts as none; **coverage** (distinct items
recommended / catalogue) and **popularity** (the mean share of users who have each
recommended item, at packaging time), each beside the figure the package measured offline
on its test split: a served popularity far above the offline one is popularity drift (the
lists narrowing to the head of the catalogue). Latency per request against
``problem.latency_budget_ms`` alerts as for any model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import MlsdError
from mlsd.events import jsonable
from mlsd.models import aliases
from mlsd.monitoring import alerts as alerting
from mlsd.monitoring.alerts import Alert
from mlsd.monitoring.result import MonitorResult
from mlsd.monitoring.windows import cut_windows, iso, window_text
from mlsd.predlog.reader import labelled, read_predictions
from mlsd.recsys import package as recommenders
from mlsd.spec import SystemSpec
from mlsd.workspace import Workspace, write_json


def positive(label: Any) -> bool:
    """Feedback that counts as a success: true, or a number above 0."""
    if isinstance(label, bool | np.bool_):
        return bool(label)
    try:
        return float(label) > 0
    except (TypeError, ValueError):
        return str(label).strip().lower() in ("true", "yes", "click", "clicked")


def _package(ws: Workspace, system: str, version: str) -> recommenders.RecommenderPackage | None:
    try:
        _, folder = aliases.resolve(ws.root, system, version)
        return recommenders.load(folder, verify=False)
    except MlsdError:
        return None


def _window(part: pd.DataFrame, package, budget: float, min_rows: int) -> dict[str, Any]:
    rec = package.recommender
    share = rec.fallback.counts / max(len(rec.users), 1)
    columns = {item: c for c, item in enumerate(rec.items)}
    known = part["item"].map(columns)
    requests = part.groupby("request_id", sort=False)
    positive = part["positive"].to_numpy(bool)
    latency = requests["latency_ms"].first().to_numpy(float)
    k = int(requests.size().max()) if len(part) else 0
    out = {
        "requests": int(requests.ngroups),
        "users": int(part["group"].nunique()),
        "items": len(part),
        "cold_start": float(part["cold_start"].fillna(False).astype(bool).mean()),
        f"ctr@{k}": float(positive.mean()) if len(part) else None,
        f"hit_rate@{k}": float(requests["positive"].any().mean()) if len(part) else None,
        "with_feedback": int(requests["labelled"].any().sum()),
        f"coverage@{k}": float(part["item"].nunique() / len(rec.items)),
        f"popularity@{k}": float(np.nanmean(share[known.dropna().astype(int)]))
        if known.notna().any()
        else None,
        "latency": {
            "p50_ms": float(np.percentile(latency, 50)),
            "p99_ms": float(np.percentile(latency, 99)),
            "budget_ms": budget,
        },
        "k": k,
        "tested": len(part) >= min_rows,
    }
    return out


def monitor_recommendations(
    spec: SystemSpec,
    ws: Workspace,
    *,
    window: Any,
    now: float,
    model: str | None = None,
    publish: bool = True,
    write: bool = True,
) -> MonitorResult:
    """Monitor a recommender's served lists (see the module docstring); ``model`` (an
    alias, a version or a package folder) keeps one version's."""
    mspec = spec.monitoring.model_copy(update={"window": window})
    frame = read_predictions(ws).to_pandas()
    if model is not None and len(frame):
        version, folder = aliases.resolve(ws.root, spec.name, model)
        label = str(version) if version is not None else folder.name
        frame = frame[frame["model_version"] == label]
    if frame.empty or "item" not in frame.columns:
        raise MlsdError(
            f"no recommendations of {spec.name!r} are logged in {ws.log}",
            hint="serve the recommender (`mlsd serve`) and send /v1/recommend traffic first",
            headline="nothing to monitor",
        )
    feedback = labelled(ws).to_pandas()
    feedback = feedback.assign(positive=feedback["true_label"].map(positive))
    key = ["request_id", "instance"]
    frame = frame.merge(
        feedback[[*key, "positive"]].drop_duplicates(key, keep="last"), on=key, how="left"
    )
    frame["labelled"] = frame["positive"].notna()
    frame["positive"] = frame["positive"].fillna(False).astype(bool)
    budget = spec.problem.latency_budget_ms
    found: list[Alert] = []
    models = []
    for version, rows in frame.groupby("model_version", sort=False):
        package = _package(ws, spec.name, str(version))
        if package is None:
            continue
        rows = rows.sort_values(["ts", "request_id", "instance"], kind="stable")
        cuts = cut_windows(
            rows["ts"].to_numpy(float), seconds=mspec.window_seconds, rows=mspec.window_rows
        )
        windows = []
        for w in cuts:
            figures = _window(rows.iloc[w.lo : w.hi], package, budget, mspec.min_rows)
            here = w.to_dict()
            lat = figures["latency"]
            alerts = []
            if figures["tested"] and lat["p99_ms"] > budget:
                alerts.append(
                    Alert(
                        alerting.LATENCY_ALERT,
                        "latency_p99",
                        None,
                        f"serving latency p99 {lat['p99_ms']:.1f} ms is over the budget of "
                        f"{budget:g} ms ({figures['requests']:,} requests)",
                        str(version),
                        {k: here[k] for k in ("index", "start", "end", "n")},
                        lat,
                    )
                )
            found += alerts
            windows.append({**here, **figures, "alerts": [a.to_dict() for a in alerts]})
        offline = package.metrics.get("test", {})
        models.append(
            {
                "model_version": str(version),
                "chosen": package.recommender.chosen,
                "n": len(rows),
                "offline": {
                    k: v
                    for k, v in offline.items()
                    if k.split("@")[0] in ("coverage", "popularity", "hit_rate", "ndcg")
                },
                "windows": windows,
            }
        )
    if not models:
        raise MlsdError(
            f"the logged model versions of {spec.name!r} have no recommender package in {ws.root}",
            hint="monitor from the workspace the recommender was registered in",
            headline="nothing to monitor",
        )
    newest = max(m["windows"][-1]["end_ts"] for m in models)
    latest = [a for a in found if a.window["end"] == iso(newest)]
    report = {
        "system": spec.name,
        "kind": "recommender",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "now": iso(now),
        "window": {"text": window_text(mspec), "rows": mspec.window_rows},
        "n_predictions": int(sum(m["n"] for m in models)),
        "n_labelled": int(frame["labelled"].sum()),
        "models": models,
        "latest": {"alerts": [a.to_dict() for a in latest]},
        "alerts": {"total": len(found)},
    }
    result = RecommenderMonitor(report, found, latest)
    if publish:
        from mlsd.events import FILE_NAME, EventLog

        result.published = alerting.publish(
            found,
            events=EventLog(ws.root / FILE_NAME),
            system=spec.name,
            webhook=mspec.webhook,
            timeout=mspec.webhook_timeout_s,
        )
        report["alerts"].update(result.published)
    if write:
        path = ws.reports / "monitoring.json"
        write_json(path, jsonable(report))
        result.paths = {"report": str(path)}
    return result


class RecommenderMonitor(MonitorResult):
    """What ``mlsd monitor`` found for a recommender, and its summary."""

    def summary_lines(self) -> list[str]:
        r = self.report
        lines = [
            f"monitored {r['system']}: {r['n_predictions']:,} recommended items, "
            f"{r['n_labelled']:,} with feedback, windows of {r['window']['text']}"
        ]
        for m in r["models"]:
            offline = ", ".join(f"{k} {v:.3f}" for k, v in m["offline"].items())
            lines.append(f"version {m['model_version']} ({m['chosen']}), offline: {offline}")
            for w in m["windows"]:
                k = w["k"]
                figures = [
                    f"{w['requests']:,} requests",
                    f"ctr@{k} {w[f'ctr@{k}']:.3f}",
                    f"hit rate {w[f'hit_rate@{k}']:.3f}",
                    f"coverage {w[f'coverage@{k}']:.3f}",
                    f"popularity {w[f'popularity@{k}']:.3f}",
                    f"cold starts {w['cold_start']:.1%}",
                    f"p99 {w['latency']['p99_ms']:.1f} ms",
                ]
                lines.append(f"  {w['start']} → {w['end']}: " + ", ".join(figures))
        if self.latest_alerts:
            lines.append(f"ALERTS in the latest window ({len(self.latest_alerts)}):")
            lines += [f"  [{a.kind}] {a.message}" for a in self.latest_alerts]
        else:
            lines.append("no alert in the latest window")
        lines += [f"{kind}: {path}" for kind, path in self.paths.items()]
        return lines
