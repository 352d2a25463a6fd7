"""The value vocabulary every layer shares: which words are booleans, and the key a
categorical value is compared as (schema inference, profiles, the featurizer, request
validation, the log reader and monitoring all read values this one way)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# the words read as booleans everywhere (schema coercion, profiles, the featurizer)
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "1.0", "on"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "0.0", "off"})


def float_key(value: float | np.floating) -> str | None:
    """The category key of a number: 1.0 is "1", float32 0.1 is "0.1"; None when not finite."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        value = float(str(value))  # float32 0.1 is the 0.1 a JSON client sends
    number = float(value)
    if not math.isfinite(number):
        return None
    return str(int(number)) if number.is_integer() else repr(number)


def category_key(value: Any) -> str | None:
    """The string a categorical value is compared as; None when the value is missing.

    1, 1.0 and "1" are the same category; None, NaN, NaT and "" are missing.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return float_key(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace") or None
    try:
        if value != value:  # NaT and other self-unequal missing markers
            return None
    except (TypeError, ValueError):  # pandas.NA refuses to be a bool
        return None
    return str(value)
