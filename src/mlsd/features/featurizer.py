"""Step 5: choose the feature columns, fit a featurizer on the training split, apply it anywhere.

``Featurizer(columns, options).fit(train)`` returns a ``FittedFeaturizer`` whose whole state is
plain JSON (medians, scales, vocabularies, datetime parts). Its ``transform`` is the only code
path, for a million rows offline and one JSON row online; it needs numpy only (``mlsd.spec``,
and with it pydantic, is imported only when a featurizer is fitted without options).
"""

from __future__ import annotations

import json
import math
import operator
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from mlsd.columns import FEATURIZED, close_columns, cross_name
from mlsd.errors import FeatureError
from mlsd.features.transforms import (
    BooleanTransform,
    CategoricalTransform,
    DatetimeTransform,
    Inputs,
    NumericTransform,
    Transform,
    _scalar_bool,
    scalar_float,
    transform_from_json,
)
from mlsd.workspace import atomic_write_bytes

if TYPE_CHECKING:
    from mlsd.spec import FeatureColumnSpec, FeaturesSpec

FORMAT = "mlsd.featurizer"
VERSION = 1
_BLOCK_CELLS = 1 << 18  # rows per chunk × features: a 2 MB block stays in cache
# Options that only make sense for some column types (features.columns.<name>.<option>).
_APPLIES_TO = {
    "impute": ("numeric",),
    "standardize": ("numeric", "datetime"),
    "cyclical": ("numeric",),
    "min_frequency": ("categorical",),
    "max_categories": ("categorical",),
    "parts": ("datetime",),
}


class Featurizer:
    """Unfitted featurizer: which columns (name → type), which options, which encoding.

    ``encoding="codes"`` gives one integer-code column per categorical (for LightGBM, listed in
    ``categorical_indices``) and never standardizes; ``encoding="onehot"`` gives one column per
    category and standardizes numeric inputs (for linear models).
    """

    def __init__(
        self,
        columns: Mapping[str, str],
        options: FeaturesSpec | None = None,
        *,
        encoding: Literal["codes", "onehot"] = "codes",
    ):
        if options is None:
            from mlsd.spec import FeaturesSpec  # pydantic: fit time only, never on transform

            options = FeaturesSpec()
        if encoding not in ("codes", "onehot"):
            raise FeatureError(f"unknown encoding {encoding!r}", hint="use 'codes' or 'onehot'")
        self.columns = dict(columns)
        self.options = options
        self.encoding = encoding
        self._check()

    def _check(self) -> None:
        if not self.columns:
            raise FeatureError(
                "no feature columns to fit",
                hint="check features.include and features.exclude: every column was dropped",
            )
        for name, kind in self.columns.items():
            if kind in ("text", "identifier"):
                raise FeatureError(
                    f"column {name!r} is {kind}, which is not featurized",
                    hint="leave it out of the columns (select_features does), or change its type",
                )
            if kind not in FEATURIZED:
                raise FeatureError(
                    f"column {name!r} has unknown type {kind!r}",
                    hint=f"use one of: {', '.join(FEATURIZED)}",
                )
        for name, column_options in self.options.columns.items():
            kind = self.columns.get(name)
            if kind is None:
                continue  # options of a column that is not a feature (or of a cross)
            for option, kinds in _APPLIES_TO.items():
                if getattr(column_options, option) is not None and kind not in kinds:
                    raise FeatureError(
                        f"features.columns.{name}.{option} applies to {' or '.join(kinds)} "
                        f"columns; {name!r} is {kind}",
                        hint=f"remove features.columns.{name}.{option}",
                    )
        for group in self.options.crosses:
            if len(group) < 2:
                raise FeatureError(
                    f"features.crosses entry {group} needs at least two columns",
                    hint="list two or more columns, e.g. [weekday, hr]",
                )
            for name in group:
                if name not in self.columns:
                    raise FeatureError(
                        f"features.crosses uses {name!r}, which is not a feature column — "
                        f"{close_columns(name, self.columns)}",
                        hint="a crossed column must also be a feature: remove it from "
                        "features.exclude, or from the cross",
                    )

    def _column(self, name: str) -> FeatureColumnSpec | None:
        return self.options.columns.get(name)

    def _option(self, name: str, option: str) -> Any:
        """A per-column option, else the features-wide default."""
        column = self._column(name)
        value = getattr(column, option) if column is not None else None
        return value if value is not None else getattr(self.options, option)

    def _standardize(self, name: str) -> bool:
        return self.encoding == "onehot" and bool(self._option(name, "standardize"))

    def _fit_one(self, name: str, kind: str, inputs: Inputs) -> Transform:
        indicator = self.options.missing_indicator
        if kind == "numeric":
            column = self._column(name)
            return NumericTransform.fit(
                name,
                inputs.raw(name),
                impute=self._option(name, "impute"),
                indicator=indicator,
                standardize=self._standardize(name),
                cyclical=column.cyclical if column is not None else None,
            )
        if kind == "boolean":
            return BooleanTransform.fit(name, inputs.raw(name), indicator=indicator)
        if kind == "datetime":
            column = self._column(name)
            parts = column.parts if column is not None and column.parts else None
            return DatetimeTransform.fit(
                name,
                inputs.raw(name),
                parts=parts or self.options.datetime_parts,
                indicator=indicator,
                standardize=self._standardize(name),
            )
        return self._fit_categorical(name, (name,), inputs)

    def _fit_categorical(self, name: str, columns: Sequence[str], inputs: Inputs) -> Transform:
        return CategoricalTransform.fit(
            name,
            columns,
            inputs,
            min_frequency=self._option(name, "min_frequency"),
            max_categories=self._option(name, "max_categories"),
            onehot=self.encoding == "onehot",
        )

    def fit(self, data: Mapping[str, Any]) -> FittedFeaturizer:
        """Learn every transform's state from the training columns (training split only)."""
        crossed = [name for group in self.options.crosses for name in group]
        inputs = Inputs(data, list(self.columns), shared=crossed)
        if inputs.rows == 0:
            raise FeatureError(
                "cannot fit a featurizer on zero rows", hint="fit on a non-empty training split"
            )
        # sums of values near the float limit overflow; the fitted state stays finite regardless
        with np.errstate(over="ignore", invalid="ignore"):
            transforms = [self._fit_one(name, kind, inputs) for name, kind in self.columns.items()]
            for group in self.options.crosses:
                transforms.append(self._fit_categorical(cross_name(group), group, inputs))
        return FittedFeaturizer(transforms, self.columns, self.encoding)


