"""Schema inference: what each column is, its range or domain, and how much of it is missing.

Types are the ones features and validation reason about: numeric, boolean, categorical,
datetime, text and identifier. Strings that are mostly numbers are numeric (the rest are
recorded as parse failures, which validation reports as a type mismatch); the spec's
``data.columns`` overrides any inferred type.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsd.spec import ColumnSpec
from mlsd.values import FALSE_WORDS, TRUE_WORDS

PARSE_SHARE = 0.95  # share of values that must parse for a string column to take that type
_ID_NAME = re.compile(r"(^id$|_id$|^id_|uuid|guid|^key$|_key$)", re.IGNORECASE)
_BOOL_WORDS = {"true", "false"}


@dataclass
class ColumnSchema:
    """What one column holds, as inferred (and possibly overridden by the spec)."""

    name: str
    type: str
    inferred_type: str
    dtype: str
    count: int
    missing: int
    n_unique: int
    min: float | None = None
    max: float | None = None
    domain: list[Any] | None = None
    parse_failures: int = 0
    parse_examples: list[str] = field(default_factory=list)
    declared: bool = False

    @property
    def missing_rate(self) -> float:
        """Share of rows with no value."""
        return self.missing / self.count if self.count else 0.0


@dataclass
class Schema:
    """The columns of a data set in order, with their inferred facts."""

    n_rows: int
    columns: dict[str, ColumnSchema]

    @property
    def types(self) -> dict[str, str]:
        """Column name → type, in data order."""
        return {name: col.type for name, col in self.columns.items()}

    def to_dict(self) -> dict:
        """JSON-safe form, as written to ``schema.json``."""
        return {
            "n_rows": self.n_rows,
            "columns": [
                {**asdict(col), "missing_rate": round(col.missing_rate, 6)}
                for col in self.columns.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Schema:
        """Inverse of :meth:`to_dict`."""
        cols = {}
        for raw in data["columns"]:
            raw = {k: v for k, v in raw.items() if k != "missing_rate"}
            cols[raw["name"]] = ColumnSchema(**raw)
        return cls(n_rows=data["n_rows"], columns=cols)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _string_type(uniques: pd.Index, counts: np.ndarray) -> str:
    """Infer the type of a string column from its distinct values and their counts."""
    non_null = int(counts.sum())
    if non_null == 0:
        return "categorical"
    numbers = pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(float)
    parsed = ~np.isnan(numbers)
    ok = int(counts[parsed].sum())
    if ok and ok >= PARSE_SHARE * non_null:
        return "numeric"
    lowered = {str(u).strip().lower() for u in uniques}
    if lowered <= _BOOL_WORDS and len(lowered) == 2:
        return "boolean"
    as_str = pd.Series(uniques, dtype=object).astype(str)
    if as_str.str.len().mean() >= 6 and as_str.str.contains(r"\d", regex=True).mean() > 0.9:
        dates = pd.to_datetime(as_str, errors="coerce", format="ISO8601")
        if int(counts[dates.notna().to_numpy()].sum()) >= PARSE_SHARE * non_null:
            return "datetime"
    ratio = len(uniques) / non_null
    words = as_str.str.count(" ").mean() + 1
    if ratio > 0.5 and (as_str.str.len().mean() >= 40 or words >= 4):
        return "text"
    if ratio >= 0.95 and non_null >= 20:
        return "identifier"
    return "categorical"


def _numeric_type(name: str, values: np.ndarray, n_unique: int) -> str:
    # Numbers that happen to be 0 and 1 stay numbers: a count or a pixel seen only at 0/1 in
    # training may be 2 in production, which a boolean would refuse; as a number it is
    # answered and flagged out of range. Models read 0/1 the same either way.
    present = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    if values.dtype.kind in "iu" and present.size >= 20 and n_unique == present.size:
        consecutive = int(present.max()) - int(present.min()) + 1 == present.size
        if consecutive or _ID_NAME.search(name):
            return "identifier"
    return "numeric"


def _infer_column(name: str, series: pd.Series) -> ColumnSchema:
    count = len(series)
    missing = int(series.isna().sum())
    dtype = str(series.dtype)
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(series.cat.categories))
        present = counts > 0
        uniques, counts = series.cat.categories[present], counts[present]
        kind = _string_type(uniques, counts)
        n_unique = len(uniques)
    elif pd.api.types.is_bool_dtype(series.dtype):
        kind, n_unique = "boolean", int(series.nunique())
    elif pd.api.types.is_datetime64_any_dtype(series.dtype):
        kind, n_unique = "datetime", int(series.nunique())
    elif pd.api.types.is_numeric_dtype(series.dtype):
        n_unique = int(series.nunique())
        kind = _numeric_type(name, series.to_numpy(), n_unique)
    else:  # object columns of mixed Python values
        as_cat = series.astype(str).where(series.notna()).astype("category")
        return _infer_column(name, as_cat)
    return ColumnSchema(
        name=name,
        type=kind,
        inferred_type=kind,
        dtype=dtype,
        count=count,
        missing=missing,
        n_unique=n_unique,
    )


def _describe_values(col: ColumnSchema, series: pd.Series) -> None:
    """Fill range (numeric, datetime) and domain (categorical, boolean) from coerced values."""
    if col.type == "numeric":
        values = series.to_numpy(dtype=float, na_value=np.nan)
        finite = values[np.isfinite(values)]
        if finite.size:
            col.min, col.max = float(finite.min()), float(finite.max())
    elif col.type == "datetime" and series.notna().any():
        col.min, col.max = str(series.min()), str(series.max())  # type: ignore[assignment]
    elif col.type in ("categorical", "boolean") and col.n_unique <= 1000:
        col.domain = domain_of(series)


def domain_of(series: pd.Series) -> list[Any]:
    """The distinct values present in ``series`` (coerced to its schema type) as JSON
    scalars, sorted by their text: a column's domain."""
    return sorted((_json_scalar(v) for v in series.dropna().unique()), key=str)


