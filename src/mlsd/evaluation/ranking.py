"""How good is a ranking: the metrics at several cutoffs, per query group, and the groups the
model ranks worst (step 6 for ``task: ranking``).

Pure functions on numpy arrays and pandas frames: rows carry a graded relevance ``y`` (>= 0,
> 0 relevant), the model's score ``pred`` and the query group they belong to. Every value comes
from the metric registry (:mod:`mlsd.evaluation.metrics`), so ties are averaged and groups with
no relevant row are left out of means exactly as in the leaderboard.

Calibration and decision thresholds do not apply to ranking: a ranking model's score only
orders the items of one group, it is neither a probability nor compared with a cut-off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlsd.evaluation.metrics import compute, get_metric, per_group_values
from mlsd.tasks import RANKING

SECTION = "ranking"  # the report key of everything on this page
KS = (1, 3, 5, 10, 20)  # cutoffs of the metric-at-k table
FAMILIES = ("ndcg", "precision", "recall", "map")  # the metrics that take a cutoff
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
BINS = 10  # histogram bins of a per-group metric over [0, 1]
NOT_APPLICABLE = (
    "calibration and decision thresholds do not apply to ranking: the score only orders the "
    "items of one group, it is not a probability and no cut-off turns it into a label"
)


def metric_at_k(y: Any, pred: Any, groups: Any, ks: Sequence[int] = KS) -> dict[str, Any]:
    """nDCG, precision, recall and MAP at each cutoff in ``ks``, plus MRR and the full-list
    nDCG and MAP: ``{"ks", "rows": [{"k", "ndcg", "precision", "recall", "map"}], "ndcg",
    "map", "mrr"}``. A value undefined on the rows (no relevant row anywhere) is None."""
    ks = [int(k) for k in ks]
    names = [f"{f}@{k}" for k in ks for f in FAMILIES] + ["ndcg", "map", "mrr"]
    values = compute(RANKING.name, y, pred, names=names, groups=groups)
    return {
        "ks": ks,
        "rows": [{"k": k, **{f: values[f"{f}@{k}"] for f in FAMILIES}} for k in ks],
        "ndcg": values["ndcg"],
        "map": values["map"],
        "mrr": values["mrr"],
    }


def group_table(y: Any, pred: Any, groups: Any, metric: str = "ndcg@10") -> pd.DataFrame:
    """One row per group: ``group``, ``value`` (``metric``; NaN without a relevant row),
    ``items`` (list length) and ``relevant`` (items with relevance > 0), in the metric's group
    order (sorted ids)."""
    ids, values = per_group_values(metric, y, pred, groups)
    rel = np.asarray(y, dtype=np.float64)
    g = np.zeros(len(rel), dtype=np.int64) if groups is None else np.asarray(groups)
    position = pd.Index(ids).get_indexer(g)
    return pd.DataFrame(
        {
            "group": ids,
            "value": values,
            "items": np.bincount(position, minlength=len(ids)),
            "relevant": np.bincount(position, weights=rel > 0, minlength=len(ids)).astype(int),
        }
    )


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {str(q): None for q in QUANTILES}
    return {
        str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
    }


def per_group(y: Any, pred: Any, groups: Any, metric: str = "ndcg@10") -> dict[str, Any]:
    """The distribution of ``metric`` over the groups: its mean (the reported value), quantiles,
    histogram over [0, 1], the shares of groups at 0 and at 1, and the list lengths."""
    name = get_metric(metric, RANKING.name).name
    table = group_table(y, pred, groups, name)
    valid = table["value"].notna().to_numpy()
    values = table["value"].to_numpy()[valid]
    counts, edges = np.histogram(values, bins=BINS, range=(0.0, 1.0))
    edges = edges.round(12)
    lengths = table["items"].to_numpy()
    return {
        "metric": name,
        "groups": len(table),
        "scored_groups": int(valid.sum()),
        "groups_without_relevant": int((~valid).sum()),
        "mean": float(values.mean()) if len(values) else None,
        "quantiles": _quantiles(values),
        "share_zero": float(np.mean(values == 0.0)) if len(values) else None,
        "share_perfect": float(np.mean(values >= 1.0 - 1e-12)) if len(values) else None,
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "list_length": {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "max": int(lengths.max()),
            "quantiles": _quantiles(lengths.astype(np.float64)),
            "shorter_than_k": _shorter(lengths, name),
        },
    }


def _shorter(lengths: np.ndarray, metric: str) -> float | None:
    """Share of lists shorter than the metric's cutoff (their @k scores the whole list)."""
    k = get_metric(metric, RANKING.name).k
    return None if k is None else float(np.mean(lengths < k))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return None if pd.isna(value) else str(value)


def _group_id(value: Any) -> Any:
    """A group id for JSON; a whole float (ids read from a column with gaps) as an int."""
    value = _plain(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def most_misranked(
    frame: pd.DataFrame,
    y: Any,
    pred: Any,
    groups: Any,
    metric: str = "ndcg@10",
    n: int = 5,
    items: int = 10,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The ``n`` groups with the lowest ``metric`` among those holding a relevant item (the
    lowest first; ties by the metric's group order), each with its first ``items`` items as the
    model ranks them: ``position`` (1-based, ties in the order the rows came), ``score``,
    ``relevance``, ``ideal_position`` (where the best order puts it: 1 + the items more
    relevant) and the ``columns`` of ``frame`` (default: its first five), plus ``row``, the
    item's row position in ``frame``."""
    name = get_metric(metric, RANKING.name).name
    frame = frame.reset_index(drop=True)
    rel = np.asarray(y, dtype=np.float64)
    score = np.asarray(pred, dtype=np.float64)
    if len(frame) != len(rel) or len(score) != len(rel):
        raise ValueError(
            f"frame, y and pred must have the same rows — given {len(frame)}, {len(rel)}, "
            f"{len(score)}"
        )
    g = np.zeros(len(rel), dtype=np.int64) if groups is None else np.asarray(groups)
    table = group_table(rel, score, g, name)
    scored = table[table["value"].notna()]
    worst = scored.sort_values("value", kind="stable").head(n)
    shown = list(columns) if columns is not None else list(frame.columns[:5])
    position = pd.Index(table["group"]).get_indexer(g)
    out = []
    for at, row in worst.iterrows():
        members = np.flatnonzero(position == at)
        ranked = members[np.argsort(-score[members], kind="stable")]
        ideal = {
            int(i): int((rel[members] > rel[i]).sum()) + 1 for i in ranked[:items]
        }  # competition rank by relevance
        out.append(
            {
                "group": _group_id(row["group"]),
                "value": float(row["value"]),
                "items": int(row["items"]),
                "relevant": int(row["relevant"]),
                "ranked": [
                    {
                        "position": p + 1,
                        "row": int(i),
                        "score": float(score[i]),
                        "relevance": float(rel[i]),
                        "ideal_position": ideal[int(i)],
                        "features": {c: _plain(frame[c].iloc[i]) for c in shown},
                    }
                    for p, i in enumerate(ranked[:items])
                ],
            }
        )
    return out
