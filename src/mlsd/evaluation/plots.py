"""The evaluation report as a page for people: every figure an inline SVG from matplotlib.

:func:`render` reads the report dict (plus the labels and predictions of the judged rows,
for the scatter plots) and returns one self-contained HTML page built with
:mod:`mlsd.reporting`: no JS, no network.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mlsd.evaluation.ranking import SECTION
from mlsd.reporting import COLORS, Page, fmt, subplots, svg
from mlsd.tasks import get_task

SCATTER_POINTS = 3000  # points drawn in a scatter plot (a sample of the rows)


# --------------------------------------------------------------------------- figures


def leaderboard_figure(rows: list[dict], metric: str, splits: list[str]) -> str:
    """Grouped bars: each model's primary metric on each split."""
    fig, ax = subplots(6.2, 0.45 * len(rows) + 1.4)
    y = np.arange(len(rows))
    height = 0.8 / max(len(splits), 1)
    palette = {"train": "#9ecae1", "valid": COLORS["model"], "test": "#08306b"}
    for i, split in enumerate(splits):
        values = [r.get(split) if r.get(split) is not None else np.nan for r in rows]
        ax.barh(y + i * height, values, height, label=split, color=palette.get(split, "#d1242f"))
    ax.set_yticks(y + height * (len(splits) - 1) / 2)
    ax.set_yticklabels([("* " if r["chosen"] else "") + r["name"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} by model and split (* chosen)")
    ax.legend(fontsize=8, loc="best")
    return svg(fig)


def roc_figure(curve: dict) -> str:
    fig, ax = subplots(3.6, 3.4)
    ax.plot(curve["fpr"], curve["tpr"], color=COLORS["model"], label=f"AUC {fmt(curve['auc'])}")
    ax.plot([0, 1], [0, 1], "--", color=COLORS["baseline"], label="random")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC curve")
    ax.legend(fontsize=8, loc="lower right")
    return svg(fig)


def pr_figure(curve: dict) -> str:
    fig, ax = subplots(3.6, 3.4)
    ax.plot(
        curve["recall"], curve["precision"], color=COLORS["model"], label=f"AP {fmt(curve['auc'])}"
    )
    ax.axhline(curve["base_rate"], ls="--", color=COLORS["baseline"], label="base rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve", ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="upper right")
    return svg(fig)


def confusion_figure(matrix: list[list[int]], classes: list | None) -> str:
    m = np.asarray(matrix)
    k = len(m)
    fig, ax = subplots(min(1.0 * k + 2.4, 8), min(0.9 * k + 2.0, 7.5))
    ax.imshow(m, cmap="Blues")
    names = [str(c) for c in (classes or range(k))]
    ax.set_xticks(range(k), names, rotation=30 if k > 3 else 0)
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted", ylabel="actual", title="Confusion matrix")
    top = m.max() or 1
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{m[i, j]:,}",
                ha="center",
                va="center",
                color="white" if m[i, j] > top / 2 else "black",
            )
    return svg(fig)


def reliability_figure(bins: list[dict], ece: float) -> str:
    fig, ax = subplots(3.8, 3.4)
    used = [b for b in bins if b["count"]]
    ax.plot([0, 1], [0, 1], "--", color=COLORS["baseline"], label="perfect")
    ax.plot(
        [b["mean_score"] for b in used],
        [b["fraction_positive"] for b in used],
        "o-",
        color=COLORS["model"],
        label=f"model (ECE {fmt(ece, 3)})",
    )
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed frequency",
        title="Reliability diagram",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    ax.legend(fontsize=8, loc="upper left")
    return svg(fig)


def cost_figure(decisions: dict) -> str:
    curve = decisions["cost_curve"]
    fig, ax = subplots(4.6, 3.4)
    ax.plot(curve["thresholds"], curve["expected_cost"], color=COLORS["model"])
    ax.axvline(
        decisions["threshold"],
        color=COLORS["threshold"],
        ls="--",
        label=f"threshold in use {fmt(decisions['threshold'], 3)}",
    )
    ax.axvline(0.5, color=COLORS["baseline"], ls=":", label="0.5")
    costs = decisions["costs"]
    ax.set(
        xlabel="threshold",
        ylabel="expected cost per row",
        title=f"Cost curve (FP {fmt(costs['false_positive'])}, FN {fmt(costs['false_negative'])})",
    )
    ax.legend(fontsize=8)
    return svg(fig)


def scatter_figure(y: np.ndarray, pred: np.ndarray) -> str:
    """Predicted against actual, and residuals against predicted (regression)."""
    rows = _sample(len(y))
    y, pred = y[rows], pred[rows]
    fig, (a, b) = subplots(8.4, 3.4, ncols=2)
    a.scatter(y, pred, s=4, alpha=0.35, color=COLORS["model"], linewidths=0)
    lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
    a.plot([lo, hi], [lo, hi], "--", color=COLORS["baseline"])
    a.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual")
    b.scatter(pred, y - pred, s=4, alpha=0.35, color=COLORS["model"], linewidths=0)
    b.axhline(0, color=COLORS["baseline"], ls="--")
    b.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals")
    return svg(fig)


def error_range_figure(by_range: list[dict]) -> str:
    fig, ax = subplots(4.6, 3.2)
    labels = [f"{fmt(r['range'][0], 3)}–{fmt(r['range'][1], 3)}" for r in by_range]
    x = np.arange(len(by_range))
    ax.bar(x - 0.2, [r["mae"] for r in by_range], 0.4, color=COLORS["model"], label="MAE")
    ax.bar(x + 0.2, [r["bias"] for r in by_range], 0.4, color=COLORS["threshold"], label="bias")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(x, labels, rotation=20)
    ax.set(xlabel="actual value range", title="Error by target range")
    ax.legend(fontsize=8)
    return svg(fig)


def slices_figure(items: list[dict], overall: float, metric: str, whole: str = "all rows") -> str:
    """Each slice's metric with its 95% bootstrap interval, against the whole."""
    items = [i for i in items if i["metric"] is not None][:15]
    if not items:
        return ""
    fig, ax = subplots(6.6, 0.32 * len(items) + 1.3)
    y = np.arange(len(items))
    values = np.array([i["metric"] for i in items])
    low = np.array([i["ci_low"] for i in items])
    high = np.array([i["ci_high"] for i in items])
    colors = [COLORS["bad"] if i["significant"] else COLORS["model"] for i in items]
    ax.barh(y, values, color=colors, alpha=0.75)
    ax.errorbar(values, y, xerr=[values - low, high - values], fmt="none", ecolor="black", lw=0.8)
    ax.axvline(overall, color=COLORS["baseline"], ls="--", label=f"{whole} {fmt(overall, 3)}")
    ax.set_yticks(y, [_short(i["slice"]) for i in items], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=f"{metric} (95% bootstrap CI); red: worse beyond noise", title="Slices")
    ax.legend(fontsize=8)
    return svg(fig)


def bars_figure(items: list[dict], key: str, title: str, xlabel: str, err: str = "") -> str:
    items = items[:15]
    if not items:
        return ""
    fig, ax = subplots(4.8, 0.3 * len(items) + 1.2)
    y = np.arange(len(items))
    values = [i[key] for i in items]
    xerr = [i[err] for i in items] if err else None
    ax.barh(y, values, xerr=xerr, color=COLORS["model"], alpha=0.85)
    ax.set_yticks(y, [_short(str(i["feature"]), 28) for i in items], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.6)
    ax.set(title=title, xlabel=xlabel)
    return svg(fig)


def at_k_figure(at_k: dict[str, dict], model: str) -> str:
    """nDCG, precision, recall and MAP against the cutoff k: the model (solid), the models it
    is compared with, and a random order (dashed)."""
    families = ("ndcg", "precision", "recall", "map")
    fig, axes = subplots(9.6, 2.6, ncols=len(families))
    others = [n for n in at_k if n not in (model, "random order")]
    palette = ["#bf8700", "#1a7f37", "#8250df", "#cf222e", "#57606a"]
    for ax, family in zip(axes, families, strict=True):
        for i, name in enumerate([model, *others, "random order"]):
            if name not in at_k:
                continue
            rows = at_k[name]["rows"]
            values = [r[family] if r[family] is not None else np.nan for r in rows]
            if name == model:
                style = {"color": COLORS["model"], "lw": 2.0, "marker": "o", "ms": 3}
            elif name == "random order":
                style = {"color": COLORS["baseline"], "ls": "--"}
            else:
                style = {"color": palette[(i - 1) % len(palette)], "marker": ".", "lw": 1.0}
            ax.plot([r["k"] for r in rows], values, label=_short(name, 24), **style)
        ax.set(xlabel="k", title=f"{family}@k", ylim=(0, 1.02))
    axes[0].legend(fontsize=7, loc="best")
    return svg(fig)


def per_group_figure(per_group: dict) -> str:
    """Histogram of the per-group metric over the groups with a relevant item."""
    hist = per_group["histogram"]
    if not sum(hist["counts"]):
        return ""
    edges = np.asarray(hist["edges"])
    fig, ax = subplots(4.8, 3.2)
    ax.bar(
        edges[:-1],
        hist["counts"],
        width=np.diff(edges),
        align="edge",
        color=COLORS["model"],
        alpha=0.8,
        edgecolor="white",
    )
    if per_group.get("mean") is not None:
        ax.axvline(
            per_group["mean"],
            color=COLORS["threshold"],
            ls="--",
            label=f"mean {fmt(per_group['mean'], 3)}",
        )
        ax.legend(fontsize=8, loc="upper left")
    metric = per_group["metric"]
    ax.set(xlabel=f"{metric} of a group", ylabel="groups", title=f"{metric} per group")
    return svg(fig)


def learning_figure(curve: dict) -> str:
    points = [p for p in curve["points"] if p.get("valid") is not None]
    if not points:
        return ""
    fig, ax = subplots(4.4, 3.3)
    rows = [p["rows"] for p in points]
    ax.plot(rows, [p["train"] for p in points], "o-", color="#9ecae1", label="train")
    ax.plot(rows, [p["valid"] for p in points], "o-", color=COLORS["model"], label="valid")
    ax.set(xlabel="training rows", ylabel=curve["metric"], title="Learning curve")
    ax.legend(fontsize=8)
    return svg(fig)


# --------------------------------------------------------------------------- page


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _sample(n: int) -> np.ndarray:
    if n <= SCATTER_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, SCATTER_POINTS, replace=False))