def infer_schema(
    df: pd.DataFrame, overrides: dict[str, ColumnSpec] | None = None
) -> tuple[Schema, pd.DataFrame]:
    """Infer every column's type and facts; ``overrides`` (spec ``data.columns``) win.

    Returns the schema and the frame coerced to it (see :func:`coerce`).
    """
    overrides = overrides or {}
    columns = {}
    for name in df.columns:
        col = _infer_column(str(name), df[name])
        declared = overrides.get(str(name))
        if declared is not None and declared.type is not None:
            col.type, col.declared = declared.type, True
        columns[str(name)] = col
    schema = Schema(n_rows=len(df), columns=columns)
    coerced = coerce(df, schema)
    for name, col in columns.items():
        # values present in the data that the column's type cannot read: a type mismatch
        failed = coerced[name].isna().to_numpy() & df[name].notna().to_numpy()
        col.parse_failures = int(failed.sum())
        if col.parse_failures:
            col.parse_examples = [str(v) for v in pd.unique(df[name][failed])[:5]]
        _describe_values(col, coerced[name])
    return schema, coerced


def _to_bool(series: pd.Series) -> pd.Series:
    """Booleans as float 1/0 with NaN for missing or unreadable values."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype(float)
    words = series.astype(str).str.strip().str.lower()
    out = pd.Series(np.nan, index=series.index)
    out[words.isin(TRUE_WORDS)] = 1.0
    out[words.isin(FALSE_WORDS)] = 0.0
    return out.where(series.notna())


def coerce(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """A frame whose columns hold values of their schema type (unparseable values → missing).

    Numeric → float64, boolean → float 0/1, datetime → datetime64, categorical/text/identifier
    → pandas category (compact; the featurizer reads categories and codes).
    """
    out = {}
    for name, col in schema.columns.items():
        series = df[name]
        if col.type == "numeric":
            if not pd.api.types.is_numeric_dtype(series.dtype):
                series = pd.to_numeric(series.astype(object), errors="coerce")
            out[name] = series.astype(float)
        elif col.type == "boolean":
            out[name] = _to_bool(series)
        elif col.type == "datetime":
            if not pd.api.types.is_datetime64_any_dtype(series.dtype):
                series = pd.to_datetime(series.astype(object), errors="coerce", format="ISO8601")
            out[name] = series
        elif isinstance(series.dtype, pd.CategoricalDtype):
            out[name] = series
        else:
            out[name] = series.astype("category")
    return pd.DataFrame(out, index=df.index)
