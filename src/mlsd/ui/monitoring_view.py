"""The dashboard's monitoring section: per model version and window, the realised and
estimated quality, latency and the features' drift, each against its threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlsd.ui import state
from mlsd.ui.pages import esc, line_chart, number, table

MAX_FEATURES_CHARTED = 6  # the features that drifted most; the rest are in the table
RECOMMENDER_QUALITY = ("hit_rate@", "ctr@")  # a recommender's monitoring window's figures


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


def monitoring_section(root: Path, name: str) -> str:
    """Per model version: quality, latency and drift per window, charted and tabled."""
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
