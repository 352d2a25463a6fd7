"""Validation of an interactions table (user, item, optional time) and its item table: the
findings ``mlsd validate`` reports for other tables, in the same :class:`Anomaly` form."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from mlsd.data.validate import ERROR, INFO, WARNING, Anomaly


def _spread(counts: pd.Series) -> dict[str, float]:
    return {
        "min": int(counts.min()),
        "median": float(counts.median()),
        "p90": float(counts.quantile(0.9)),
        "max": int(counts.max()),
    }


def validate_interactions(
    frame: pd.DataFrame,
    user: str,
    item: str,
    *,
    time_column: str | None = None,
    items: pd.DataFrame | None = None,
    item_key: str | None = None,
    min_per_user: int = 5,
    min_per_item: int = 5,
    now: float | None = None,
) -> tuple[dict[str, Any], list[Anomaly]]:
    """The facts of the table (users, items, density, interactions per user and per item,
    the time range) and what is wrong with it: rows without a user or item (error),
    repeated (user, item) pairs, users and items with fewer than ``min_per_user`` /
    ``min_per_item`` interactions, items absent from the ``items`` table (keyed by
    ``item_key``, default ``item``), unreadable or future times."""
    found: list[Anomaly] = []
    for column in (user, item):
        missing = int(frame[column].isna().sum())
        if missing:
            found.append(
                Anomaly(
                    "missing_id",
                    ERROR,
                    column,
                    f"{missing:,} interactions have no {column}",
                    "drop them or fill the id: an interaction must name a user and an item",
                    {"rows": missing},
                )
            )
    known = frame.dropna(subset=[user, item])
    per_user = known.groupby(user, sort=False).size()
    per_item = known.groupby(item, sort=False).size()
    facts: dict[str, Any] = {
        "interactions": len(frame),
        "users": len(per_user),
        "items": len(per_item),
        "density": len(known) / max(len(per_user) * len(per_item), 1),
        "per_user": _spread(per_user) if len(per_user) else None,
        "per_item": _spread(per_item) if len(per_item) else None,
    }
    repeated = int(known.duplicated(subset=[user, item]).sum())
    if repeated:
        found.append(
            Anomaly(
                "duplicate_pairs",
                WARNING,
                None,
                f"{repeated:,} interactions repeat a (user, item) pair already seen "
                f"({repeated / len(known):.1%})",
                "repeats count once as a positive; keep them only if a weight or a time "
                "distinguishes them",
                {"rows": repeated},
            )
        )
    for what, counts, least in (("user", per_user, min_per_user), ("item", per_item, min_per_item)):
        few = int((counts < least).sum())
        if few:
            found.append(
                Anomaly(
                    f"sparse_{what}s",
                    WARNING if what == "user" else INFO,
                    user if what == "user" else item,
                    f"{few:,} {what}s ({few / len(counts):.1%}) have fewer than {least} "
                    "interactions",
                    f"a {what} with few interactions is hard to learn: the cold-start "
                    "fallback serves it, or filter them before training",
                    {what + "s": few, "min": least},
                )
            )
    if items is not None:
        key = item_key or item
        absent = ~known[item].isin(items[key])
        if absent.any():
            n = int(absent.sum())
            found.append(
                Anomaly(
                    "unknown_items",
                    ERROR if absent.all() else WARNING,
                    item,
                    f"{n:,} interactions ({n / len(known):.1%}) name items absent from the "
                    f"item table, e.g. {known.loc[absent, item].iloc[0]!r}",
                    f"check that {item} and the item table's {key} hold the same ids",
                    {"rows": n, "items": int(known.loc[absent, item].nunique())},
                )
            )
    if time_column is not None:
        facts["time"] = _time_range(known[time_column], time_column, found, now)
    return facts, found


def _time_range(
    values: pd.Series, column: str, found: list[Anomaly], now: float | None
) -> dict[str, Any] | None:
    """The first and last time (ISO) and the findings about the times."""
    if pd.api.types.is_numeric_dtype(values):
        stamps = pd.to_datetime(values, unit="s", utc=True, errors="coerce")
    else:
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
    bad = int((stamps.isna() & values.notna()).sum() + values.isna().sum())
    if bad:
        found.append(
            Anomaly(
                "unreadable_time",
                WARNING,
                column,
                f"{bad:,} interactions have no readable {column}",
                "write times as ISO 8601 or Unix seconds; a time split cannot place them",
                {"rows": bad},
            )
        )
    stamps = stamps.dropna()
    if stamps.empty:
        return None
    limit = pd.Timestamp(time.time() if now is None else now, unit="s", tz="UTC")
    future = int((stamps > limit).sum())
    if future:
        found.append(
            Anomaly(
                "future_time",
                WARNING,
                column,
                f"{future:,} interactions are dated after now (latest {stamps.max().isoformat()})",
                "check the clock or the unit of the times (seconds, not milliseconds)",
                {"rows": future},
            )
        )
    return {"first": stamps.min().isoformat(), "last": stamps.max().isoformat()}