_SMALL_ROWS = 64  # requests up to this size take the grouped numeric path
_PLAIN = {float, int, bool, type(None)}
_NUMBERS = {float, int}


class _NumericGroup:
    """The plain numeric (no sin/cos) and boolean columns, transformed together for small
    requests.

    One conversion of all their values and a handful of array operations replace several
    numpy calls per column, which dominate the cost of featurizing one row. The arithmetic
    is the per-column path's, element by element, so the results are bit-identical.
    """

    def __init__(
        self,
        members: list[tuple[int, NumericTransform | BooleanTransform]],
        spans: list[tuple[int, int]],
    ):
        self.indices = {i for i, _ in members}
        self.names = [t.column for _, t in members]
        self.fill = np.array([[t.fill] for _, t in members])
        # booleans and unscaled numbers go through (x - 0) / 1, which changes no float
        scales = [getattr(t, "scale", None) or {"mean": 0.0, "scale": 1.0} for _, t in members]
        self.mean = np.array([[s["mean"]] for s in scales])
        self.scale = np.array([[s["scale"]] for s in scales])
        self.scaled = any(getattr(t, "scale", None) for _, t in members)
        self.boolean = np.array([isinstance(t, BooleanTransform) for _, t in members])
        self.has_boolean = bool(self.boolean.any())
        self.readers = [_scalar_bool if b else scalar_float for b in self.boolean]
        rows = [spans[i][0] for i, _ in members]
        # consecutive output rows (no indicator between them) are written through a slice
        self.value_rows: slice | np.ndarray = (
            slice(rows[0], rows[-1] + 1)
            if rows == list(range(rows[0], rows[-1] + 1))
            else np.array(rows)
        )
        self.flagged = np.array([t.indicator for _, t in members], dtype=bool)
        self.flag_rows = [spans[i][0] + 1 for i, t in members if t.indicator]
        getter = operator.itemgetter(*self.names)
        self._get = getter if len(self.names) > 1 else lambda data: (getter(data),)
        self._mean_row, self._scale_row = self.mean[:, 0].copy(), self.scale[:, 0].copy()

    def one_row(self, data: Mapping[str, Any], width: int) -> np.ndarray | None:
        """The (1, width) features of one row of finite ints and floats, when the group is
        all the featurizer has and holds no boolean; else None (the block path handles it).

        The single-instance request is the commonest online call: this is write() for it,
        without the block, the missing-value fill (there is none) and their numpy calls.
        """
        try:
            values = [v for (v,) in self._get(data)]  # each column a one-value list
            if not set(map(type, values)) <= _NUMBERS or not all(map(math.isfinite, values)):
                return None
        except (KeyError, TypeError, ValueError, OverflowError):  # OverflowError: huge ints
            return None
        x = np.array(values, dtype=np.float64)
        out = np.zeros((1, width), dtype=np.float64)  # indicators: 0, nothing is missing
        out[0, self.value_rows] = (x - self._mean_row) / self._scale_row if self.scaled else x
        return out

    def rows(self, data: Mapping[str, Any]) -> int | None:
        """The common length of the group's columns when all are short Python lists (online
        input), else None: the general path then handles them, and any error."""
        try:
            columns = self._get(data)
        except KeyError:
            return None
        if set(map(type, columns)) != {list}:
            return None
        lengths = set(map(len, columns))
        rows = lengths.pop() if len(lengths) == 1 else None
        return rows if rows is not None and rows <= _SMALL_ROWS else None

    def write(self, data: Mapping[str, Any], rows: int, block: np.ndarray) -> None:
        """Fill this group's output rows of ``block`` (features × rows)."""
        columns = self._get(data)
        flat = [v for column in columns for v in column]
        # Validated online values are numbers, booleans or None, which numpy reads as the
        # per-column path does (None -> NaN); anything else (text, ±inf, huge ints) takes
        # the exact per-value path.
        try:
            if not set(map(type, flat)) <= _PLAIN:
                raise TypeError
            x = np.array(flat, dtype=np.float64).reshape(len(self.names), rows)
            if self.has_boolean:
                b = x[self.boolean]
                x[self.boolean] = np.where(np.isfinite(b), b != 0, np.nan)
        except (TypeError, OverflowError):
            x = np.array(
                [
                    [read(v) for v in column]
                    for read, column in zip(self.readers, columns, strict=True)
                ],
                dtype=np.float64,
            ).reshape(len(self.names), rows)
        missing = ~np.isfinite(x)  # ±inf reads as missing, as on the column path
        x = np.where(missing, self.fill, x)
        block[self.value_rows] = (x - self.mean) / self.scale if self.scaled else x
        if self.flag_rows:
            block[self.flag_rows] = missing[self.flagged]


