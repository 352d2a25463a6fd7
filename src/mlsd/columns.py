"""Which columns of a table are features (step 5 declared over step 4's column types).

``select_features`` applies ``features.include``/``exclude`` and the column types; validation
and training both ask it, and the featurizer names crosses with ``cross_name``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from mlsd.errors import FeatureError, did_you_mean

if TYPE_CHECKING:
    from mlsd.spec import SystemSpec

COLUMN_TYPES = ("numeric", "boolean", "categorical", "datetime", "text", "identifier")
FEATURIZED = ("numeric", "boolean", "categorical", "datetime")
CROSS_JOIN = "__x__"


def close_columns(name: str, choices: Iterable[str]) -> str:
    """The end of an unknown-column message: the close names, else the columns there are."""
    choices = list(choices)
    guess = did_you_mean(name, choices, n=3)
    if guess:
        return guess.removeprefix(" — ")
    shown = ", ".join(choices[:20]) + (", …" if len(choices) > 20 else "")
    return f"the columns are: {shown or 'none'}"


def cross_name(columns: Sequence[str]) -> str:
    """Name of the categorical column a cross of ``columns`` becomes, e.g. ``a__x__b``."""
    return CROSS_JOIN.join(columns)


def select_features(spec: SystemSpec, column_types: Mapping[str, str]) -> dict[str, str]:
    """The feature columns (name → type) in data order.

    Drops the target, the entity id (``problem.id``) and a ranking's group
    (``problem.group``) unless ``features.include`` lists them,
    ``features.exclude``, everything outside ``features.include`` when it is set,
    ``identifier`` columns and ``text`` columns (not featurized yet). Unknown names in
    ``include``, ``exclude``, ``columns`` or ``crosses`` raise FeatureError with close matches.
    """
    features = spec.features
    for name, kind in column_types.items():
        if kind not in COLUMN_TYPES:
            raise FeatureError(
                f"column {name!r} has unknown type {kind!r}",
                hint=f"use one of: {', '.join(COLUMN_TYPES)}",
            )
    crosses = {cross_name(group): group for group in features.crosses}
    named = [("features.exclude", n) for n in features.exclude]
    named += [("features.include", n) for n in features.include or []]
    named += [("features.crosses", n) for group in features.crosses for n in group]
    named += [("features.columns", n) for n in features.columns if n not in crosses]
    for key, name in named:
        if name not in column_types:
            raise FeatureError(
                f"{key} names {name!r}, which is not a column of the data — {close_columns(name, column_types)}",
                hint=f"fix the name in {key} or remove it",
            )
    include = set(features.include) if features.include is not None else None
    for name in include or ():
        if column_types[name] in ("text", "identifier"):
            raise FeatureError(
                f"features.include lists {name!r}, a {column_types[name]} column, which is "
                "never featurized",
                hint=f"declare its type in data.columns.{name}.type (e.g. categorical), or "
                "remove it from features.include",
            )
    dropped = {spec.problem.target, *features.exclude}
    for key in (spec.problem.id, spec.problem.group):  # who, not what: unless included
        if key and (include is None or key not in include):
            dropped.add(key)
    return {
        name: kind
        for name, kind in column_types.items()
        if name not in dropped and (include is None or name in include) and kind in FEATURIZED
    }
