"""``mlsd predict``: score a CSV or Parquet file with the model the server would answer with.

The input is streamed in chunks of ``serving.batch_rows`` rows, so a file larger than memory
works. Each chunk is validated with the online validator's rules, compiled to vectorised
checks over Arrow and numpy columns: a numeric column is compared as a whole, and a
categorical, boolean or datetime column is checked once per distinct value with the online
checker itself. The online checker also writes the text of every problem or flag, so a
reason reads exactly as the server would say it; per-row Python runs only for rows that are
rejected or flagged. Accepted rows go through the package's featurizer and model
(``Package.predict_matrix``) and come out with the columns the server answers with. A
background thread reads, validates and featurizes the next chunk while the model (C code,
without the GIL) predicts the current one.

Output (Parquet or CSV, by extension) and rejects are written incrementally under a
temporary name beside the final one and renamed at the end: a crash never leaves half an
output under the final name.

CSV has no types: every CSV column is read as text, and a numeric field's text is parsed with
Arrow's number parser ("12" is 12, "abc" is a wrong type). Categorical and boolean text that
reads as a number is compared as that number (1, 1.0 and "1" are the same category), as
Arrow's type inference did when the training data was read. Id columns of a CSV input keep
their text.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlsd.errors import DataError
from mlsd.serving.model import ServedModel, ServedRecommender, ServingError, load_served
from mlsd.stages import progress_bar
from mlsd.tasks import LABEL, PER_CLASS, get_task
from mlsd.workspace import Workspace

if TYPE_CHECKING:
    import pyarrow as pa

    from mlsd.spec import SystemSpec

# The CSV cells that are missing values (the same list mlsd.data.sources reads data with).
NULL_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"]
REASON = "reason"
FLAGS = "flags"
MODEL_VERSION = "model_version"
RANK = "rank"  # ranking tasks: the row's place within its group, 1 = first
# The number syntax Arrow's string → double cast accepts (finite values, and the non-finite).
_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NONFINITE_TEXT = re.compile(r"[+-]?(inf|infinity|nan)", re.IGNORECASE)
_NUMBER_PATTERN = rf"^({_FLOAT_TEXT.pattern}|(?i:{_NONFINITE_TEXT.pattern}))$"
# Arrow's CSV inference reads these as booleans (and "1"/"0" as integers first).
_CSV_BOOLEANS = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
}


def _format(path: Path, what: str) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    if suffixes and suffixes[-1] in (".csv", ".tsv"):
        return "csv"
    raise DataError(
        f"cannot tell the format of the {what} {path} from its name",
        hint="name it .csv, .tsv or .parquet",
    )


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def default_rejects_path(output: Path) -> Path:
    """Where rejected rows go unless told: ``scored.parquet`` → ``scored.rejects.parquet``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.rejects{output.suffix}")


def csv_value(text: str | None) -> Any:
    """The value a CSV cell stands for, as Arrow's type inference reads it: an int, a float
    (inf and nan included), True/False, else the text itself."""
    if text is None:
        return None
    if _INT_TEXT.fullmatch(text):
        return int(text)
    if _FLOAT_TEXT.fullmatch(text) or _NONFINITE_TEXT.fullmatch(text):
        return float(text)
    return _CSV_BOOLEANS.get(text, text)


# --- checks of one field over one chunk -----------------------------------------------------


@dataclass
class Coded:
    """A dictionary-encoded column the featurizer reads by duck typing (like a pandas
    Categorical): ``codes`` index ``categories``; code -1 is missing."""

    codes: np.ndarray
    categories: list

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows: np.ndarray) -> Coded:
        return Coded(self.codes[rows], self.categories)


@dataclass
class Checked:
    """One field of one chunk, checked: the featurizer's input for every row, which rows
    have a problem (rejected) or a flag (scored, noted), and the text of those rows."""

    values: Any  # float64 array or Coded
    problem: np.ndarray | None  # bool per row, None when no row has one
    flag: np.ndarray | None
    describe: Callable[[np.ndarray], list[str]]  # rows → the online checker's text


