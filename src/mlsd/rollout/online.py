"""What an experiment's arms did on live traffic, read from the prediction log.

Everything a rollout decision needs comes from the log the server already writes: the
predictions (each row names its experiment, arm, unit and assignment probability), the
feedback joined to them (labels and rewards that arrive late count when they arrive), the
refused requests, and the shadow rows. Online metrics are averaged per unit first: a unit
is sticky to one arm, so its rows are not independent, while units are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlsd.predlog.reader import labelled, read_predictions, read_rejects, read_shadow
from mlsd.rollout.stats import Sample
from mlsd.tasks import Task
from mlsd.tasks.online_metrics import OnlineMetric
from mlsd.workspace import Workspace

_EPS = 1e-15


@dataclass
class Traffic:
    """One experiment's rows since ``since``: predictions, labelled predictions, refusals by
    model version, and shadow rows."""

    predictions: pd.DataFrame
    labelled: pd.DataFrame
    rejects: dict[str, int]
    shadow: pd.DataFrame = field(default_factory=pd.DataFrame)

    def arm_rows(self, arm: str, since: float | None = None) -> pd.DataFrame:
        """Prediction rows of ``arm`` (at or after ``since``)."""
        rows = self.predictions[self.predictions["arm"] == arm]
        return rows if since is None else rows[rows["ts"] >= since]


def load_traffic(
    ws: Workspace, experiment: str, since: float, *, silent_after: float | None = None
) -> Traffic:
    """Read the log of ``experiment`` from ``since`` (epoch seconds) on.

    ``silent_after`` (ranked and recommended items, whose feedback is a click): an item
    without feedback counts as labelled 0 once its request has any feedback, or was served
    before ``silent_after`` (now minus ``data.label_delay``): silence is the answer."""
    # labels first: a segment finished in between adds predictions, never a labelled row
    # whose prediction is missing
    with_labels = labelled(ws, start=since).to_pandas()
    with_labels = with_labels[with_labels["experiment"] == experiment].copy()
    predictions = read_predictions(ws, start=since).to_pandas()
    predictions = predictions[predictions["experiment"] == experiment].copy()
    rejects = read_rejects(ws, start=since).to_pandas()
    refused = rejects.drop_duplicates("request_id").groupby("model_version").size()
    shadow = read_shadow(ws, start=since, experiment=experiment).to_pandas()
    if silent_after is not None and not predictions.empty:
        with_labels = _with_silence(predictions, with_labels, silent_after)
    for frame in (predictions, with_labels):
        frame["unit"] = frame["unit"].fillna(frame["request_id"])
    return Traffic(predictions, with_labels, {str(k): int(v) for k, v in refused.items()}, shadow)


def _with_silence(
    predictions: pd.DataFrame, with_labels: pd.DataFrame, silent_after: float
) -> pd.DataFrame:
    """``with_labels`` plus the items no feedback named, labelled 0, of requests that have
    feedback or were served before ``silent_after``."""
    key = ["request_id", "instance"]
    named = pd.MultiIndex.from_frame(with_labels[key]) if len(with_labels) else None
    rows = predictions
    if named is not None:
        rows = rows[~pd.MultiIndex.from_frame(rows[key]).isin(named)]
    answered = set(with_labels["request_id"]) if len(with_labels) else set()
    silent = rows[rows["request_id"].isin(answered) | (rows["ts"] < silent_after)]
    if silent.empty:
        return with_labels
    silent = silent.assign(true_label=0, reward=np.nan)
    if len(with_labels) == 0:
        return silent.reset_index(drop=True)
    columns = [c for c in with_labels.columns if c in silent.columns]
    return pd.concat([with_labels, silent[columns]], ignore_index=True)


def arm_summary(traffic: Traffic, arm: str, version: str, since: float | None = None) -> dict:
    """Requests, units, rows, labelled rows, refusals and latency of one arm."""
    rows = traffic.arm_rows(arm, since)
    requests = rows.drop_duplicates("request_id")
    latency = requests["latency_ms"].to_numpy(dtype=float)
    refused = traffic.rejects.get(version, 0)
    labelled_rows = traffic.labelled[traffic.labelled["arm"] == arm]
    if since is not None:
        labelled_rows = labelled_rows[labelled_rows["ts"] >= since]
    n = len(requests)
    return {
        "requests": n,
        "units": int(rows["unit"].nunique()),
        "rows": len(rows),
        "labelled_rows": len(labelled_rows),
        "refused": refused,
        "error_rate": refused / (n + refused) if n + refused else None,
        "p50_ms": float(np.percentile(latency, 50)) if n else None,
        "p99_ms": float(np.percentile(latency, 99)) if n else None,
    }


def row_values(
    metric: OnlineMetric, task: Task, classes: list | None, rows: pd.DataFrame
) -> np.ndarray:
    """One value of ``metric`` per labelled row (NaN where the label cannot be read)."""
    if rows.empty:  # an empty log has no output columns
        return np.empty(0)
    labels = rows["true_label"].tolist()
    if metric.name == "reward":
        # without a reward, a binary label is its class id (1 = positive), others a number
        fallback = (
            task.truth(labels, classes) if task.thresholded else Task.truth(task, labels, None)
        )
        if "reward" not in rows:
            return fallback
        reward = rows["reward"].to_numpy(dtype=float)
        return np.where(np.isnan(reward), fallback, reward)
    truth = task.truth(labels, classes)
    if metric.name in ("conversion", "ctr"):
        return truth  # the class id: 1 is the positive class
    if metric.name == "accuracy":
        answered = task.truth(rows["label"].tolist(), classes)
        return np.where(np.isnan(truth), np.nan, (answered == truth).astype(float))
    if metric.name in ("log_loss", "brier") and "score" in rows:
        p = rows["score"].to_numpy(dtype=float)
        if metric.name == "brier":
            return (p - truth) ** 2
        return -np.log(np.clip(np.where(truth == 1, p, 1 - p), _EPS, 1))
    if metric.name == "log_loss":  # multiclass: the probability of the true class
        names = [str(c) for c in classes or []]
        out = np.full(len(rows), np.nan)
        for i, (probs, y) in enumerate(zip(rows["probabilities"], truth, strict=True)):
            if probs is not None and not np.isnan(y):
                out[i] = -np.log(max(float(probs.get(names[int(y)]) or 0.0), _EPS))
        return out
    value = rows["value"].to_numpy(dtype=float)
    error = value - truth
    return np.abs(error) if metric.name == "mae" else error**2


def unit_sample(rows: pd.DataFrame, values: np.ndarray) -> Sample:
    """The per-unit means of ``values`` (rows without a value left out) as one sample."""
    ok = ~np.isnan(values)
    if not ok.any():
        return Sample.of([])
    per_unit = pd.Series(values[ok], index=rows["unit"].to_numpy()[ok]).groupby(level=0).mean()
    return Sample.of(per_unit.to_numpy())


def metric_samples(
    traffic: Traffic, metric: OnlineMetric, task: Task, classes: list | None, arms: list[str]
) -> dict[str, Sample]:
    """Each arm's per-unit sample of ``metric`` over its labelled rows."""
    out = {}
    for arm in arms:
        rows = traffic.labelled[traffic.labelled["arm"] == arm]
        out[arm] = unit_sample(rows, row_values(metric, task, classes, rows))
    return out


