"""Ranking: order the rows of each query by relevance."""

from __future__ import annotations

from mlsd.tasks.base import NUMBER, OutputField, Task


class Ranking(Task):
    """A relevance label per row within a query group; the model answers a score to sort by."""

    name = "ranking"
    description = "order the rows of each query by relevance"
    grouped = True
    prediction = "relevance"
    metrics = (
        "ndcg@5",
        "ndcg@10",
        "ndcg",
        "precision@5",
        "precision@10",
        "recall@10",
        "recall@20",
        "map@10",
        "map",
        "mrr",
        "mrr@10",
        "hit_rate@10",
    )
    cutoff_metrics = ("ndcg", "precision", "recall", "map", "mrr", "hit_rate")
    default_metric = "ndcg@10"
    leakage_metric = "ndcg lift"  # over a random order, per group (mlsd.data.leakage)
    outputs = (OutputField("score", NUMBER),)