class FittedFeaturizer:
    """A fitted featurizer: columnar inputs → a float64 matrix, identically offline and online.

    The state is plain JSON (``to_json``/``from_json``, ``save``/``load``) and ``transform``
    needs numpy only.
    """

    def __init__(
        self, transforms: Sequence[Transform], input_columns: Mapping[str, str], encoding: str
    ):
        self.transforms = list(transforms)
        self.input_columns = dict(input_columns)
        self.encoding = encoding
        self.feature_names: list[str] = []
        self.categorical_indices: list[int] = []
        self._spans: list[tuple[int, int]] = []
        for transform in self.transforms:
            start = len(self.feature_names)
            self.feature_names += transform.names
            self.categorical_indices += [start + i for i in transform.categorical]
            self._spans.append((start, len(self.feature_names)))
        uses = Counter(name for transform in self.transforms for name in transform.inputs)
        self._shared = [name for name, count in uses.items() if count > 1]
        plain = [
            (i, t)
            for i, t in enumerate(self.transforms)
            if (
                isinstance(t, BooleanTransform)
                or (isinstance(t, NumericTransform) and not t.cyclical)
            )
            and t.column not in self._shared
        ]
        self._group = _NumericGroup(plain, self._spans) if plain else None
        grouped = self._group.indices if self._group else set()
        self._all_transforms = [
            (t, first, last) for t, (first, last) in zip(self.transforms, self._spans, strict=True)
        ]
        self._ungrouped_transforms = [
            w for i, w in enumerate(self._all_transforms) if i not in grouped
        ]
        whole = self._group is not None and not self._ungrouped_transforms
        self._one_row = whole and not self._group.has_boolean
        self._ungrouped = list(
            dict.fromkeys(
                name for i, t in enumerate(self.transforms) if i not in grouped for name in t.inputs
            )
        )
        duplicates = sorted(n for n, k in Counter(self.feature_names).items() if k > 1)
        if duplicates:
            raise FeatureError(
                f"two features would share the name(s) {', '.join(map(repr, duplicates))}",
                hint="rename the data column that collides with a generated feature name",
            )

    def __repr__(self) -> str:
        return (
            f"FittedFeaturizer({len(self.input_columns)} columns → "
            f"{len(self.feature_names)} features, encoding={self.encoding!r})"
        )

    def transform(self, data: Mapping[str, Any]) -> np.ndarray:
        """Features of ``data`` (column name → array or list): float64, (rows, features),
        C-contiguous. Missing input columns raise FeatureError; extra columns are ignored."""
        group = self._group
        if self._one_row:
            out = group.one_row(data, len(self.feature_names))
            if out is not None:
                return out
        rows = group.rows(data) if group else None
        if rows is None:  # the general path, column by column
            group = None
            inputs = Inputs(data, list(self.input_columns), shared=self._shared)
            rows = inputs.rows
        else:  # a short online request: plain numeric columns go together, the rest as usual
            inputs = Inputs(data, self._ungrouped, shared=self._shared)
            if self._ungrouped and inputs.rows != rows:
                raise FeatureError(
                    f"input columns differ in length: {rows} and {inputs.rows} values",
                    hint="pass columns of equal length, one value per row",
                )
        work = self._ungrouped_transforms if group else self._all_transforms
        prepared = [(t, t.prepare(inputs), first, last) for t, first, last in work]
        width = len(self.feature_names)
        out = np.empty((rows, width), dtype=np.float64)
        # Outputs are built in a (features × rows) block per chunk of rows and copied in
        # transposed: writing one strided column at a time into `out` is ~10x slower.
        chunk = max(1, min(rows, _BLOCK_CELLS // max(width, 1)))
        block = np.empty((width, chunk), dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # standardizing extreme values
            for start in range(0, rows, chunk):
                stop = min(rows, start + chunk)
                view = block[:, : stop - start]
                for transform, state, first, last in prepared:
                    transform.write(state, start, stop, view[first:last])
                if group:  # small requests are a single chunk
                    group.write(data, rows, view)
                out[start:stop] = view.T
        return out

    def to_json(self) -> dict:
        """The whole fitted state as plain JSON (deterministic for the same data)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "encoding": self.encoding,
            "input_columns": dict(self.input_columns),
            "feature_names": list(self.feature_names),
            "categorical_indices": list(self.categorical_indices),
            "transforms": [t.to_json() for t in self.transforms],
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> FittedFeaturizer:
        """Rebuild a fitted featurizer from ``to_json`` output; refuses inconsistent state."""
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise FeatureError(
                "not a saved mlsd featurizer (no 'format': 'mlsd.featurizer')",
                hint="pass the output of FittedFeaturizer.to_json()",
            )
        if state.get("version") != VERSION:
            raise FeatureError(
                f"saved featurizer has version {state.get('version')!r}; this mlsd reads "
                f"version {VERSION}",
                hint="re-fit and save the featurizer with this version of mlsd",
            )
        try:
            transforms = [transform_from_json(t) for t in state["transforms"]]
            fitted = cls(transforms, state["input_columns"], state["encoding"])
        except KeyError as exc:
            raise FeatureError(
                f"saved featurizer lacks the key {exc}", hint="re-fit and save the featurizer"
            ) from exc
        if fitted.feature_names != list(state.get("feature_names", [])):
            raise FeatureError(
                "saved featurizer is inconsistent: its feature_names do not match its transforms",
                hint="the file was edited or corrupted; re-fit and save the featurizer",
            )
        return fitted


def frame_inputs(frame: Any, names: Iterable[str]) -> dict[str, Any]:
    """The ``names`` columns of a pandas frame as ``transform`` reads them: their arrays
    (categoricals and nullable types kept as they are, no copy)."""
    return {c: frame[c].array for c in names}


def save(featurizer: FittedFeaturizer, path: str | Path) -> Path:
    """Write the fitted featurizer to a JSON file (byte-identical for identical state),
    atomically: a crash leaves the old file or none, never half of one."""
    text = json.dumps(featurizer.to_json(), indent=1, allow_nan=False)
    return atomic_write_bytes(Path(path), (text + "\n").encode())


def load(path: str | Path) -> FittedFeaturizer:
    """Read a fitted featurizer written by ``save``."""
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise FeatureError(
            f"{path} does not exist", hint="pass the featurizer.json written by save()"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FeatureError(
            f"{path} is not valid JSON: {exc}", hint="re-fit and save the featurizer"
        ) from exc
    return FittedFeaturizer.from_json(state)