def _any(mask: np.ndarray | None) -> np.ndarray | None:
    return mask if mask is not None and mask.any() else None


def _valid_mask(array: pa.Array) -> np.ndarray | None:
    """True where the value is present; None when nothing is missing."""
    if array.null_count == 0:
        return None
    return array.is_valid().to_numpy(zero_copy_only=False)


class FieldCheck:
    """The online checker of one input field, applied to whole Arrow columns."""

    def __init__(self, item: dict, checker: Callable, on_invalid: str):
        self.name = item["name"]
        self.kind = item["type"]
        self.low, self.high = item.get("min"), item.get("max")
        self.domain = item.get("domain")
        self.checker = checker  # the online per-value check: value → (value, problem, flag)
        self.reject = on_invalid == "reject"
        from mlsd.values import category_key

        self._known = None if self.domain is None else {category_key(v) for v in self.domain}
        self._key = category_key

    def __call__(self, array: pa.Array, from_csv: bool) -> Checked:
        import pyarrow as pa

        if pa.types.is_dictionary(array.type) and self.kind == "numeric":
            array = array.dictionary.take(array.indices)
        if self.kind == "numeric":
            return self._numeric(array, from_csv)
        if self.kind == "datetime" and (
            pa.types.is_timestamp(array.type) or pa.types.is_date(array.type)
        ):
            return self._timestamps(array)
        return self._distinct(array, from_csv)

    def _text(self, value: Any) -> str:
        _, problem, flag = self.checker(value)
        return f"{self.name}: {problem or flag or 'invalid value'}"

    def _numeric(self, array: pa.Array, from_csv: bool) -> Checked:
        import pyarrow as pa
        import pyarrow.compute as pc

        kind = array.type
        wrong = None  # present values that are not numbers
        if pa.types.is_null(kind):
            x = np.full(len(array), np.nan)
            return Checked(x, None, None, lambda rows: [])
        if from_csv and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            try:
                numbers = pc.cast(array, pa.float64())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                parses = pc.match_substring_regex(array, _NUMBER_PATTERN).fill_null(False)
                blank = pa.scalar(None, array.type)
                numbers = pc.cast(pc.if_else(parses, array, blank), pa.float64())
                wrong = ~parses.to_numpy(zero_copy_only=False)
                valid = _valid_mask(array)
                if valid is not None:
                    wrong &= valid

            def python(rows: np.ndarray) -> list:
                return [csv_value(v) for v in array.take(rows).to_pylist()]

        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
            numbers = pc.cast(array, pa.float64(), safe=False)

            def python(rows: np.ndarray) -> list:
                return array.take(rows).to_pylist()

        else:  # booleans, text (outside CSV), dates …: not numbers, as online
            valid = _valid_mask(array)
            wrong = np.ones(len(array), dtype=bool) if valid is None else valid
            x = np.full(len(array), np.nan)

            def describe_wrong(rows: np.ndarray) -> list[str]:
                return [self._text(v) for v in array.take(rows).to_pylist()]

            return Checked(x, _any(wrong), None, describe_wrong)

        x = numbers.to_numpy(zero_copy_only=False)  # nulls become NaN; may be read-only
        problem = wrong
        flag = None
        # Two reductions settle the common case (every value finite and inside the range)
        # without allocating a mask; min and max are NaN when any value is NaN.
        low, high = (x.min(), x.max()) if len(x) else (0.0, 0.0)
        if not (np.isfinite(low) and np.isfinite(high)):
            nonfinite = ~np.isfinite(x)
            valid = _valid_mask(numbers)
            if valid is not None:
                nonfinite &= valid  # a missing value is fine; a NaN or inf is not
            problem = nonfinite if problem is None else problem | nonfinite
        below = self.low is not None and low < self.low
        above = self.high is not None and high > self.high
        if below or above or np.isnan(low) or np.isnan(high):  # NaN hides the true min/max
            outside = np.zeros(len(x), dtype=bool)
            if self.low is not None:
                outside |= x < self.low
            if self.high is not None:
                outside |= x > self.high
            if outside.any() and self.reject:
                problem = outside if problem is None else problem | outside
            elif outside.any():
                flag = outside

        def describe(rows: np.ndarray) -> list[str]:
            return [self._text(v) for v in python(rows)]

        return Checked(x, _any(problem), _any(flag), describe)

    def _timestamps(self, array: pa.Array) -> Checked:
        """Arrow timestamps and dates (Parquet): valid as they are; the featurizer reads
        them as datetime64 (a JSON request sends the same instants as ISO strings)."""
        import pyarrow as pa

        if pa.types.is_date(array.type):
            array = array.cast(pa.timestamp("ms"))
        values = array.to_numpy(zero_copy_only=False).astype("datetime64[ms]")
        return Checked(values, None, None, lambda rows: [])

    def _categorical_value(self, text: Any) -> Any:
        """A CSV cell of a categorical field: its text when that is a known category, else
        the number or boolean it reads as."""
        if text is None or (self._known is not None and self._key(text) in self._known):
            return text
        return csv_value(text)

    def _distinct(self, array: pa.Array, from_csv: bool) -> Checked:
        """Run the online checker once per distinct value of the chunk."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_null(array.type):
            codes, values = np.full(len(array), -1, dtype=np.int32), []
        else:
            try:
                encoded = (
                    array if pa.types.is_dictionary(array.type) else pc.dictionary_encode(array)
                )
                codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
                values = encoded.dictionary.to_pylist()
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
                values = array.to_pylist()  # types Arrow cannot hash: one value per row
                codes = np.arange(len(values), dtype=np.int64)
                codes[np.asarray([v is None for v in values], dtype=bool)] = -1
        if from_csv and self.kind == "categorical":
            values = [self._categorical_value(v) for v in values]
        elif from_csv and self.kind == "boolean":
            values = [csv_value(v) for v in values]
        results = [self.checker(v) for v in values]
        results.append(self.checker(None))  # code -1 (missing) picks this last entry
        problem = np.array([r[1] is not None for r in results], dtype=bool)
        flag = np.array([r[2] is not None for r in results], dtype=bool)
        texts = [f"{self.name}: {r[1] or r[2]}" for r in results]
        used = Coded(codes, [r[0] for r in results[:-1]])

        def describe(rows: np.ndarray) -> list[str]:
            return [texts[c] for c in codes[rows].tolist()]

        return Checked(
            used,
            _any(problem[codes]) if problem.any() else None,
            _any(flag[codes]) if flag.any() else None,
            describe,
        )


def _texts(found: list[tuple[np.ndarray, list[str]]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row "; "-joined texts of (rows, texts) pairs in field order: (rows, texts)."""
    per_row: dict[int, list[str]] = {}
    for rows, texts in found:
        for row, text in zip(rows.tolist(), texts, strict=True):
            per_row.setdefault(row, []).append(text)
    rows = np.fromiter(per_row.keys(), dtype=np.int64, count=len(per_row))
    order = np.argsort(rows, kind="stable")
    joined = ["; ".join(t) for t in per_row.values()]
    return rows[order], np.asarray(joined, dtype=object)[order]


