"""Times as every part of mlsd reads them: a datetime, an ISO 8601 string or epoch seconds,
with naive times taken as UTC (every time mlsd writes is UTC). Standard library only."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(value: str | datetime) -> datetime:
    """``value`` as an aware UTC datetime; ValueError when it is not an ISO 8601 time."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def epoch(value: float | int | str | datetime) -> float:
    """Epoch seconds of a number (as is), a datetime or an ISO 8601 string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return utc(value).timestamp()
