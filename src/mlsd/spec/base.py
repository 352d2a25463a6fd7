"""What every section shares: the base model, the value types and durations.

Kept apart so each section module can import them without importing the others.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

from mlsd.tasks import NAMES

Task = Literal[NAMES]  # the task kinds of mlsd.tasks
ColumnType = Literal["numeric", "boolean", "categorical", "datetime", "text", "identifier"]
DatetimePart = Literal["year", "month", "day", "dayofweek", "dayofyear", "hour", "minute"]
Scalar = str | int | float | bool

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``15m``, ``24h``, ``30d`` or ``2w``."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(
            f"{text!r} is not a duration; write a number and a unit: s, m, h, d or w (e.g. 24h)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_duration)]


def _listify(data: Any, key: str) -> Any:
    """Let a single name stand for a one-element list (``time: day``)."""
    if isinstance(data, dict) and isinstance(data.get(key), str):
        return {**data, key: [data[key]]}
    return data


class Section(BaseModel):
    """Base of every spec section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