# --- reading ----------------------------------------------------------------------------------


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=_delimiter(path)), None)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not a UTF-8 CSV: {exc}", hint="save it as UTF-8") from exc
    if not header:
        raise DataError(f"{path} is empty: no header line", hint="pass a CSV with a header")
    return header


def _csv_block_size(path: Path, batch_rows: int) -> int:
    """A block size that holds about ``batch_rows`` rows, from the first MB's line length."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
    lines = max(head.count(b"\n"), 1)
    per_row = len(head) / lines
    return int(min(max(per_row * batch_rows * 1.1, 1 << 16), 1 << 28))


class Source:
    """The input: a CSV or Parquet file, or a folder of Parquet files (read in name order);
    its column names, row count when known, and its chunks."""

    def __init__(self, path: Path, batch_rows: int):
        self.path = Path(path)
        self.batch_rows = batch_rows
        self.rows: int | None = None
        if self.path.is_dir():
            self.files = sorted(
                p for p in self.path.rglob("*") if p.suffix.lower() in (".parquet", ".pq")
            )
            if not self.files:
                raise DataError(
                    f"the input folder {self.path} holds no Parquet file",
                    hint="pass a CSV or Parquet file, or a folder of .parquet files",
                )
            self.format = "parquet"
        elif self.path.is_file():
            self.files = [self.path]
            self.format = _format(self.path, "input")
        else:
            raise DataError(
                f"the input {self.path} does not exist",
                hint="pass a CSV or Parquet file (or a folder of Parquet files) with --input",
            )
        self.from_csv = self.format == "csv"
        if self.from_csv:
            self.names = _csv_header(self.path)
            return
        import pyarrow.parquet as pq

        self._parquet = []
        for file in self.files:
            try:
                self._parquet.append(pq.ParquetFile(file))
            except Exception as exc:  # pyarrow raises several types for a damaged file
                raise DataError(
                    f"{file} is not readable as Parquet: {exc}",
                    hint="check that it is a complete Parquet file",
                ) from exc
        self.names = list(self._parquet[0].schema_arrow.names)
        for file, part in zip(self.files[1:], self._parquet[1:], strict=True):
            if list(part.schema_arrow.names) != self.names:
                raise DataError(
                    f"{file} has other columns than {self.files[0]}: "
                    f"{part.schema_arrow.names} against {self.names}",
                    hint="give every file of the folder the same columns, in the same order",
                )
        self.rows = sum(part.metadata.num_rows for part in self._parquet)

    def _batches(self) -> Iterator[pa.RecordBatch]:
        if not self.from_csv:
            for part in self._parquet:
                yield from part.iter_batches(batch_size=self.batch_rows)
            return
        import pyarrow.csv as pcsv

        yield from pcsv.open_csv(self.path, **csv_options(self.path, self.names, self.batch_rows))

    def chunks(self) -> Iterator[pa.RecordBatch]:
        """Record batches of exactly ``batch_rows`` rows (the last may be shorter)."""
        import pyarrow as pa

        size, pending, held = self.batch_rows, [], 0
        try:
            for batch in self._batches():
                if not pending and batch.num_rows == size:
                    yield batch  # the common case: no copy
                    continue
                pending.append(batch)
                held += batch.num_rows
                while held >= size:
                    table = pa.Table.from_batches(pending)
                    yield from table.slice(0, size).combine_chunks().to_batches()
                    pending, held = table.slice(size).to_batches(), held - size
        except (pa.ArrowException, OSError) as exc:
            raise DataError(
                f"{self.path} is not readable as {self.format.upper()}: {exc}",
                hint="check the line or part named above (a wrong number of fields, an "
                "unclosed quote, a damaged file)",
            ) from exc
        if held:
            yield from pa.Table.from_batches(pending).combine_chunks().to_batches()

    def schema(self) -> pa.Schema:
        """The schema of the input as read (every CSV column as text)."""
        import pyarrow as pa

        if self.from_csv:
            return pa.schema([pa.field(n, pa.string()) for n in self.names])
        return self._parquet[0].schema_arrow


def csv_options(path: Path, names: list[str], batch_rows: int) -> dict[str, Any]:
    """How a CSV input is read (every column as text, mlsd's missing values), as the keyword
    arguments of ``pyarrow.csv.open_csv``."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    return {
        "read_options": pcsv.ReadOptions(block_size=_csv_block_size(path, batch_rows)),
        "parse_options": pcsv.ParseOptions(delimiter=_delimiter(path)),
        "convert_options": pcsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            strings_can_be_null=True,
            null_values=NULL_VALUES,
        ),
    }


