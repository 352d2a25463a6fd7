"""Column transforms of the featurizer: input coercion, fitted state, and vectorized apply.

Every transform is fitted on whole training columns and then applied in two phases:
``prepare`` turns a whole input column into a compact numpy form (float values, datetimes
or vocabulary codes) once, and ``write`` fills the transform's output rows of a
(features × rows) block for one chunk of rows. The same code serves one JSON row online and
a million rows offline. This module imports only numpy and the standard library: it is on the
serving path.

Inputs may be numpy arrays, Python lists (online requests), or dictionary-encoded columns
recognized by duck typing (pandas ``Categorical``: ``.codes``/``.categories``; a pandas
Series of category dtype: ``.cat``; pyarrow ``DictionaryArray``: ``.indices``/``.dictionary``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC
from typing import Any, ClassVar

import numpy as np

from mlsd.errors import FeatureError
from mlsd.values import FALSE_WORDS, TRUE_WORDS, category_key, float_key

MISSING_LABEL = "__missing__"
RARE_LABEL = "__rare__"
MISSING_CODE = 0  # reserved codes of every categorical output; vocabulary values start at 2
RARE_CODE = 1
CROSS_SEPARATOR = "|"
DATETIME_PARTS = ("year", "month", "day", "dayofweek", "dayofyear", "hour", "minute")
CYCLES = {"month": 12.0, "dayofweek": 7.0, "hour": 24.0}
_INT_RANGE_LIMIT = 1 << 16  # integer columns spanning fewer values are factorized by offset


# --- input coercion ---------------------------------------------------------------------------


@dataclass
class Encoded:
    """A dictionary-encoded column: ``codes`` index ``categories``; code -1 is missing."""

    codes: np.ndarray
    categories: list


def _dictionary(values: Any) -> Encoded | None:
    """The codes and categories of a pandas Categorical/Series or pyarrow DictionaryArray."""
    if hasattr(values, "combine_chunks") and hasattr(getattr(values, "type", None), "index_type"):
        values = values.combine_chunks()  # dictionary ChunkedArray: unifies the dictionaries
    if hasattr(values, "codes") and hasattr(values, "categories"):
        return Encoded(np.asarray(values.codes), list(values.categories))
    cat = getattr(values, "cat", None)
    if cat is not None and hasattr(cat, "codes") and hasattr(cat, "categories"):
        return Encoded(np.asarray(cat.codes), list(cat.categories))
    if hasattr(values, "indices") and hasattr(values, "dictionary"):
        indices = values.indices
        if getattr(indices, "null_count", 0):
            indices = indices.fill_null(-1)
        return Encoded(np.asarray(indices), values.dictionary.to_pylist())
    return None


def as_numpy(values: Any) -> np.ndarray:
    """A 1-D numpy array of ``values``; lists become object arrays so no value is reinterpreted."""
    if isinstance(values, np.ndarray):
        array = values
    elif isinstance(values, list | tuple):
        # np.asarray would turn [1.0, "a"] into the strings "1.0", "a": keep the Python objects
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif hasattr(values, "chunks"):  # pyarrow ChunkedArray
        parts = [as_numpy(chunk) for chunk in values.chunks]
        array = np.concatenate(parts) if parts else np.empty(0, dtype=object)
    elif hasattr(values, "to_numpy") and hasattr(values, "null_count"):  # pyarrow Array
        array = values.to_numpy(zero_copy_only=False)
    else:
        array = np.asarray(values)
    if array.ndim != 1:
        raise FeatureError(
            f"a feature column must be one-dimensional; got an array of shape {array.shape}",
            hint="pass one list or 1-D array per column",
        )
    return array


def _densify(values: Any, coerce: Callable[[Any], np.ndarray], missing: Any) -> np.ndarray | None:
    """Coerce a dictionary-encoded column through its few categories, then index by codes."""
    encoded = _dictionary(values)
    if encoded is None:
        return None
    table = coerce(encoded.categories)
    table = np.append(table, np.array([missing], dtype=table.dtype))
    return table[encoded.codes]  # code -1 picks the appended missing value


def scalar_float(value: Any) -> float:
    """One value as a float, as :func:`to_float` reads it (missing and unreadable → NaN)."""
    if isinstance(value, str):
        value = value.strip()
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return result if math.isfinite(result) else math.nan


_float_each = np.frompyfunc(scalar_float, 1, 1)


def to_float(values: Any) -> np.ndarray:
    """float64 values of a numeric column; None, unparseable strings and ±inf become NaN."""
    dense = _densify(values, to_float, math.nan)
    array = as_numpy(values) if dense is None else dense
    if array.dtype.kind in "fiub":
        result = array.astype(np.float64)  # always a copy: callers fill it in place
    elif array.dtype.kind in "OUS":
        try:
            result = array.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            result = _float_each(array).astype(np.float64)
    else:  # datetimes and other kinds are not numbers
        result = np.full(len(array), np.nan)
    result[~np.isfinite(result)] = np.nan
    return result


def _scalar_bool(value: Any) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return 1.0 if word in TRUE_WORDS else 0.0 if word in FALSE_WORDS else math.nan
    number = scalar_float(value)
    return number if math.isnan(number) else float(number != 0)


_bool_each = np.frompyfunc(_scalar_bool, 1, 1)


def to_bool(values: Any) -> np.ndarray:
    """0.0/1.0 of a boolean column (NaN when missing); accepts yes/no, true/false, 0/1 text."""
    dense = _densify(values, to_bool, math.nan)
    array = as_numpy(values) if dense is None else dense
    if array.dtype.kind == "b":
        return array.astype(np.float64)
    if array.dtype.kind in "fiu":
        number = array.astype(np.float64)
        result = (number != 0).astype(np.float64)
        result[~np.isfinite(number)] = np.nan
        return result
    if array.dtype.kind in "US" and len(array):
        uniques, inverse = np.unique(array, return_inverse=True)  # few distinct strings
        return _bool_each(uniques).astype(np.float64)[inverse]
    return _bool_each(array).astype(np.float64)


def _scalar_datetime(value: Any) -> np.datetime64:
    nat = np.datetime64("NaT", "ms")
    if isinstance(value, np.datetime64):
        return value
    tzinfo = getattr(value, "tzinfo", None)
    if tzinfo is not None and hasattr(value, "astimezone"):  # aware datetime/Timestamp → UTC
        value = value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, str):
        value = value.strip()
        if not value or not value[0].isdigit():  # also refuses numpy's 'now' and 'today'
            return nat
    elif not (hasattr(value, "year") and hasattr(value, "month")):  # numbers are not dates
        return nat
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns when it converts an offset to UTC
            return np.datetime64(value, "ms")
    except (TypeError, ValueError, OverflowError):
        return nat


def to_datetime(values: Any) -> np.ndarray:
    """datetime64 values of a datetime column (NaT when missing or unparseable)."""
    dense = _densify(values, to_datetime, np.datetime64("NaT", "ms"))
    array = as_numpy(values) if dense is None else dense
    if array.dtype.kind == "M":
        return array
    if array.dtype.kind in "US":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # offsets such as +02:00 are converted to UTC
                return array.astype("datetime64[ms]")
        except (TypeError, ValueError, OverflowError):
            pass
    elif array.dtype.kind != "O":
        return np.full(len(array), np.datetime64("NaT", "ms"))
    result = np.empty(len(array), dtype="datetime64[ms]")
    for i, value in enumerate(array):  # object input: online-sized, or a fallback
        result[i] = _scalar_datetime(value)
    return result


# --- categorical keys ---------------------------------------------------------------------------


@dataclass
class Factorized:
    """A column as integer ``codes`` into ``keys`` (canonical strings; None = missing).

    Code -1 also means missing, so a lookup table with one extra last entry maps it.
    """

    codes: np.ndarray
    keys: list[str | None]

    def lookup(self, table: Mapping[str, int], default: int, missing: int) -> np.ndarray:
        """Map every row through ``table`` by key, in O(rows + distinct values)."""
        lut = [missing if k is None else table.get(k, default) for k in self.keys]
        size = len(table) + 2
        # the smallest code type: all categorical columns are prepared before any is written
        dtype = np.int8 if size <= 127 else np.int16 if size <= 32767 else np.int32
        return np.array([*lut, missing], dtype=dtype)[self.codes]

    def counts(self) -> dict[str, int]:
        """Rows per key (missing excluded)."""
        per_code = np.bincount(self.codes.astype(np.intp) + 1, minlength=len(self.keys) + 1)[1:]
        totals: dict[str, int] = {}
        for key, count in zip(self.keys, per_code.tolist(), strict=True):
            if key is not None and count:
                totals[key] = totals.get(key, 0) + count
        return totals


def _factorize_objects(array: np.ndarray | list) -> Factorized:
    # A dict over Python objects is ~10x faster than np.unique on object arrays (hashes of
    # str are cached; sorting compares through Python): 0.05 s vs 0.45 s for 1M strings.
    seen: dict[Any, int] = {}
    add = seen.setdefault
    try:
        codes = np.array([add(v, len(seen)) for v in array], dtype=np.intp)
    except TypeError:  # unhashable values (lists from JSON): compare their text
        seen.clear()
        codes = np.array([add(category_key(v), len(seen)) for v in array], dtype=np.intp)
    return Factorized(codes, [category_key(v) for v in seen])


def _factorize_ints(array: np.ndarray) -> Factorized:
    low, high = int(array.min()), int(array.max())
    if high - low < _INT_RANGE_LIMIT and high < 2**62:  # O(rows) offset codes, no sort
        codes = (array.astype(np.int64) - low).astype(np.intp)
        return Factorized(codes, [str(low + i) for i in range(high - low + 1)])
    uniques, codes = np.unique(array, return_inverse=True)
    return Factorized(codes.astype(np.intp), [str(int(u)) for u in uniques.tolist()])


def _factorize_floats(array: np.ndarray) -> Factorized:
    finite = np.isfinite(array)
    uniques, inverse = np.unique(array[finite], return_inverse=True)
    codes = np.full(len(array), -1, dtype=np.intp)
    codes[finite] = inverse
    return Factorized(codes, [float_key(u) for u in uniques])


def factorize(values: Any) -> Factorized:
    """Integer codes and canonical keys of any supported column, without per-row dict work
    for numeric or dictionary-encoded input."""
    encoded = _dictionary(values)
    if encoded is not None:
        # keep the native (often int8) codes: a lookup table indexes them directly
        return Factorized(encoded.codes, [category_key(c) for c in encoded.categories])
    array = as_numpy(values)
    kind = array.dtype.kind
    if len(array) == 0:
        return Factorized(np.empty(0, dtype=np.intp), [])
    if kind == "b":
        return Factorized(array.astype(np.intp), ["False", "True"])
    if kind in "iu":
        return _factorize_ints(array)
    if kind == "f":
        return _factorize_floats(array)
    if kind in "US":
        return _factorize_objects(array.tolist())
    if kind == "M":
        uniques, codes = np.unique(array, return_inverse=True)
        keys = [None if np.isnat(u) else str(u) for u in uniques]
        return Factorized(codes.astype(np.intp), keys)
    return _factorize_objects(array)


def cross(parts: Sequence[Factorized]) -> Factorized:
    """The factorized cross of several columns: a row's key joins its members' keys with
    ``|``; the cross is missing when any member is."""
    result = parts[0]
    for part in parts[1:]:
        result = _cross_pair(result, part)
    return result


def _cross_pair(left: Factorized, right: Factorized) -> Factorized:
    width = max(len(right.keys), 1)
    missing = _missing_rows(left) | _missing_rows(right)
    combined = np.maximum(left.codes, 0).astype(np.int64) * width + np.maximum(right.codes, 0)
    combined[missing] = -1
    # re-factorizing after each pair keeps codes below rows², so they never overflow
    uniques, inverse = np.unique(combined, return_inverse=True)
    keys: list[str | None] = []
    for code in uniques.tolist():
        if code < 0:
            keys.append(None)
        else:
            high, low = divmod(code, width)
            keys.append(f"{left.keys[high]}{CROSS_SEPARATOR}{right.keys[low]}")
    return Factorized(inverse.astype(np.intp), keys)


def _missing_rows(factorized: Factorized) -> np.ndarray:
    is_missing = np.array([k is None for k in factorized.keys] + [True], dtype=bool)
    return is_missing[factorized.codes]


# --- inputs of one call -----------------------------------------------------------------------


class Inputs:
    """The input columns of one fit or transform call.

    Factorizations of the columns listed in ``shared`` (used by a categorical and a cross,
    or by several crosses) are computed once and kept for the call; others are not kept, so
    a wide table never holds every column's codes at once.
    """

    def __init__(self, data: Mapping[str, Any], names: Sequence[str], shared: Sequence[str] = ()):
        absent = [name for name in names if name not in data]
        if absent:
            given = ", ".join(sorted(map(str, data))[:20]) or "none"
            raise FeatureError(
                f"input column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))} "
                f"missing — the data has: {given}",
                hint="pass every column in the featurizer's input_columns",
            )
        self.data = data
        lengths = {name: _length(data[name]) for name in names}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
            raise FeatureError(
                f"input columns differ in length: {shown}",
                hint="pass columns of equal length, one value per row",
            )
        self.rows = next(iter(lengths.values()), 0)
        self._shared = set(shared)
        self._factorized: dict[str, Factorized] = {}

    def raw(self, name: str) -> Any:
        """The column as given."""
        return self.data[name]

    def factorized(self, name: str) -> Factorized:
        """The column as codes and canonical keys (computed once per call when shared)."""
        if name in self._factorized:
            return self._factorized[name]
        result = factorize(self.data[name])
        if name in self._shared:
            self._factorized[name] = result
        return result


def _length(values: Any) -> int:
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise FeatureError(
            f"a feature column must be a list or array of values; got {type(values).__name__}",
            hint='wrap a single value in a list, e.g. {"age": [42]}',
        )
    return len(values)


# --- transforms -------------------------------------------------------------------------------


def _fit_scale(values: np.ndarray) -> dict[str, float]:
    mean = _finite(values.mean()) if len(values) else 0.0
    std = float(values.std()) if len(values) else 0.0
    return {"mean": mean, "scale": std if std > 0 and math.isfinite(std) else 1.0}


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else 0.0


class Transform:
    """Fitted state of one output group; subclasses define fit, prepare and write."""

    kind: ClassVar[str]

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input columns this transform reads (one, ``column``, unless overridden)."""
        return (self.column,)  # type: ignore[attr-defined]

    @property
    def names(self) -> list[str]:
        """Names of the output columns, in order."""
        raise NotImplementedError

    @property
    def categorical(self) -> list[int]:
        """Positions (within this transform's outputs) of integer-code categorical columns."""
        return []

    def prepare(self, inputs: Inputs) -> Any:
        """A compact whole-column form of the inputs, computed once per call."""
        raise NotImplementedError

    def write(self, prepared: Any, start: int, stop: int, block: np.ndarray) -> None:
        """Fill ``block`` (outputs × rows start..stop) from the prepared inputs."""
        raise NotImplementedError

    def to_json(self) -> dict:
        """Fitted state as plain JSON: the kind, then every dataclass field in order."""
        state = {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
        return {
            "kind": self.kind,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in state.items()},
        }


