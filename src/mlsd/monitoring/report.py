"""``monitoring.html``: the monitoring report as one self-contained page.

Per model version: a table of the windows, realised (and, for binary models, estimated)
performance over the windows, latency p99 against the budget, prediction and label drift,
then per feature the reference against the latest window's histogram and the drift distance
over the windows with its threshold line (windows that alerted in red). Built with
:mod:`mlsd.reporting` from the dict :func:`mlsd.monitoring.monitor.monitor` writes as
``monitoring.json``, so the page never shows a figure the JSON does not hold.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlsd.monitoring.windows import window_span
from mlsd.reporting import COLORS, Page, fmt, subplots, svg

MAX_FEATURE_CHARTS = 12  # a wide table would make a page of hundreds of figures (0.1 s each)


def _bin_labels(edges: Sequence[Any], n_bins: int, numeric: bool) -> list[str]:
    if not numeric:
        return [str(e) for e in edges][:n_bins]
    if not edges:
        return ["all"] * n_bins
    e = [fmt(float(x), 3) for x in edges]
    return [f"<{e[0]}", *(f"{a}–{b}" for a, b in itertools.pairwise(e)), f"≥{e[-1]}"]


def histogram_figure(col: Mapping[str, Any], title: str) -> str:
    """Reference against current shares on the reference's bins or categories."""
    ref = [float(x) for x in col.get("reference_hist") or []]
    cur = [float(x) for x in col.get("current_hist") or []]
    if not ref or len(ref) != len(cur):
        return ""
    labels = _bin_labels(col.get("edges_or_categories") or [], len(ref), col["kind"] == "numeric")
    r_total, c_total = sum(ref) or 1.0, sum(cur) or 1.0
    fig, ax = subplots(5.0, 2.9)
    x = range(len(ref))
    ax.bar(
        [i - 0.2 for i in x],
        [v / r_total for v in ref],
        0.4,
        label="reference",
        color=COLORS["reference"],
    )
    ax.bar(
        [i + 0.2 for i in x],
        [v / c_total for v in cur],
        0.4,
        label="latest window",
        color=COLORS["current"],
    )
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("share of rows")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return svg(fig)