# --- writing ----------------------------------------------------------------------------------


class Sink:
    """One output file, written batch by batch under a temporary name beside ``path`` and
    renamed to ``path`` by ``commit``; ``abort`` removes the temporary file.

    Writes happen behind the caller, one batch at a time, in a thread of their own: encoding
    and compressing a chunk overlaps with scoring the next (pyarrow releases the GIL).
    """

    def __init__(self, path: Path, schema: pa.Schema):
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        self.path = Path(path)
        self.format = _format(self.path, "output")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.parent / f".{self.path.name}.{uuid.uuid4().hex[:12]}.tmp"
        if self.format == "parquet":
            self._writer = pq.ParquetWriter(self.tmp, schema)
        else:
            options = pcsv.WriteOptions(delimiter=_delimiter(self.path))
            self._writer = pcsv.CSVWriter(self.tmp, schema, write_options=options)
        self.rows = 0
        self.committed = False
        self._behind = ThreadPoolExecutor(1, thread_name_prefix="mlsd-batch-write")
        self._pending: Future | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        """Append one batch (after the previous one is written: at most one in flight)."""
        self._wait()
        self._pending = self._behind.submit(self._writer.write_batch, batch)
        self.rows += batch.num_rows

    def _wait(self) -> None:
        """Let the batch in flight finish; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def commit(self) -> Path:
        """Close the file, make it durable and give it its final name."""
        try:
            self._wait()
        finally:
            self._behind.shutdown()
        self._writer.close()
        with open(self.tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.tmp, self.path)
        self.committed = True
        return self.path

    def abort(self) -> None:
        """Drop the temporary file, or the committed one: the run failed after it was renamed
        (rejects are committed before the scores; they never stand without them)."""
        if self.committed:
            self.path.unlink(missing_ok=True)
            return
        with contextlib.suppress(Exception):  # already failing; the file goes anyway
            self._wait()
        self._behind.shutdown()
        with contextlib.suppress(Exception):
            self._writer.close()
        self.tmp.unlink(missing_ok=True)


def _plain(kind: pa.DataType) -> pa.DataType:
    """Dictionary types as their value type (CSV writers take plain columns only)."""
    import pyarrow as pa

    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _plain_column(array: pa.Array) -> pa.Array:
    import pyarrow as pa

    if pa.types.is_dictionary(array.type):
        return array.dictionary.take(array.indices)
    return array


# --- outputs ----------------------------------------------------------------------------------


class Outputs:
    """The prediction columns the server answers with, as Arrow arrays, vectorised: the
    same values as ``mlsd.serving.model.format_outputs`` (non-finite numbers are null), a
    per-class field as one ``probability_<class>`` column per class."""

    def __init__(self, signature: dict, label: str, flags: bool):
        import pyarrow as pa

        output = signature["output"]
        self.task = get_task(output["task"])
        self.label = label
        self.flags = flags
        self.classes = output.get("classes") or []
        self.threshold = output.get("threshold", 0.5)
        self._classes = pa.array(self.classes)
        fields = []
        for field in self.task.outputs:
            if field.kind == LABEL:
                fields.append(pa.field(field.name, self._classes.type))
            elif field.kind == PER_CLASS:
                fields += [pa.field(f"probability_{c}", pa.float64()) for c in self.classes]
            else:
                fields.append(pa.field(field.name, pa.float64()))
        fields.append(pa.field(MODEL_VERSION, pa.string()))
        if flags:
            fields.append(pa.field(FLAGS, pa.string()))
        self.fields = fields

    @staticmethod
    def _numbers(values: np.ndarray) -> pa.Array:
        import pyarrow as pa

        values = np.ascontiguousarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        return pa.array(values, mask=None if finite.all() else ~finite)

    def arrays(self, pred: np.ndarray, flags: pa.Array | None) -> list[pa.Array]:
        """The output columns for predictions ``pred`` of ``len(pred)`` rows."""
        import pyarrow as pa

        n = len(pred)
        pred = pred.astype(np.float64, copy=False)  # as the server compares: Python floats
        out = []
        values = self.task.output_values(pred, self.threshold)
        for field, v in zip(self.task.outputs, values, strict=True):
            if field.kind == LABEL:
                out.append(self._classes.take(pa.array(v)))
            elif field.kind == PER_CLASS:
                out += [self._numbers(v[:, i]) for i in range(v.shape[1])]
            else:
                out.append(self._numbers(v))
        out.append(pa.repeat(pa.scalar(self.label, pa.string()), n))
        if self.flags:
            out.append(flags if flags is not None else pa.nulls(n, pa.string()))
        return out


# --- the job ----------------------------------------------------------------------------------


class Scorer:
    """Validates and scores record batches with one served model."""

    def __init__(self, served: ServedModel, on_invalid: str, ids: list[str]):
        signature = served.package.signature
        self.served = served
        # the online validator's own per-value checkers (compiled with the same on_invalid)
        checkers = served.validator.checkers
        self.fields = [
            FieldCheck(item, checkers[item["name"]], on_invalid) for item in signature["inputs"]
        ]
        self.ids = ids
        self.flag_policy = on_invalid == "flag"
        self.outputs = Outputs(signature, served.label, self.flag_policy)

    def schemas(self, input_schema: pa.Schema) -> tuple[pa.Schema, pa.Schema]:
        """The output schema and the rejects schema."""
        import pyarrow as pa

        ids = [pa.field(n, _plain(input_schema.field(n).type)) for n in self.ids]
        out = pa.schema(ids + self.outputs.fields)
        plain = [pa.field(f.name, _plain(f.type)) for f in input_schema]
        return out, pa.schema([*plain, pa.field(REASON, pa.string())])

    def prepare(self, batch: pa.RecordBatch, from_csv: bool) -> Prepared:
        """Validate one chunk and featurize its accepted rows (everything but the model)."""
        import pyarrow as pa

        n = batch.num_rows
        checked = [f(batch.column(f.name), from_csv) for f in self.fields]
        bad = np.zeros(n, dtype=bool)
        for c in checked:
            if c.problem is not None:
                bad |= c.problem
        out = Prepared(batch)
        if bad.any():
            rows, reasons = _texts(
                [
                    (r, c.describe(r))
                    for c in checked
                    if c.problem is not None
                    for r in [np.flatnonzero(c.problem)]
                ]
            )
            original = [_plain_column(col) for col in batch.filter(pa.array(bad)).columns]
            out.rejected = pa.record_batch(
                [*original, pa.array(reasons, type=pa.string())],
                names=[*batch.schema.names, REASON],
            )
            out.keep = ~bad
        keep = out.keep
        kept = n if keep is None else int(keep.sum())
        if not kept:
            return out
        inputs = {
            f.name: c.values if keep is None else c.values[keep]
            for f, c in zip(self.fields, checked, strict=True)
        }
        out.features = self.served.package.featurizer.transform(inputs)
        if self.flag_policy:
            found = [
                (r, c.describe(r))
                for c in checked
                if c.flag is not None
                for r in [np.flatnonzero(c.flag if keep is None else c.flag & keep)]
                if len(r)
            ]
            if found:
                rows, texts = _texts(found)
                column = np.full(n, None, dtype=object)
                column[rows] = texts
                out.flags = pa.array(column if keep is None else column[keep], type=pa.string())
                out.flagged = len(rows)
        return out

    def finish(self, prepared: Prepared) -> pa.RecordBatch | None:
        """The scored rows of a prepared chunk: ids, the model's outputs, model_version."""
        import pyarrow as pa

        if prepared.features is None:
            return None
        # Package.predict_matrix, in two steps so that featurizing runs ahead in a thread
        pred = self.served.package.predict_features(prepared.features)
        ids = [prepared.batch.column(name) for name in self.ids]
        if prepared.keep is not None:
            mask = pa.array(prepared.keep)
            ids = [col.filter(mask) for col in ids]
        columns = [_plain_column(c) for c in ids] + self.outputs.arrays(pred, prepared.flags)
        return pa.record_batch(columns, names=[*self.ids, *(f.name for f in self.outputs.fields)])


