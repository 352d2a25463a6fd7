"""A generated query-document table whose true ranking is known: the ranking tests' data.

``make_ranking_table`` draws queries, each with the same number of documents; a hidden true
score (a non-linear mix of the numeric features, the category and a query-level intent)
sets graded relevance 0-4 by its rank within the query, so a GBDT learns it well while a
random order does not. ``views`` (popularity) is a weak noisy signal: correlated with the
true score, far from determining it. ``day`` is the query's day, for time splits (every
row of a query shares it). ``true_score`` is returned apart so it never leaks as a feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KINDS = ("news", "blog", "video", "forum")


def make_ranking_table(
    n_groups: int = 300, items_per_group: int = 20, seed: int = 0, *, with_score: bool = False
) -> pd.DataFrame:
    """Columns: query, day, x1, x2, x3, kind, views, grade (0-4); ``true_score`` too when
    ``with_score``. Rows are grouped by query, queries ordered by id."""
    rng = np.random.default_rng(seed)
    n = n_groups * items_per_group
    query = np.repeat(np.arange(n_groups), items_per_group)
    intent = rng.normal(size=n_groups)[query]  # query-level: which documents it wants
    x1, x2, x3 = rng.normal(size=(3, n))
    kind = rng.choice(len(KINDS), n)
    boost = np.array([0.6, -0.3, 0.2, -0.5])[kind]
    true = 1.2 * x1 + 0.8 * np.tanh(2 * x2) * np.sign(intent) + 0.5 * (x3 > 0.5) + boost
    views = np.round(np.exp(3 + 0.35 * true + rng.normal(scale=1.0, size=n))).astype(np.int64)
    noisy = true + rng.normal(scale=0.3, size=n)
    # grade by rank within the query: top 5% → 4, next 10% → 3, 15% → 2, 20% → 1, rest 0
    frame = pd.DataFrame({"query": query, "s": noisy})
    pct = frame.groupby("query")["s"].rank(ascending=False, pct=True).to_numpy()
    grade = np.select([pct <= 0.05, pct <= 0.15, pct <= 0.30, pct <= 0.50], [4, 3, 2, 1], 0)
    day = rng.integers(0, 60, n_groups)[query]
    out = pd.DataFrame(
        {
            "query": [f"q{q:04d}" for q in query],
            "day": day,
            "x1": x1.round(4),
            "x2": x2.round(4),
            "x3": x3.round(4),
            "kind": np.array(KINDS)[kind],
            "views": views,
            "grade": grade.astype(np.int64),
        }
    )
    if with_score:
        out["true_score"] = true
    return out