@dataclass
class NumericTransform(Transform):
    """Impute, optionally flag missing, optionally standardize, optionally add sin/cos."""

    kind: ClassVar[str] = "numeric"
    column: str
    impute: str
    fill: float
    indicator: bool
    scale: dict[str, float] | None
    cyclical: float | None

    @classmethod
    def fit(
        cls,
        column: str,
        values: Any,
        *,
        impute: str,
        indicator: bool,
        standardize: bool,
        cyclical: float | None,
    ) -> NumericTransform:
        """Learn the fill value (and scale) from the training column."""
        x = to_float(values)
        missing = np.isnan(x)
        observed = x[~missing]
        if impute == "zero" or not len(observed):
            fill = 0.0
        elif impute == "mean":
            fill = _finite(observed.mean())
        else:
            fill = _finite(np.median(observed))
        x[missing] = fill
        scale = _fit_scale(x) if standardize else None
        return cls(column, impute, fill, bool(indicator and missing.any()), scale, cyclical)

    @property
    def names(self) -> list[str]:
        names = [self.column]
        if self.indicator:
            names.append(f"{self.column}__missing")
        if self.cyclical:
            names += [f"{self.column}__sin", f"{self.column}__cos"]
        return names

    def prepare(self, inputs: Inputs) -> np.ndarray:
        raw = inputs.raw(self.column)
        if isinstance(raw, np.ndarray) and raw.dtype == np.float64 and raw.ndim == 1:
            return raw  # no copy: chunks are copied by write
        return to_float(raw)

    def write(self, prepared: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
        x = prepared[start:stop].copy()
        missing = ~np.isfinite(x)
        x[missing] = self.fill
        row = 0
        if self.scale is not None:
            block[row] = (x - self.scale["mean"]) / self.scale["scale"]
        else:
            block[row] = x
        row += 1
        if self.indicator:
            block[row] = missing
            row += 1
        if self.cyclical:
            # reduce to one period first: x * 2π/P could overflow to inf (and sin(inf) is NaN)
            angle = np.mod(x, self.cyclical) * (2 * math.pi / self.cyclical)
            block[row] = np.sin(angle)
            block[row + 1] = np.cos(angle)


@dataclass
class BooleanTransform(Transform):
    """0/1, missing filled with the training mode, optionally flagged."""

    kind: ClassVar[str] = "boolean"
    column: str
    fill: float
    indicator: bool

    @classmethod
    def fit(cls, column: str, values: Any, *, indicator: bool) -> BooleanTransform:
        """Learn the mode (ties and all-missing give 0) from the training column."""
        x = to_bool(values)
        missing = np.isnan(x)
        ones = int(np.count_nonzero(x == 1))
        zeros = int(np.count_nonzero(x == 0))
        return cls(column, 1.0 if ones > zeros else 0.0, bool(indicator and missing.any()))

    @property
    def names(self) -> list[str]:
        return [self.column] + ([f"{self.column}__missing"] if self.indicator else [])

    def prepare(self, inputs: Inputs) -> np.ndarray:
        return to_bool(inputs.raw(self.column))

    def write(self, prepared: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
        x = prepared[start:stop]
        missing = np.isnan(x)
        block[0] = np.where(missing, self.fill, x)
        if self.indicator:
            block[1] = missing


def fit_vocabulary(counts: Mapping[str, int], min_frequency: int, max_categories: int) -> list[str]:
    """Values seen at least ``min_frequency`` times, the ``max_categories`` most frequent,
    most frequent first, ties broken by value."""
    kept = [(-n, key) for key, n in counts.items() if n >= min_frequency]
    kept.sort()
    return [key for _, key in kept[:max_categories]]


@dataclass
class CategoricalTransform(Transform):
    """Vocabulary codes (0 missing, 1 rare or unseen, 2.. values) or their one-hot columns.

    A cross (``columns`` of several inputs) is a categorical over the joined member keys.
    """

    kind: ClassVar[str] = "categorical"
    name: str
    columns: tuple[str, ...]
    vocabulary: list[str]
    onehot: bool

    def __post_init__(self) -> None:
        self._codes = {key: i + 2 for i, key in enumerate(self.vocabulary)}

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.columns

    @classmethod
    def fit(
        cls,
        name: str,
        columns: Sequence[str],
        inputs: Inputs,
        *,
        min_frequency: int,
        max_categories: int,
        onehot: bool,
    ) -> CategoricalTransform:
        """Learn the vocabulary from the training column(s)."""
        counts = _factorized(columns, inputs).counts()
        vocabulary = fit_vocabulary(counts, min_frequency, max_categories)
        return cls(name, tuple(columns), vocabulary, onehot)

    @property
    def names(self) -> list[str]:
        if not self.onehot:
            return [self.name]
        labels = [MISSING_LABEL, RARE_LABEL, *self.vocabulary]
        return [f"{self.name}={label}" for label in labels]

    @property
    def categorical(self) -> list[int]:
        return [] if self.onehot else [0]

    def prepare(self, inputs: Inputs) -> np.ndarray:
        return _factorized(self.columns, inputs).lookup(self._codes, RARE_CODE, MISSING_CODE)

    def write(self, prepared: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
        codes = prepared[start:stop]
        if not self.onehot:
            block[0] = codes
            return
        block[:] = 0.0
        block[codes, np.arange(len(codes))] = 1.0


def _factorized(columns: Sequence[str], inputs: Inputs) -> Factorized:
    if len(columns) == 1:
        return inputs.factorized(columns[0])
    return cross([inputs.factorized(c) for c in columns])


def datetime_parts(times: np.ndarray, parts: Sequence[str]) -> dict[str, np.ndarray]:
    """Calendar parts of datetime64 values with numpy arithmetic (Monday = 0); NaT → NaN."""
    missing = np.isnat(times)
    days = times.astype("datetime64[D]")
    found: dict[str, np.ndarray] = {}
    for part in parts:
        if part == "year":
            value = times.astype("datetime64[Y]").astype(np.int64) + 1970
        elif part == "month":
            value = times.astype("datetime64[M]").astype(np.int64) % 12 + 1
        elif part == "day":
            value = (days - times.astype("datetime64[M]")).astype(np.int64) + 1
        elif part == "dayofweek":
            value = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
        elif part == "dayofyear":
            value = (days - times.astype("datetime64[Y]")).astype(np.int64) + 1
        elif part == "hour":
            value = (times.astype("datetime64[h]") - days).astype(np.int64)
        elif part == "minute":
            value = (times.astype("datetime64[m]") - times.astype("datetime64[h]")).astype(np.int64)
        else:
            raise FeatureError(
                f"unknown datetime part {part!r}", hint=f"use some of: {', '.join(DATETIME_PARTS)}"
            )
        result = value.astype(np.float64)
        result[missing] = np.nan
        found[part] = result
    return found


@dataclass
class DatetimeTransform(Transform):
    """Calendar parts, sin/cos for month, weekday and hour; missing parts get the training
    median and an indicator."""

    kind: ClassVar[str] = "datetime"
    column: str
    parts: list[str]
    fill: dict[str, float]
    indicator: bool
    scale: dict[str, dict[str, float]] | None

    @classmethod
    def fit(
        cls,
        column: str,
        values: Any,
        *,
        parts: Sequence[str],
        indicator: bool,
        standardize: bool,
    ) -> DatetimeTransform:
        """Learn per-part medians (and scales) from the training column."""
        times = to_datetime(values)
        missing = np.isnat(times)
        found = datetime_parts(times, parts)
        fill, scale = {}, {}
        for part, value in found.items():
            observed = value[~missing]
            fill[part] = _finite(np.median(observed)) if len(observed) else 0.0
            if standardize:
                scale[part] = _fit_scale(np.where(missing, fill[part], value))
        return cls(
            column,
            list(parts),
            fill,
            bool(indicator and missing.any()),
            scale if standardize else None,
        )

    @property
    def names(self) -> list[str]:
        names = []
        for part in self.parts:
            names.append(f"{self.column}__{part}")
            if part in CYCLES:
                names += [f"{self.column}__{part}_sin", f"{self.column}__{part}_cos"]
        if self.indicator:
            names.append(f"{self.column}__missing")
        return names

    def prepare(self, inputs: Inputs) -> np.ndarray:
        return to_datetime(inputs.raw(self.column))

    def write(self, prepared: np.ndarray, start: int, stop: int, block: np.ndarray) -> None:
        times = prepared[start:stop]
        missing = np.isnat(times)
        row = 0
        for part, value in datetime_parts(times, self.parts).items():
            value[missing] = self.fill[part]
            if self.scale is not None:
                block[row] = (value - self.scale[part]["mean"]) / self.scale[part]["scale"]
            else:
                block[row] = value
            row += 1
            if part in CYCLES:
                angle = value * (2 * math.pi / CYCLES[part])
                block[row] = np.sin(angle)
                block[row + 1] = np.cos(angle)
                row += 2
        if self.indicator:
            block[row] = missing


KINDS: dict[str, type[Transform]] = {
    t.kind: t for t in (NumericTransform, BooleanTransform, CategoricalTransform, DatetimeTransform)
}


def transform_from_json(state: Mapping[str, Any]) -> Transform:
    """Rebuild a fitted transform from its ``to_json`` state."""
    kind = state.get("kind") if isinstance(state, Mapping) else None
    if kind not in KINDS:
        raise FeatureError(
            f"saved featurizer holds an unknown transform kind {kind!r}",
            hint=f"expected one of: {', '.join(KINDS)}; re-fit and save the featurizer",
        )
    fields = {k: v for k, v in state.items() if k != "kind"}
    if kind == "categorical":
        fields["columns"] = tuple(fields.get("columns", ()))
    try:
        return KINDS[kind](**fields)
    except TypeError as exc:
        raise FeatureError(
            f"saved {kind} transform is malformed: {exc}",
            hint="re-fit and save the featurizer with this version of mlsd",
        ) from exc