@dataclass
class Prepared:
    """One chunk, validated and featurized, waiting for the model."""

    batch: pa.RecordBatch
    keep: np.ndarray | None = None  # rows to score; None: every row
    features: np.ndarray | None = None  # the featurized kept rows; None: no row to score
    rejected: pa.RecordBatch | None = None
    flags: pa.Array | None = None
    flagged: int = 0


@dataclass
class Scored:
    """What became of one chunk: its rows, the scored ones (None: none scored), the rejected
    ones with their reasons, and how many were flagged."""

    rows: int
    result: pa.RecordBatch | None
    rejected: pa.RecordBatch | None
    flagged: int

    @classmethod
    def of(cls, scorer: Scorer, batch: pa.RecordBatch, from_csv: bool) -> Scored:
        """Validate and score one chunk (without reading ahead)."""
        prepared = scorer.prepare(batch, from_csv)
        return cls(batch.num_rows, scorer.finish(prepared), prepared.rejected, prepared.flagged)


def score_here(source: Source, scorer: Scorer) -> Iterator[Scored]:
    """The local engine: the chunks of ``source`` scored in this process, in order, the next
    chunk validated and featurized in a thread while the model scores this one."""
    chunks = read_ahead(source.chunks(), lambda b: scorer.prepare(b, source.from_csv))
    try:
        for prepared in chunks:
            result = scorer.finish(prepared)
            yield Scored(prepared.batch.num_rows, result, prepared.rejected, prepared.flagged)
    finally:
        chunks.close()  # stop reading ahead before the caller's temporary files go


