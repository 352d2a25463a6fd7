"""The leaderboard of ``mlsd train``: one row per baseline and candidate with its scores on
each split and its costs, ranked by a metric whatever its direction, and shown as a table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd.evaluation.metrics import Metric

SPLITS = ("train", "valid", "test")


@dataclass
class Entry:
    """One row of the leaderboard: a baseline or a candidate with its scores and costs."""

    name: str
    kind: str  # baseline | candidate
    family: str
    details: dict[str, Any]
    scores: dict[str, dict[str, float | None] | None]  # split -> metric -> value
    fit_s: float = 0.0
    predict_us_per_row: float = 0.0
    size_bytes: int | None = None
    chosen: bool = False

    def score(self, split: str, metric: str) -> float | None:
        """The row's ``metric`` on ``split`` (None when that split was not scored)."""
        return (self.scores.get(split) or {}).get(metric)

    def rank(self, metric: Metric, split: str) -> float:
        """Sort key on ``split``: higher is better whatever the metric's direction, and a
        score that could not be computed ranks last."""
        value = self.score(split, metric.name)
        if value is None:
            return -np.inf
        return value if metric.direction == "max" else -value

    def to_dict(self) -> dict:
        """JSON form, as in the leaderboard."""
        return {
            "name": self.name,
            "kind": self.kind,
            "family": self.family,
            "details": self.details,
            "fit_s": round(self.fit_s, 3),
            "predict_us_per_row": round(self.predict_us_per_row, 3),
            "size_bytes": self.size_bytes,
            "chosen": self.chosen,
            **self.scores,
        }


def table_lines(entries: list[Entry], primary: str) -> list[str]:
    """The rows as text: ``primary`` on each split, fit time, latency and size; the chosen
    row is starred."""
    lines = [
        f"  {'model':<22}{'train':>10}{'valid':>10}{'test':>10}{'fit s':>9}"
        f"{'µs/row':>9}{'size':>10}"
    ]
    for e in entries:
        score = {s: e.score(s, primary) for s in SPLITS}
        size = f"{e.size_bytes / 1024:.0f} KiB" if e.size_bytes else "-"
        lines.append(
            f"{'*' if e.chosen else ' '} {e.name:<22}{_fmt(score['train']):>10}"
            f"{_fmt(score['valid']):>10}{_fmt(score['test']):>10}{e.fit_s:>9.2f}"
            f"{e.predict_us_per_row:>9.1f}{size:>10}"
        )
    lines.append("  (* chosen on valid; test is scored once, for it and the baselines)")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
