"""``retrain.html``: the triggers, the data, the comparison and the verdict of one retrain."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlsd.reporting import Page

if TYPE_CHECKING:
    from mlsd.loop.retrain import RetrainResult


def write_html(result: RetrainResult, path: str | Path) -> Path:
    """Write the retrain report of ``result`` to ``path`` (atomically)."""
    verdict = (
        f"version {result.challenger_version} promoted"
        if result.promoted
        else f"champion version {result.champion_version} kept"
    )
    page = Page(f"Retrain of {result.system}", verdict)
    page.section("Verdict")
    page.kpis(
        {
            "champion before": result.champion_version,
            "challenger": result.challenger_version,
            "promoted": result.promoted,
            "seconds": round(result.seconds, 1),
        }
    )
    for reason in result.reasons:
        page.text(reason, cls="fail" if not result.promoted else "")

    page.section("Triggers", "Each trigger of retraining.triggers, fired or not, and why.")
    page.table(
        [
            {"trigger": t["name"], "fired": t["fired"], "reason": t["reason"]}
            for t in result.triggers
        ]
    )

    if result.data:
        page.section(
            "Data",
            "The source plus the served rows whose labels arrived; the fresh holdout is the "
            "most recent of those labelled after the champion was built, and neither model "
            "trained on it.",
        )
        page.kpis(result.data["counts"])
        page.text(f"window: {result.data['window']}")
        span = result.data.get("holdout") or {}
        if span.get("rows"):
            page.text(f"fresh holdout: {span['rows']:,} rows served {span['from']} to {span['to']}")
    if result.validation:
        page.text(
            f"validation: {'passed' if result.validation['passed'] else 'FAILED'} "
            f"(snapshot {result.validation['snapshot']}, report {result.validation['report']})"
        )

    cmp = result.comparison
    if cmp:
        better = "higher" if cmp["direction"] == "max" else "lower"
        page.section(
            "Champion against challenger",
            f"Both scored on the same {cmp['n_holdout']:,} fresh rows; the interval of the "
            f"difference is a paired bootstrap ({cmp['bootstrap']} resamples). "
            f"{cmp['metric']}: {better} is better.",
        )
        page.kpis(
            {
                f"champion {cmp['metric']}": cmp["champion"],
                f"challenger {cmp['metric']}": cmp["challenger"],
                "difference": cmp["difference"],
                f"{cmp['level']:.0%} CI low": cmp["ci_low"],
                f"{cmp['level']:.0%} CI high": cmp["ci_high"],
                "margin": cmp["margin"],
            }
        )
        names = list(cmp["champion_metrics"])
        page.table(
            [
                {
                    "metric": n,
                    "champion": cmp["champion_metrics"][n],
                    "challenger": cmp["challenger_metrics"][n],
                }
                for n in names
            ]
        )
    if result.training:
        page.section("Challenger training", "As `mlsd train` does, on the assembled rows.")
        page.table([{"key": k, "value": str(v)} for k, v in result.training.items() if k != "test"])
    return page.write(path)