def units_per_arm(traffic: Traffic, arms: list[str]) -> list[int]:
    """Distinct units assigned to each arm (what the sample-ratio check counts)."""
    counts = traffic.predictions.groupby("arm")["unit"].nunique()
    return [int(counts.get(arm, 0)) for arm in arms]


def shadow_pairs(traffic: Traffic, shadow_arm: str) -> pd.DataFrame:
    """Each shadow row beside the live row of the same request and instance (suffixes
    ``_live`` and ``_shadow``), with the label when one arrived."""
    shadow = traffic.shadow
    if shadow.empty:
        return pd.DataFrame()
    shadow = shadow[shadow["arm"] == shadow_arm]
    live = traffic.predictions
    pairs = live.merge(
        shadow, on=["request_id", "instance"], suffixes=("_live", "_shadow"), how="inner"
    )
    labels = traffic.labelled[["request_id", "instance", "true_label", *_reward(traffic)]]
    return pairs.merge(labels, on=["request_id", "instance"], how="left")


def shadow_lists(
    traffic: Traffic, shadow_arm: str, value: Callable[[pd.DataFrame], np.ndarray]
) -> pd.DataFrame:
    """Per request a live recommender and its shadow both answered (index request_id): the
    unit, each list of items in position order (``items_live``, ``items_shadow``), each
    latency, and ``values``: each live item with feedback (or silence, a 0) mapped to its
    ``value`` (:func:`row_values` of the labelled rows), None while the request has none."""
    shadow = traffic.shadow
    if shadow.empty or "item" not in shadow:
        return pd.DataFrame()
    shadow = shadow[shadow["arm"] == shadow_arm]
    live = traffic.predictions[traffic.predictions["request_id"].isin(shadow["request_id"])]

    def lists(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.sort_values(["request_id", "instance"]).assign(item=rows["item"].astype(str))
        return rows.groupby("request_id").agg(
            items=("item", list), latency_ms=("latency_ms", "first")
        )

    out = lists(live).merge(
        lists(shadow), left_index=True, right_index=True, suffixes=("_live", "_shadow")
    )
    out["unit"] = live.drop_duplicates("request_id").set_index("request_id")["unit"]
    rows = traffic.labelled[traffic.labelled["request_id"].isin(out.index)]
    item = live.set_index(["request_id", "instance"])["item"].astype(str)
    values: dict[str, dict[str, float]] = {}
    for rid, instance, v in zip(rows["request_id"], rows["instance"], value(rows), strict=True):
        values.setdefault(rid, {})[item[(rid, instance)]] = float(v)
    out["values"] = [values.get(rid) for rid in out.index]
    return out


def _reward(traffic: Traffic) -> list[str]:
    return ["reward"] if "reward" in traffic.labelled else []


def side(pairs: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """One side of :func:`shadow_pairs` with its own column names (``score``, ``label``...)."""
    out = pairs.rename(columns={c: c[: -len(suffix)] for c in pairs.columns if c.endswith(suffix)})
    out["unit"] = out["request_id"]  # paired by request: both models saw the same one
    return out
