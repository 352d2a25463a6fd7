"""``evaluation.html`` of a funnel: the stages drawn with their recall, every candidate on
validation and test, beyond-accuracy figures, activity segments, the ranker's features
and each generator's tuning."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlsd.evaluation.plots import bars_figure, leaderboard_figure
from mlsd.reporting import Page, subplots, svg

if TYPE_CHECKING:
    from mlsd.recsys.train import FunnelResult


def funnel_figure(result: FunnelResult) -> str:
    """The funnel as stages: each generator with its candidate recall, their union, the
    ranker and filters with the recall of the final list."""
    recall = result.stages["candidate_recall"]
    generators = [g for g in recall if g != "union"]
    n = result.stages["candidates"]
    funnel = next(e for e in result.leaderboard if e["name"] == "funnel")["test"]
    k = result.primary_metric.split("@")[-1]
    fig, ax = subplots(7.6, max(2.6, 0.62 * len(generators) + 0.8))
    ax.set_axis_off()
    height = len(generators)
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.6, height)

    from matplotlib.patches import FancyBboxPatch

    def box(x: float, y: float, text: str, colour: str, width: float = 2.2) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x, y - 0.3), width, 0.6, boxstyle="round,pad=0.05", fc=colour, ec="#57606a"
            )
        )
        ax.text(x + width / 2, y, text, ha="center", va="center", fontsize=8)

    middle = (height - 1) / 2
    for i, g in enumerate(generators):
        y = height - 1 - i
        box(0.1, y, f"{g}\nrecall@{n} {recall[g]:.3f}", "#ddf4ff")
        ax.annotate("", (3.1, middle), (2.35, y), arrowprops={"arrowstyle": "->", "lw": 0.7})
    box(3.1, middle, f"union\nrecall@{n} {recall['union']:.3f}", "#fff8c5", 2.0)
    ax.annotate("", (5.6, middle), (5.15, middle), arrowprops={"arrowstyle": "->"})
    box(5.6, middle, f"ranker\nrecall@{k} {funnel.get(f'recall@{k}', 0):.3f}", "#dafbe1", 2.0)
    ax.annotate("", (8.05, middle), (7.65, middle), arrowprops={"arrowstyle": "->"})
    box(
        8.05,
        middle,
        f"filters → top {k}\nndcg@{k} {funnel.get(f'ndcg@{k}', 0):.3f}",
        "#ffebe9",
        1.9,
    )
    ax.set_title(f"the funnel on test: each stage sees fewer items ({result.chosen} chosen)")
    return svg(fig)


def write_html(result: FunnelResult, path: str | Path) -> Path:
    """Write the funnel's evaluation report to ``path`` (atomically)."""
    metric = result.primary_metric
    chosen = next(e for e in result.leaderboard if e["name"] == result.chosen)
    page = Page(f"Evaluation of {result.system}", f"a recommender funnel; {result.reason}")
    page.section("Summary")
    page.kpis(
        {
            "chosen": result.chosen,
            f"valid {metric}": chosen["valid"][metric],
            f"test {metric}": chosen["test"][metric],
            "test users": result.stages["users_tested"],
            "registered": result.registered,
        }
    )
    page.section(
        "The funnel, stage by stage",
        "Candidate recall@N: the share of each test user's held-out items a generator "
        "proposed among its N (what the ranker can at best put first); the union's is "
        "what reaches the ranker. The generators and the ranker are fitted on train + "
        "valid, as for every candidate's test figures below.",
    )
    page.figures(funnel_figure(result))
    page.section(
        "Candidates",
        f"Each generator alone (tuned on valid) and the funnel over all of them, judged on "
        f"valid to choose and once on test. {result.reason}.",
    )
    rows = [
        {
            "name": e["name"],
            "valid": e["valid"][metric],
            "test": e["test"][metric],
            "chosen": e["name"] == result.chosen,
        }
        for e in result.leaderboard
    ]
    page.figures(leaderboard_figure(rows, metric, ["valid", "test"]))
    names = list(chosen["test"])
    table = [
        {"candidate": e["name"], **{n: e["test"][n] for n in names}} for e in result.leaderboard
    ]
    served = result.stages.get("served")
    if served:  # the chosen one with the business rules and MMR applied, as it serves
        table.append({"candidate": f"{served['name']}, as served", **served["test"]})
    page.table(table, classes={i: "pass" for i, r in enumerate(rows) if r["chosen"]})
    page.section(
        "By user activity",
        f"{metric} on test for users cut into thirds by their training interactions.",
    )
    page.table([{"candidate": e["name"], **e["segments"]} for e in result.leaderboard])
    importance = result.stages.get("ranker_importance") or {}
    if importance:
        page.section("The ranker's features", "Share of the LightGBM ranker's total gain.")
        items = sorted(
            ({"feature": f, "gain": g} for f, g in importance.items()), key=lambda i: -i["gain"]
        )
        page.figures(bars_figure(items, "gain", "ranker feature importance", "share of gain"))
    page.section("Tuning", f"Every setting tried per generator, by valid {metric}.")
    for name, tried in result.stages.get("tuning", {}).items():
        page.heading(name)
        page.table([{**t["params"], metric: t[metric]} for t in tried] or [{"settings": "none"}])
    facts = result.validation.get("facts", {})
    if facts:
        page.section("Data")
        page.kpis({k: v for k, v in facts.items() if not isinstance(v, dict)})
    return page.write(path)