def render(report: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    """The HTML page of an evaluation report."""
    task, metric = report["task"], report["primary_metric"]
    model = report["model"]
    version = f" v{model['version']}" if model.get("version") else ""
    page = Page(
        f"Evaluation: {report['system']} — {model['name']}{version}",
        f"{task}, judged on {report['source']} ({report['rows']:,} rows), {report['created_at']}",
    )
    _summary(page, report)
    _leaderboard(page, report)
    if report.get(SECTION):
        _ranking(page, report)
    else:
        _performance(page, report, arrays)
    _slices(page, report)
    _calibration(page, report)
    _decisions(page, report, arrays)
    _behavioral(page, report)
    _importance(page, report)
    if report.get(SECTION):
        _misranked(page, report)
    else:
        _errors(page, report)
    _learning(page, report)
    page.section("All metrics", f"on {report['split']}; * primary")
    page.table(
        [
            {"metric": k + (" *" if k == metric else ""), "value": v}
            for k, v in report["metrics"].items()
        ]
    )
    page.section("Machine-readable")
    page.text(f"The same report as JSON: {report['files'].get('json', 'evaluation.json')}")
    return page.render()


def _summary(page: Page, report: dict) -> None:
    metric = report["primary_metric"]
    fit = report["fit"]
    better = "higher" if report["direction"] == "max" else "lower"
    page.section("Summary", f"{metric}: {better} is better")
    items: dict[str, Any] = {
        f"{metric} on {report['split']}": report["metrics"].get(metric),
        "rows": report["rows"],
    }
    if fit.get("best_baseline"):
        items[f"lift on valid vs {fit['best_baseline']}"] = fit.get("lift_over_baseline")
    if report["slices"].get("worst"):
        items["worst slice gap"] = report["slices"]["worst"][0]["gap"]
    if report["behavioral"]["declared"]:
        items["behavioural tests passed"] = (
            f"{report['behavioral']['passed']}/{report['behavioral']['declared']}"
        )
    page.kpis(items)
    verdict = fit.get("verdict")
    page.text(fit.get("text", ""), cls="warn" if verdict in ("overfitting", "underfitting") else "")
    page.text("Learning curve: " + report["learning_curve"]["text"], cls="note")


def _leaderboard(page: Page, report: dict) -> None:
    rows = report["leaderboard"]
    metric = report["primary_metric"]
    splits = [s for s in ("train", "valid", "test", report["split"]) if any(r.get(s) for r in rows)]
    splits = list(dict.fromkeys(splits))
    page.section(
        "Leaderboard",
        f"{metric} of every baseline and candidate; train-valid gap in the metric's better "
        "direction (large positive: over-fitting)",
    )
    columns = ["name", "kind", *splits, "train_valid_gap"]
    page.table(rows, columns, classes={i: "pass" for i, r in enumerate(rows) if r["chosen"]})
    if splits:
        page.figures(leaderboard_figure(rows, metric, splits))


def _performance(page: Page, report: dict, arrays: dict) -> None:
    task = get_task(report["task"])
    page.section("Performance", f"on {report['split']}")
    if task.thresholded:
        curves = report["curves"]
        figs = []
        if curves.get("roc"):
            figs += [roc_figure(curves["roc"]), pr_figure(curves["pr"])]
        figs.append(
            confusion_figure(report["decisions"]["confusion_matrix"], report["model"]["classes"])
        )
        page.figures(*figs)
    elif task.classification:
        page.figures(
            confusion_figure(report["decisions"]["confusion_matrix"], report["model"]["classes"])
        )
    else:
        page.figures(scatter_figure(arrays["y"], arrays["pred"]))


def _ranking(page: Page, report: dict) -> None:
    r = report[SECTION]
    at_k, model = r["metric_at_k"], r["model"]
    mine = at_k[model]
    page.section(
        "Ranking quality",
        f"on {report['split']}: per group, averaged over the groups with a relevant item; "
        "a random order is what a model that knows nothing scores",
    )
    page.kpis(
        {
            "nDCG (whole list)": mine["ndcg"],
            "MAP": mine["map"],
            "MRR": mine["mrr"],
            "MRR, random order": at_k.get("random order", {}).get("mrr"),
        }
    )
    page.heading("Metrics at k")
    rows = []
    for name, values in at_k.items():
        for row in values["rows"]:
            rows.append({"model": name, **row})
    page.table(
        rows,
        ["model", "k", "ndcg", "precision", "recall", "map"],
        classes={i: "pass" for i, x in enumerate(rows) if x["model"] == model},
    )
    g = r["per_group"]
    lengths = g["list_length"]
    page.heading(f"{g['metric']} per group")
    page.kpis(
        {
            "groups scored": g["scored_groups"],
            "without a relevant item": g["groups_without_relevant"],
            "median": g["quantiles"].get("0.5"),
            "10th percentile": g["quantiles"].get("0.1"),
            "share at 0": g["share_zero"],
            "share perfect": g["share_perfect"],
            "items per group (mean)": lengths["mean"],
        }
    )
    if lengths.get("shorter_than_k"):
        page.text(
            f"{lengths['shorter_than_k']:.0%} of the groups hold fewer items than the cutoff of "
            f"{g['metric']} (lengths {lengths['min']}–{lengths['max']}).",
            cls="note",
        )
    page.figures(at_k_figure(at_k, model), per_group_figure(g))


def _misranked(page: Page, report: dict) -> None:
    worst = report[SECTION]["most_misranked"]
    metric = report[SECTION]["per_group"]["metric"]
    page.section(
        "Most misranked groups",
        f"the groups with the lowest {metric} among those holding a relevant item, their "
        "items in the model's order; ideal position: where the best order puts the item",
    )
    if not worst:
        page.text("No group holds a relevant item.", cls="note")
        return
    for w in worst:
        page.heading(
            f"group {w['group']}: {metric} {fmt(w['value'], 3)}, {w['items']} items, "
            f"{w['relevant']} relevant"
        )
        page.table(
            [
                {
                    "position": x["position"],
                    "ideal position": x["ideal_position"],
                    "relevance": x["relevance"],
                    "score": x["score"],
                    **x["features"],
                }
                for x in w["ranked"]
            ],
            classes={
                i: "fail"
                for i, x in enumerate(w["ranked"])
                if x["ideal_position"] < x["position"] and x["relevance"] > 0
            },
        )


def _slice_rows(items: list[dict], primary: str) -> list[dict]:
    return [
        {
            "slice": i["slice"],
            "rows": i["support"],
            "metric": i["metric"],
            "95% CI": f"{fmt(i['ci_low'], 3)} – {fmt(i['ci_high'], 3)}",
            "gap": i["gap"],
            primary: i.get("primary"),
        }
        for i in items
    ]


def _slices(page: Page, report: dict) -> None:
    s = report["slices"]
    primary = report["primary_metric"]
    if s.get("unit") == "groups":
        worse = "negative" if s.get("direction") == "max" else "positive"
        page.section(
            "Slices",
            f"{s['metric']} per slice of groups (all {s['groups']:,} groups with a relevant "
            f"item: {fmt(s['overall'])}); gap = slice − all groups, {worse} is worse; sliced "
            f"by the columns with one value per group; searched slices hold at least "
            f"{s['min_support']} groups",
        )
        if not s.get("group_columns"):
            page.text("No column holds one value per group: no slices of groups.", cls="note")
        for skipped in s.get("skipped", []):
            page.text(f"Spec slice {skipped['slice']!r} skipped: {skipped['reason']}.", cls="note")
    else:
        page.section(
            "Slices",
            f"{s['metric']} per slice (all rows: {fmt(s['overall'])}); gap = slice − all rows, "
            f"positive is worse; searched slices hold at least {s['min_support']} rows",
        )
    if s["spec"]:
        page.heading("Slices named in the spec")
        page.table(
            _slice_rows(s["spec"], primary),
            classes={i: "fail" for i, x in enumerate(s["spec"]) if x["significant"]},
        )
    if s.get("worst"):
        page.heading(
            f"Worst slices found ({s.get('columns_searched', 0)} columns, "
            f"{s.get('pairs_searched', 0)} pairs, {s.get('candidates', 0):,} candidates)"
        )
        page.table(
            _slice_rows(s["worst"], primary),
            classes={i: "fail" for i, x in enumerate(s["worst"]) if x["significant"]},
        )
    if s["overall"] is not None:
        whole = "all groups" if s.get("unit") == "groups" else "all rows"
        items = s["spec"] + s.get("worst", [])
        page.figures(slices_figure(items, s["overall"], s["metric"], whole))


def _calibration(page: Page, report: dict) -> None:
    c = report["calibration"]
    page.section("Calibration", "do predicted probabilities match observed frequencies?")
    if c is None and report.get(SECTION):
        page.text(f"Not applicable: {report[SECTION]['not_applicable']}.", cls="note")
        return
    if c is None:
        page.text("Regression: see the residuals under Performance and Decisions.", cls="note")
        return
    method = c.get("method")
    page.kpis(
        {
            "ECE": c["ece"],
            "calibrator": method or "none",
            **({"ECE on valid before": c["ece_valid_before"]} if c.get("ece_valid_before") else {}),
        }
    )
    page.figures(reliability_figure(c["bins"], c["ece"]))
    page.heading("Confidence")
    page.table(
        [
            {"at least": x["level"], "share of rows": x["share"], "accuracy": x["accuracy"]}
            for x in c["confidence"]
        ]
    )


def _decisions(page: Page, report: dict, arrays: dict) -> None:
    d = report["decisions"]
    page.section("Decisions")
    task = get_task(report["task"])
    if d.get("applies") is False:
        page.text(f"Not applicable: {d['text']}.", cls="note")
        return
    if not task.classification:
        r = d["residuals"]
        page.kpis({"mean residual": r["mean"], "residual std": r["std"]})
        page.figures(error_range_figure(d["error_by_target_range"]))
        page.table(
            [
                {
                    "actual from": x["range"][0],
                    "to": x["range"][1],
                    "rows": x["rows"],
                    "MAE": x["mae"],
                    "RMSE": x["rmse"],
                    "bias (pred − actual)": x["bias"],
                }
                for x in d["error_by_target_range"]
            ]
        )
        return
    if not task.thresholded:
        page.text("Multiclass: the predicted class is the most probable one.", cls="note")
        return
    page.kpis(
        {
            "threshold in use": d["threshold"],
            "expected cost / row": d["expected_cost"],
            "cost / row at 0.5": d["expected_cost_at_0.5"],
            "precision": d["precision"],
            "recall": d["recall"],
        }
    )
    page.text(
        f"Rule {d.get('rule') or 'fixed at packaging'}; on this data the cheapest threshold "
        f"would be {fmt(d['best_threshold_here'], 3)} (cost {fmt(d['best_expected_cost_here'])}).",
        cls="note",
    )
    page.figures(cost_figure(d))


def _behavioral(page: Page, report: dict) -> None:
    b = report["behavioral"]
    page.section("Behavioural tests", f"declared in evaluation.tests; run on {b['split'] or '-'}")
    if not b["declared"]:
        page.text("No behavioural tests declared (evaluation.tests in system.yaml).", cls="note")
        return
    rows = [
        {
            "test": t["name"],
            "kind": t["kind"],
            "blocking": t["blocking"],
            "rows": t["n"],
            "failed rows": t.get("n_failed", 0),
            "result": "pass" if t["passed"] else "FAIL",
        }
        for t in b["tests"]
    ]
    page.table(
        rows, classes={i: "pass" if t["passed"] else "fail" for i, t in enumerate(b["tests"])}
    )
    for t in b["tests"]:
        if not t["passed"] and t.get("failures"):
            page.heading(f"Failing examples: {t['name']}")
            page.table(
                [
                    {
                        "changed": json.dumps(x.get("changed"), default=str),
                        "before": x["before"],
                        "after": x["after"],
                    }
                    for x in t["failures"]
                ]
            )
        elif t.get("note"):
            page.text(f"{t['name']}: {t['note']}", cls="fail")


def _importance(page: Page, report: dict) -> None:
    imp = report["importance"]
    page.section(
        "Importance", f"per input column; permutation on {imp.get('split')}, share = of the total"
    )
    figs = []
    if imp.get("permutation"):
        p = imp["permutation"]
        figs.append(
            bars_figure(
                p["drop"],
                "drop",
                f"Permutation: {p['metric']} lost when shuffled",
                f"drop in {p['metric']} ({p['repeats']} shuffles)",
                err="std",
            )
        )
    if imp.get("shap"):
        figs.append(
            bars_figure(imp["shap"]["mean_abs"], "mean_abs", "SHAP: mean |contribution|", "raw")
        )
    if imp.get("gain"):
        figs.append(bars_figure(imp["gain"], "gain", "LightGBM gain", "total split gain"))
    if imp.get("coefficients"):
        figs.append(
            bars_figure(imp["coefficients"], "coefficient", "Linear coefficients", "weight")
        )
    page.figures(*figs)


def _errors(page: Page, report: dict) -> None:
    e = report["errors"]
    classes = get_task(report["task"]).classification
    wrong = f"; {e['n_wrong']:,} rows wrong in all" if classes else ""
    page.section("Most confident errors", f"{e['what']}{wrong}")
    shown = e["shown_columns"]
    page.table(
        [
            {
                "row": r["row"],
                "actual": r["label"],
                "predicted": r["prediction"]["class"]
                if isinstance(r["prediction"], dict)
                else r["prediction"],
                **{c: r["inputs"].get(c) for c in shown},
            }
            for r in e["rows"]
        ]
    )


def _learning(page: Page, report: dict) -> None:
    lc = report["learning_curve"]
    page.section("Learning curve", "would more data help?")
    page.text(lc["text"], cls="pass" if lc["verdict"] == "more_data_helps" else "")
    if lc.get("points"):
        page.figures(learning_figure(lc))