def series_figure(
    xs: Sequence[int],
    ys: Sequence[float | None],
    *,
    title: str,
    ylabel: str,
    threshold: float | None = None,
    threshold_label: str = "threshold",
    flagged: Sequence[bool] | None = None,
    extra: Mapping[str, Sequence[float | None]] | None = None,
) -> str:
    """One value per window, with an optional threshold line; flagged windows in red."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    if not points:
        return ""
    fig, ax = subplots(5.0, 2.9)
    ax.plot(
        [p[0] for p in points],
        [p[1] for p in points],
        marker="o",
        ms=3,
        color=COLORS["model"],
        label=ylabel,
    )
    for name, values in (extra or {}).items():
        more = [(x, y) for x, y in zip(xs, values, strict=True) if y is not None]
        if more:
            ax.plot(
                [p[0] for p in more],
                [p[1] for p in more],
                marker="s",
                ms=3,
                linestyle="--",
                color=COLORS["baseline"],
                label=name,
            )
    if flagged is not None:
        bad = [(x, y) for x, y, f in zip(xs, ys, flagged, strict=True) if f and y is not None]
        if bad:
            ax.scatter(
                [p[0] for p in bad],
                [p[1] for p in bad],
                color=COLORS["bad"],
                zorder=3,
                s=22,
                label="alert",
            )
    if threshold is not None:
        ax.axhline(threshold, color=COLORS["threshold"], linestyle=":", label=threshold_label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # windows are numbered
    ax.set_xlabel("window")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return svg(fig)


def _drift_figures(
    page: Page,
    xs: Sequence[Any],
    shown: Mapping[str, Any],
    per_window: Sequence[Mapping[str, Any] | None],
    what: str,
    where: str,
) -> None:
    """Reference vs ``where`` histogram of ``shown``, beside its distance over the windows."""
    page.figures(
        histogram_figure(shown, f"{what}: reference vs {where}"),
        series_figure(
            xs,
            [c.get("distance") if c else None for c in per_window],
            title=f"{what}: {shown['method']} distance per window",
            ylabel="distance",
            threshold=shown.get("threshold"),
            flagged=[bool(c and c.get("drifted")) for c in per_window],
        ),
    )


def _latest_tested(windows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for w in reversed(windows):
        if w.get("tested"):
            return w
    return None


def _window_rows(model: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for w in model["windows"]:
        perf = w.get("performance") or {}
        real = (perf.get("realised") or {}).get("primary") or {}
        est = (perf.get("estimated") or {}).get("metrics") or {}
        pred = w.get("prediction_drift") or {}
        rows.append(
            {
                "window": w["index"],
                "covers": window_span(w),
                "rows": w["n"],
                "labelled": w.get("n_labelled", 0),
                "drifted features": ", ".join((w.get("drift") or {}).get("drifted") or [])
                or ("–" if w.get("tested") else "not tested"),
                "prediction drift": pred.get("drifted") if pred else None,
                f"realised {real.get('metric', '')}".strip(): real.get("value"),
                "estimated accuracy": est.get("accuracy"),
                "p99 ms": (w.get("latency") or {}).get("p99_ms"),
                "alerts": len(w.get("alerts") or []),
            }
        )
    return rows


def _model_section(page: Page, report: Mapping[str, Any], model: Mapping[str, Any]) -> None:
    version = model["model_version"]
    age = model.get("age_days")
    page.section(
        f"Model version {version}",
        f"{model['task']} · package {Path(model['package']).name} · created "
        f"{model.get('created_at')} · age {fmt(age, 3)} days of at most "
        f"{fmt(model['max_age_days'], 3)}{' · STALE' if model.get('stale') else ''} · "
        f"references: predictions from {model['reference'].get('predictions') or 'none'}, "
        f"labels from {model['reference'].get('labels') or 'none'}",
    )
    windows = model["windows"]
    rows = _window_rows(model)
    page.table(rows, classes={i: "fail" for i, r in enumerate(rows) if r["alerts"]})
    xs = [w["index"] for w in windows]

    # performance and latency over the windows
    figures = []
    primaries = [
        ((w.get("performance") or {}).get("realised") or {}).get("primary") or {} for w in windows
    ]
    metric = next((p["metric"] for p in primaries if p.get("metric")), None)
    if metric:
        offline = next((p.get("offline") for p in primaries if p.get("offline") is not None), None)
        figures.append(
            series_figure(
                xs,
                [p.get("value") for p in primaries],
                title=f"realised {metric} on labelled rows",
                ylabel=metric,
                threshold=offline,
                threshold_label="offline test score",
                flagged=[p.get("passed") is False for p in primaries],
            )
        )
    estimated = [
        (((w.get("performance") or {}).get("estimated") or {}).get("metrics") or {}).get("accuracy")
        for w in windows
    ]
    if any(v is not None for v in estimated):
        realised_acc = [
            (((w.get("performance") or {}).get("realised") or {}).get("metrics") or {}).get(
                "accuracy"
            )
            for w in windows
        ]
        figures.append(
            series_figure(
                xs,
                estimated,
                title="accuracy: estimated from scores (CBPE) and realised",
                ylabel="estimated accuracy",
                extra={"realised accuracy": realised_acc},
            )
        )
    p99 = [(w.get("latency") or {}).get("p99_ms") for w in windows]
    figures.append(
        series_figure(
            xs,
            p99,
            title="serving latency p99 per request",
            ylabel="p99 ms",
            threshold=report.get("latency_budget_ms"),
            threshold_label="latency budget",
        )
    )
    page.heading("Performance and latency over the windows")
    page.figures(*figures)

    latest = _latest_tested(windows)
    # prediction and label drift
    for key, what in (("prediction_drift", "predictions"), ("label_drift", "labels")):
        per_window = [
            (w.get(key) if key == "prediction_drift" else (w.get("performance") or {}).get(key))
            for w in windows
        ]
        last = next((c for c in reversed(per_window) if c), None)
        if not last:
            continue
        page.heading(f"Drift of the {what}")
        _drift_figures(page, xs, last, per_window, what, "latest tested window")

    # features
    if latest is not None:
        cols = (latest.get("drift") or {}).get("columns") or []
        page.heading("Feature drift (reference vs the latest tested window; distance per window)")
        page.table(
            [
                {
                    "feature": c["column"],
                    "method": c["method"],
                    "statistic": c.get("statistic"),
                    "p adjusted": c.get("p_adjusted"),
                    "distance": c.get("distance"),
                    "threshold": c.get("threshold"),
                    "drifted": c.get("drifted"),
                }
                for c in cols
            ],
            classes={i: "fail" for i, c in enumerate(cols) if c.get("drifted")},
        )
        ranked = sorted(cols, key=lambda c: (not c.get("drifted"), -(c.get("distance") or 0)))
        if len(ranked) > MAX_FEATURE_CHARTS:
            page.text(
                f"Charts for {MAX_FEATURE_CHARTS} of {len(ranked)} features: the drifted ones, "
                "then the largest distances; the table above lists every feature.",
                cls="note",
            )
        for c in ranked[:MAX_FEATURE_CHARTS]:
            per_window = []
            for w in windows:
                found = [
                    x
                    for x in (w.get("drift") or {}).get("columns") or []
                    if x["column"] == c["column"]
                ]
                per_window.append(found[0] if found else None)
            _drift_figures(page, xs, c, per_window, c["column"], f"window {latest['index']}")

    # data quality of the latest window
    last = windows[-1]
    q = last.get("quality") or {}
    page.heading(f"Data quality in the latest window (#{last['index']})")
    page.table(
        [
            {
                "field": name,
                "missing rate": col.get("missing_rate"),
                "training missing rate": col.get("reference_missing_rate"),
                "out of range": col.get("out_of_range"),
                "unseen categories": col.get("unseen"),
                "examples": ", ".join(col.get("unseen_examples") or []),
            }
            for name, col in (q.get("columns") or {}).items()
        ]
    )
    rejected = q.get("rejected") or {}
    outputs = q.get("outputs") or {}
    page.text(
        f"Refused in validation: {rejected.get('instances', 0):,} instances in "
        f"{rejected.get('requests', 0):,} requests ({fmt(rejected.get('rate'), 3)} of those "
        f"sent); by field: "
        + (", ".join(f"{k} {v}" for k, v in (rejected.get("by_field") or {}).items()) or "none")
        + f". Non-finite model outputs: {outputs.get('non_finite', 0):,}."
    )


def write_html(report: Mapping[str, Any], path: str | Path) -> Path:
    """Write the monitoring report held in ``report`` (the monitoring.json dict) to ``path``."""
    latest = report["latest"]["alerts"]
    page = Page(
        f"Monitoring: {report['system']}",
        f"{report['n_predictions']:,} predictions, {report['n_labelled']:,} with labels, "
        f"windows of {report['window']['text']} · generated {report['generated_at']}",
    )
    page.kpis(
        {
            "predictions": report["n_predictions"],
            "labelled": report["n_labelled"],
            "model versions": len(report["models"]),
            "alerts (latest window)": len(latest),
            "alerts (all windows)": report["alerts"]["total"],
        }
    )
    page.section(
        "Alerts in the latest window",
        "Each alert is also an event in the workspace's event log, with its evidence.",
    )
    page.table(
        [
            {
                "kind": a["kind"],
                "check": a["check"],
                "subject": a.get("subject") or "",
                "version": a["model_version"],
                "message": a["message"],
            }
            for a in latest
        ],
        classes={i: "fail" for i in range(len(latest))},
    )
    for model in report["models"]:
        _model_section(page, report, model)
    return page.write(path)