def read_ahead(items: Iterator[Any], work: Callable[[Any], Any], depth: int = 2) -> Iterator[Any]:
    """``work(item)`` for each item, computed in a background thread up to ``depth`` items
    ahead of the consumer (the model's C code releases the GIL, so reading, validating and
    featurizing the next chunk overlap with predicting this one). Errors are re-raised in the
    consumer; closing the generator stops the thread."""
    import queue
    import threading

    done = object()
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                results.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set() or not put((work(item), None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer
            put((None, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # e.g. a generator holding the input file open

    thread = threading.Thread(target=produce, name="mlsd-batch-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            value, error = results.get()
            if error is not None:
                raise error
            if value is done:
                return
            yield value
    finally:
        stop.set()
        thread.join()


def with_rank(table: pa.Table, group: str) -> pa.Table:
    """``table`` with a ``rank`` column: each row's place in its group by descending score,
    1 first (equal scores keep their input order; a row without a score has no rank)."""
    import pyarrow as pa

    frame = table.select([group, "score"]).to_pandas()
    rank = frame.groupby(group, sort=False, dropna=False)["score"].rank(
        method="first", ascending=False
    )
    return table.append_column(RANK, pa.array(rank.astype("Int64"), type=pa.int64()))


def _known(spec: SystemSpec, signature: dict) -> set[str]:
    """Columns that are not unknown fields: inputs, ids, the entity id and the target."""
    inputs = {i["name"] for i in signature["inputs"]}
    return inputs | set(signature.get("id_columns", [])) | {spec.problem.id, spec.problem.target}


def _check_columns(spec: SystemSpec, served: ServedModel, names: list[str], path: Path) -> None:
    signature = served.package.signature
    inputs = [i["name"] for i in signature["inputs"]]
    missing = [name for name in inputs if name not in names]
    if missing:
        shown = ", ".join(map(repr, missing[:20])) + (" …" if len(missing) > 20 else "")
        raise DataError(
            f"{path} lacks {len(missing)} input column(s) of model {served.label}: {shown}",
            hint="add the column(s) to the file (an empty value is a missing value), or score "
            "with the model they belong to (--model)",
        )
    if spec.serving.unknown_fields == "reject":
        unknown = [name for name in names if name not in _known(spec, signature)]
        if unknown:
            raise DataError(
                f"{path} has column(s) the model does not know: {', '.join(unknown[:20])}, "
                "and serving.unknown_fields is 'reject'",
                hint="drop the column(s) from the file, or set serving.unknown_fields: ignore",
            )


def _distinct_paths(input_path: Path, output_path: Path, rejects_path: Path) -> None:
    named = {"--input": input_path, "--output": output_path, "--rejects": rejects_path}
    seen: dict[Path, str] = {}
    for flag, path in named.items():
        resolved = path.resolve()
        if resolved in seen:
            raise DataError(
                f"{seen[resolved]} and {flag} are the same file ({path})",
                hint="write the scores and the rejects to new files beside the input",
            )
        seen[resolved] = flag


def predict_batch(
    spec: SystemSpec,
    input_path: Path,
    output_path: Path,
    *,
    ref: str = "champion",
    rejects_path: Path | None = None,
    workspace: Workspace | None = None,
    progress: bool | None = None,
    engine: Callable[[Source, Scorer], Iterator[Scored]] = score_here,
) -> dict:
    """Score ``input_path`` (CSV or Parquet, or a folder of Parquet files) with model
    ``ref`` into ``output_path``.

    Rows that fail validation go to ``rejects_path`` (default ``<output stem>.rejects.<ext>``)
    with their original columns and a ``reason``; it is written only when a row is rejected
    (a stale one from an earlier run is removed). ``engine`` scores the chunks, in order:
    :func:`score_here` in this process, or :func:`mlsd.engine.ray_batch.on_ray` on a Ray
    cluster; the files are written here either way. Returns the summary: rows, scored,
    rejected, flagged, model_version, output, rejects, seconds, rows_per_s, unknown_columns.
    """
    started = time.perf_counter()
    workspace = workspace or Workspace.for_spec(spec)
    output_path = Path(output_path)
    rejects_path = Path(rejects_path) if rejects_path else default_rejects_path(output_path)
    _format(output_path, "output")
    _format(rejects_path, "rejects file")
    source = Source(Path(input_path), spec.serving.batch_rows)
    _distinct_paths(source.path, output_path, rejects_path)
    served = load_served(workspace.root, spec.name, ref, spec.serving)
    if isinstance(served, ServedRecommender):
        raise ServingError(
            f"version {served.label} of {spec.name} is a recommender: it takes users, not rows",
            hint="write every user's recommendations with mlsd recommend --output FILE",
        )
    _check_columns(spec, served, source.names, source.path)
    signature = served.package.signature
    group = spec.problem.group if get_task(signature["output"]["task"]).grouped else None
    wanted = [*signature.get("id_columns", []), spec.problem.id, group]
    ids = list(dict.fromkeys(n for n in wanted if n and n in source.names))
    scorer = Scorer(served, spec.serving.on_invalid, ids)
    if group is not None and group not in source.names:
        raise DataError(
            f"{source.path} has no column {group!r}: a ranking model ranks the rows of each "
            "group (problem.group)",
            hint=f"add the {group} column to the input",
        )
    out_schema, reject_schema = scorer.schemas(source.schema())
    held: list[pa.RecordBatch] = []  # ranking: every scored row, ranked once all are in

    rows = scored = rejected = flagged = 0
    # ranked rows are written once all are scored
    sink = Sink(output_path, out_schema) if group is None else None
    rejects = None
    bar = progress_bar(source.rows, "scoring", show=progress)
    chunks = engine(source, scorer)
    try:
        for chunk in chunks:
            rows += chunk.rows
            flagged += chunk.flagged
            if chunk.result is not None:
                if group is None:
                    sink.write(chunk.result)
                else:
                    held.append(chunk.result)
                scored += chunk.result.num_rows
            if chunk.rejected is not None:
                if rejects is None:
                    rejects = Sink(rejects_path, reject_schema)
                rejects.write(chunk.rejected)
                rejected += chunk.rejected.num_rows
            bar.update(chunk.rows)
        if group is not None:
            import pyarrow as pa

            ranked = with_rank(pa.Table.from_batches(held, schema=out_schema), group)
            sink = Sink(output_path, ranked.schema)
            for part in ranked.to_batches(max_chunksize=spec.serving.batch_rows):
                sink.write(part)
        if rejects is not None:
            rejects.commit()
        elif rejects_path.exists():
            rejects_path.unlink()  # a stale rejects file from an earlier run
        sink.commit()
    except BaseException:
        chunks.close()  # stop the engine before the temporary files go
        for open_sink in (sink, rejects):
            if open_sink is not None:
                open_sink.abort()
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "scored": scored,
        "rejected": rejected,
        "flagged": flagged,
        "model_version": served.label,
        "model_ref": str(ref),
        "input": str(source.path),
        "output": str(output_path),
        "rejects": str(rejects_path) if rejected else None,
        "unknown_columns": [n for n in source.names if n not in _known(spec, signature)],
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
    }
