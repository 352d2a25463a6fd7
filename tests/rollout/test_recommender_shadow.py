"""A recommender's shadow is judged list by list: agreement is the overlap of its list with
the live one, and its value on a request is the feedback on the live items it also listed
(its other items, never shown, count 0)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.rollout.decide import Context, _recommender_shadow
from mlsd.rollout.online import Traffic
from mlsd.tasks import get_task
from mlsd.tasks.online_metrics import online_metric


def traffic(requests=400, k=10, shared=5, click=0.2, seed=0) -> tuple[Traffic, np.ndarray]:
    """Each request's live list is items L0..L9 of its own, the shadow's shares the first
    ``shared`` of them; users click each live item with probability ``click``. Returns the
    traffic and each request's clicks on the shared and on the other live items."""
    rng = np.random.default_rng(seed)
    live, shadow, labels, clicks = [], [], [], []
    for r in range(requests):
        rid, unit = f"r{r}", f"u{r % 150}"
        items = [f"{rid}-L{i}" for i in range(k)]
        own = items[:shared] + [f"{rid}-S{i}" for i in range(k - shared)]
        rng.shuffle(own)  # a shadow orders its list its own way
        clicked = rng.random(k) < click
        clicks.append((clicked[:shared].sum(), clicked[shared:].sum()))
        for i, item in enumerate(items):
            row = {"request_id": rid, "instance": i, "item": item, "unit": unit}
            live.append({**row, "latency_ms": 2.0, "ts": 0.0})
            labels.append({**row, "true_label": int(clicked[i])})
        for i, item in enumerate(own):
            shadow.append({"request_id": rid, "instance": i, "item": item, "arm": "challenger",
                           "latency_ms": 3.0})  # fmt: skip
    frame = pd.DataFrame
    return Traffic(frame(live), frame(labels), {}, frame(shadow)), np.array(clicks)


def context(t: Traffic) -> Context:
    task = get_task("ranking")
    return Context(task, None, t, [online_metric("ctr", task)], 0.05, 50.0, funnel=True)


def test_agreement_is_the_overlap_and_the_shadow_gets_only_the_clicks_it_also_listed():
    t, clicks = traffic()
    requests, evidence, (diff, live_mean) = _recommender_shadow("challenger", context(t))
    assert requests == 400 and evidence["agreement"] == pytest.approx(0.5)
    assert evidence["latency_ms"]["shadow"]["p50"] == 3.0
    assert live_mean == pytest.approx(clicks.sum(axis=1).mean() / 10)
    # shadow minus live per request: minus the clicks on live items it did not list, / 10;
    # averaged per unit (150 users), so compare the mean over units
    per_request = -clicks[:, 1] / 10
    per_unit = pd.Series(per_request).groupby(np.arange(400) % 150).mean()
    assert diff.n == 150 and diff.mean == pytest.approx(per_unit.mean())


def test_a_shadow_listing_the_same_items_in_any_order_ties_the_champion():
    t, _ = traffic(shared=10)
    _, evidence, (diff, _) = _recommender_shadow("challenger", context(t))
    assert evidence["agreement"] == 1.0 and diff.mean == 0.0


def test_no_shadow_rows_means_nothing_to_compare():
    t, _ = traffic(requests=3)
    t.shadow = pd.DataFrame()
    assert _recommender_shadow("challenger", context(t)) == (0, {"pairs": 0}, None)
