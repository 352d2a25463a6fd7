"""The prediction log's READER: finished segments read with DuckDB, for monitoring and
retraining (the server never imports it: see :mod:`mlsd.predlog.writer` for the layout and
the writer). DuckDB and pyarrow are imported inside the functions that need them. Given the
package signature's input types (``inputs=``), each input field is read with its type
instead of the one DuckDB infers from the JSON.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlsd.predlog.writer import (
    FEEDBACK,
    PREDICTIONS,
    REJECTS,
    SHADOW,
    LogError,
    log_folder,
    segment_files,
)
from mlsd.timestamps import epoch
from mlsd.workspace import Workspace

if TYPE_CHECKING:
    import duckdb
    import pyarrow

_ROUTING = [("experiment", "VARCHAR"), ("arm", "VARCHAR"), ("unit", "VARCHAR"), ("p", "DOUBLE")]
# a ranked item (/v1/rank): its request's group and the 1-based position it was given
_RANKING = [("group", "VARCHAR"), ("position", "BIGINT")]
_PREDICTION_META = [
    "request_id",
    "instance",
    "ts",
    "time",
    "model_version",
    "latency_ms",
    "flags",
    *(name for name, _ in _ROUTING),
    *(name for name, _ in _RANKING),
]


def input_column(name: str) -> str:
    """The column of input field ``name`` in a read of the log: ``input_`` prefixed when a
    column of the log's own has the name (a feature called ``time`` is ``input_time``)."""
    return f"input_{name}" if name.lower() in {c.lower() for c in _PREDICTION_META} else name


_EMPTY_PREDICTIONS = (
    "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS instance, NULL::DOUBLE AS ts, "
    "NULL::TIMESTAMPTZ AS time, NULL::VARCHAR AS model_version, NULL::DOUBLE AS latency_ms, "
    "NULL::VARCHAR[] AS flags, NULL::VARCHAR AS experiment, NULL::VARCHAR AS arm, "
    'NULL::VARCHAR AS unit, NULL::DOUBLE AS p, NULL::VARCHAR AS "group", '
    "NULL::BIGINT AS position WHERE false"
)
_EMPTY_SHADOW = (
    "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS instance, NULL::DOUBLE AS ts, "
    "NULL::TIMESTAMPTZ AS time, NULL::VARCHAR AS model_version, NULL::DOUBLE AS latency_ms, "
    "NULL::VARCHAR AS experiment, NULL::VARCHAR AS arm WHERE false"
)
_EMPTY_FEEDBACK = (
    "SELECT NULL::VARCHAR AS request_id, NULL::BIGINT AS instance, NULL::VARCHAR AS label, "
    "NULL::DOUBLE AS ts, NULL::TIMESTAMPTZ AS time, NULL::DOUBLE AS reward WHERE false"
)


def sql_identifier(name: str) -> str:
    """``name`` quoted as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    """``text`` quoted as a DuckDB string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def _columns(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, Any]:
    """Column name -> DuckDB type of ``source``, binding it once (inference reads the files)."""
    rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    return {row[0]: con.type(row[1]) for row in rows}


# Finished segments never change (written whole, by rename): the column types inferred for
# a list of them hold as long as the list does, and a second read of the same segments (the
# monitor's view per model version) skips the costly inference. A few lists are kept.
_INFERRED: collections.OrderedDict[bytes, dict[str, str]] = collections.OrderedDict()
_INFERRED_KEEP = 8
_INFERRED_LOCK = threading.Lock()


def _inferred(con: duckdb.DuckDBPyConnection, files: list[Path], source: str) -> dict[str, Any]:
    """:func:`_columns` of ``source`` (a read of ``files``), remembered by the files' names,
    sizes and modification times."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    try:
        for f in files:
            stat = f.stat()
            digest.update(f"{f}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except FileNotFoundError:  # removed meanwhile: the read itself will say so
        return _columns(con, source)
    key = digest.digest()
    with _INFERRED_LOCK:
        known = _INFERRED.get(key)
    if known is None:
        known = {name: str(kind) for name, kind in _columns(con, source).items()}
        with _INFERRED_LOCK:
            _INFERRED[key] = known
            while len(_INFERRED) > _INFERRED_KEEP:
                _INFERRED.popitem(last=False)
    return {name: con.type(kind) for name, kind in known.items()}


CORRUPT = "corrupt"  # where a reader moves segments it cannot parse, beside the good ones


class CorruptSegment(UserWarning):
    """A segment the reader could not parse was moved to the ``corrupt`` folder of its
    kind; the read went on without it. ``segment``, ``moved_to`` (None when it could not
    be moved) and ``reason`` say which and why."""

    def __init__(self, segment: Path, moved_to: Path | None, reason: str):
        where = f"moved to {moved_to}" if moved_to else "left in place (cannot move it)"
        super().__init__(f"skipped the unreadable log segment {segment} ({reason}); {where}")
        self.segment, self.moved_to, self.reason = segment, moved_to, reason


def _set_aside(con: duckdb.DuckDBPyConnection, files: list[Path], read: str) -> list[Path]:
    """``files`` less those DuckDB cannot parse (``read`` formats one file's path list into
    a read_json call): each of those is moved to ``corrupt/`` and reported with a
    :class:`CorruptSegment` warning. Called only after a read of all of them failed."""
    import warnings

    import duckdb

    good = []
    for f in files:
        if not f.exists():  # removed since it was listed (a retention job): not corrupt
            continue
        try:
            con.execute(f"SELECT count(*) FROM {read.format(paths=sql_literal(str(f)))}")
            good.append(f)
            continue
        except duckdb.Error as exc:
            reason = str(exc).splitlines()[0]
        target: Path | None = f.parent / CORRUPT / f.name
        try:
            target.parent.mkdir(exist_ok=True)
            f.replace(target)
        except FileNotFoundError:  # another reader moved it first
            pass
        except OSError:
            target = None
        warnings.warn(CorruptSegment(f, target, reason), stacklevel=2)
    return good


def _raw_inputs(
    con: duckdb.DuckDBPyConnection, columns: dict[str, Any], names: Collection[str]
) -> dict[str, Any]:
    """``columns`` with the input fields ``names`` typed JSON: read as logged, not guessed."""
    kind = columns.get("inputs")
    if not names or kind is None or kind.id != "struct":
        return columns
    fields = ", ".join(
        f"{sql_identifier(field)} {'JSON' if field in names else child}"
        for field, child in kind.children
    )
    return {**columns, "inputs": con.type(f"STRUCT({fields})")}


def _scan(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    *,
    pinned: bool,
    raw: Collection[str] = (),
    files: Sequence[Path] | None = None,
) -> tuple[str, dict[str, Any]] | None:
    """A ``read_json`` over the finished segments (``*.jsonl``: never a ``.tmp`` file) and
    the column types DuckDB infers there; None when there is no segment yet.

    ``pinned`` (one-shot reads): the files listed now, read a second time with the inferred
    columns given explicitly, so DuckDB infers once (the costly part: each file is sampled
    whole) and a segment finished in between cannot surprise the read; the input fields
    named in ``raw`` are read as JSON. A segment that does not parse (cut short, or a file
    that is not a log segment) is moved aside and reported (:func:`_set_aside`). Else (views): the glob, inferred on every query, so
    new segments and new fields are always readable. ``files`` (pinned only): these
    segments instead of the directory's.
    """
    import duckdb

    files = segment_files(directory) if files is None else list(files)
    if not files:
        return None
    # every field everywhere becomes a column: no MAP inference for rare or many keys
    read = (
        "read_json({paths}, format='newline_delimited', union_by_name=true, "
        "field_appearance_threshold=0, map_inference_threshold=-1)"
    )
    if not pinned:
        auto = read.format(paths=sql_literal(str(directory / "*.jsonl")))
        return auto, _columns(con, auto)

    def listed(files: list[Path]) -> str:
        return "[" + ", ".join(sql_literal(str(f)) for f in files) + "]"

    try:
        inferred = _inferred(con, files, read.format(paths=listed(files)))
    except duckdb.Error:  # a segment that does not parse: read the others, report it
        files = _set_aside(con, files, read)
        if not files:
            return None
        inferred = _inferred(con, files, read.format(paths=listed(files)))
    paths = listed(files)
    columns = _raw_inputs(con, inferred, raw)
    # `time` is recomputed from ts: not parsing it saves a timestamp detection per row
    spec = ", ".join(
        f"{sql_literal(k)}: {sql_literal(str(t))}" for k, t in columns.items() if k != "time"
    )
    return f"read_json({paths}, format='newline_delimited', columns={{{spec}}})", columns


def _meta(columns: dict[str, Any], name: str, sql_type: str) -> str:
    alias = sql_identifier(name)  # `group` is an SQL keyword
    if name not in columns:
        return f"NULL::{sql_type} AS {alias}"
    return f"CAST({alias} AS {sql_type}) AS {alias}"


# -- inputs read as the model reads them (the ``inputs`` keyword of the readers)
#
# DuckDB infers a JSON field's type from its values: integers of both signs become HUGEINT
# (Python Decimal), ints and floats DOUBLE, anything mixed JSON, ISO strings timestamps. A
# field whose signature type is known is read from its JSON text (the token as logged) with
# that type instead. Each reader below takes the field's JSON ``j``, whose text is a string
# (starting with '"'), true, false, a number, an array or an object, and gives NULL for
# what is not a value of its type.

INPUT_TYPES = ("numeric", "categorical", "boolean", "datetime")  # a signature's input types
_SPACE = " \t\n\r\x0b\x0c"  # what str.strip() takes off a boolean word


def input_types(signature: Mapping[str, Any]) -> dict[str, str]:
    """Input field -> type (numeric, categorical, boolean or datetime) of a package's
    signature: what the readers' ``inputs`` keyword takes."""
    return {item["name"]: item["type"] for item in signature.get("inputs", [])}


def _number(j: str) -> str:
    """A JSON number as DOUBLE, rounded as Python's float() rounds its text; a string or a
    boolean is not a number (the server refuses them for one)."""
    return f"TRY_CAST(CAST({j} AS VARCHAR) AS DOUBLE)"


def _words(words: Collection[str]) -> str:
    return "(" + ", ".join(sql_literal(w) for w in sorted(words)) + ")"


def _boolean(j: str) -> str:
    """true/false, a number (non-zero is true) or a word (yes, no, 1, 0...) as BOOLEAN, as
    the model's features read them (:mod:`mlsd.features.transforms`)."""
    from mlsd.values import FALSE_WORDS, TRUE_WORDS

    text = f"CAST({j} AS VARCHAR)"
    word = f"lower(trim({j} ->> '$', {sql_literal(_SPACE)}))"
    return (
        f"CASE WHEN {text} IN ('true', 'false') THEN {text} = 'true' "
        f"WHEN starts_with({text}, '\"') THEN CASE WHEN {word} IN {_words(TRUE_WORDS)} THEN true "
        f"WHEN {word} IN {_words(FALSE_WORDS)} THEN false END "
        f"ELSE {_number(j)} <> 0 END"
    )


def _category(j: str) -> str:
    """A category as its key (:func:`mlsd.features.transforms.category_key`, as the
    training profile counts them): 1, 1.0 and "1" are '1', true is 'True', "" is NULL."""
    text = f"CAST({j} AS VARCHAR)"
    d = _number(j)
    # an integer is its own text (exact at any size); an integral float prints as an
    # integer (within HUGEINT: no category is larger), others as the shortest text that
    # reads back the same, as Python's repr does
    number = (
        f"CASE WHEN NOT isfinite({d}) THEN NULL WHEN {d} = 0 THEN '0' "
        f"WHEN abs({d}) < 1e38 AND {d} = trunc({d}) THEN CAST(CAST({d} AS HUGEINT) AS VARCHAR) "
        f"ELSE CAST({d} AS VARCHAR) END"
    )
    return (
        f"CASE WHEN starts_with({text}, '\"') THEN NULLIF({j} ->> '$', '') "
        f"WHEN {text} IN ('true', 'false') THEN CASE {text} WHEN 'true' THEN 'True' "
        "ELSE 'False' END "
        f"WHEN regexp_full_match({text}, '-?[0-9]+') THEN CASE {text} WHEN '-0' THEN '0' "
        f"ELSE {text} END "
        f"ELSE {number} END"
    )


def _text(j: str) -> str:
    """A date-time as the text sent (the server accepts only ISO 8601 strings)."""
    return f"CASE WHEN starts_with(CAST({j} AS VARCHAR), '\"') THEN {j} ->> '$' END"


_READERS = {"numeric": _number, "categorical": _category, "boolean": _boolean, "datetime": _text}


def _checked(inputs: Mapping[str, str] | None) -> dict[str, str]:
    """The ``inputs`` keyword as a dict, every type known."""
    inputs = dict(inputs or {})
    unknown = {name: kind for name, kind in inputs.items() if kind not in _READERS}
    if unknown:
        raise LogError(
            f"unknown input types {unknown} given to the log reader",
            hint=f"give each field one of {', '.join(INPUT_TYPES)}, as a package signature "
            "declares them (input_types(signature))",
        )
    return inputs


def _typed(value: str, kind: str) -> str:
    """SQL reading the input ``value`` as signature type ``kind``. ``value`` is the field's
    JSON in a pinned read; a live view's glob is inferred on every query, so there it may
    be any type: to_json() gives its JSON back (and leaves JSON as it is)."""
    return _READERS[kind](f"to_json({value})")


def _predictions_sql(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    *,
    pinned: bool,
    inputs: Mapping[str, str] | None = None,
    shadow: bool = False,
    files: Sequence[Path] | None = None,
) -> str:
    """A SELECT of flat prediction rows: metadata, one column per input field and per
    output key (``input_``/``output_`` prefixed when a name is already taken); the fields
    of ``inputs`` read with their signature type. ``shadow``: shadow rows (no inputs, no
    flags, unit or p); ``files``: these segments only (see :func:`_scan`)."""
    types = _checked(inputs)
    scan = _scan(con, directory, pinned=pinned, raw=types, files=files)
    if scan is None:
        return _EMPTY_SHADOW if shadow else _EMPTY_PREDICTIONS
    source, columns = scan
    taken = {c.lower() for c in _PREDICTION_META}
    items = [
        _meta(columns, "request_id", "VARCHAR"),
        _meta(columns, "instance", "BIGINT"),
        _meta(columns, "ts", "DOUBLE"),
        "to_timestamp(CAST(ts AS DOUBLE)) AS time" if "ts" in columns else "NULL AS time",
        _meta(columns, "model_version", "VARCHAR"),
    ]
    parts = (("output", "output_"),) if shadow else (("inputs", "input_"), ("output", "output_"))
    for part, prefix in parts:
        kind = columns.get(part)
        if kind is None:
            continue
        if kind.id != "struct":  # a scalar or list output, or mixed shapes: keep as is
            alias = part if part.lower() not in taken else prefix + part
            items.append(f"{sql_identifier(part)} AS {sql_identifier(alias)}")
            taken.add(alias.lower())
            continue
        for field, _ in kind.children:
            alias = field if field.lower() not in taken else prefix + field
            taken.add(alias.lower())
            value = f"struct_extract({sql_identifier(part)}, {sql_literal(field)})"
            if part == "inputs" and field in types:
                value = _typed(value, types[field])
            items.append(f"{value} AS {sql_identifier(alias)}")
    items.append(_meta(columns, "latency_ms", "DOUBLE"))
    if shadow:
        items += [_meta(columns, "experiment", "VARCHAR"), _meta(columns, "arm", "VARCHAR")]
        return f"SELECT {', '.join(items)} FROM {source}"
    items.append(sql_identifier("flags") if "flags" in columns else "NULL::VARCHAR[] AS flags")
    items += [_meta(columns, name, kind) for name, kind in (*_ROUTING, *_RANKING)]
    return f"SELECT {', '.join(items)} FROM {source}"


def _feedback_sql(con: duckdb.DuckDBPyConnection, directory: Path, *, pinned: bool) -> str:
    """A SELECT of feedback rows: request_id, instance, label, ts, time, reward."""
    scan = _scan(con, directory, pinned=pinned)
    if scan is None:
        return _EMPTY_FEEDBACK
    source, columns = scan
    label = sql_identifier("label") if "label" in columns else "NULL::VARCHAR AS label"
    items = [
        _meta(columns, "request_id", "VARCHAR"),
        _meta(columns, "instance", "BIGINT"),
        label,
        _meta(columns, "ts", "DOUBLE"),
        "to_timestamp(CAST(ts AS DOUBLE)) AS time",
        _meta(columns, "reward", "DOUBLE"),
    ]
    return f"SELECT {', '.join(items)} FROM {source}"


def _labelled_sql(predictions: str, feedback: str) -> str:
    """Predictions with the latest applicable label: feedback for their (request_id,
    instance), or for the whole request (instance NULL); on a tie in time the specific one."""
    return f"""
        WITH p AS ({predictions}), f AS ({feedback}),
        m AS (
            SELECT k.request_id, k.instance, f.label AS true_label, f.ts AS label_ts,
                   f.reward AS reward,
                   row_number() OVER (
                       PARTITION BY k.request_id, k.instance
                       ORDER BY f.ts DESC NULLS LAST, (f.instance IS NULL)
                   ) AS rank
            FROM (SELECT DISTINCT request_id, instance FROM p) AS k
            JOIN f ON f.request_id = k.request_id
                  AND (f.instance IS NULL OR f.instance = k.instance)
        )
        SELECT p.*, m.true_label, m.label_ts, m.reward
        FROM p JOIN m ON p.request_id = m.request_id AND p.instance = m.instance
        WHERE m.rank = 1"""


def _epoch(value: float | int | str | datetime | None, name: str) -> float | None:
    """Epoch seconds from a number, a datetime or an ISO string (naive means UTC)."""
    if value is None:
        return None
    try:
        return epoch(value)
    except ValueError as exc:
        raise LogError(
            f"{name}={value!r} is not a time",
            hint="pass epoch seconds, a datetime or an ISO string such as '2026-05-01T12:00'",
        ) from exc


def _window(
    sql: str,
    start: float | str | datetime | None,
    end: float | str | datetime | None,
    model_version: str | int | None,
) -> str:
    """``sql`` restricted to ``start <= ts < end`` and one model version (values inlined:
    floats from float(), the version as an escaped literal)."""
    conditions = []
    if (lo := _epoch(start, "start")) is not None:
        conditions.append(f"ts >= {float(lo)!r}")
    if (hi := _epoch(end, "end")) is not None:
        conditions.append(f"ts < {float(hi)!r}")
    if model_version is not None:
        conditions.append(f"model_version = {sql_literal(str(model_version))}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT * FROM ({sql}){where}"


@contextlib.contextmanager
def log_errors(folder: Path) -> Iterator[None]:
    """DuckDB's errors reading the log in ``folder`` raised as a LogError naming it."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        raise LogError(
            f"cannot read the log in {folder}: {exc}",
            hint="segments are written whole by mlsd; move aside any *.jsonl file that was "
            "edited or copied in by hand",
        ) from exc


@contextlib.contextmanager
def _reading(folder: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A private DuckDB connection; its errors become a LogError naming the folder."""
    import duckdb

    con = duckdb.connect()
    try:
        with log_errors(folder):
            con.execute("SET TimeZone = 'UTC'")  # `time` columns come out as UTC timestamps
            yield con
    finally:
        con.close()


def to_arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pyarrow.Table:
    """The result of ``sql`` on ``con`` as an Arrow table (DuckDB 1 and 2 alike)."""
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table  # duckdb 2 / 1
    return fetch()


def read_predictions(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
    model_version: str | int | None = None,
    inputs: Mapping[str, str] | None = None,
) -> pyarrow.Table:
    """The logged predictions, one row per instance, from finished segments only.

    Columns: request_id, instance, ts (UTC epoch seconds), time (UTC timestamp),
    model_version, one column per input field, the output (one column per key of dict
    outputs, else ``output``), latency_ms, flags, and the routing of step 8: experiment,
    arm, unit (text) and p (the assignment probability), NULL for rows logged while no
    experiment routed traffic; and for items ranked by ``/v1/rank``, ``group`` (text: the
    request's group; quote it in SQL, ``"group"``) and ``position`` (the 1-based place the
    ranking gave the item, NULL when it was cut by ``k``), NULL for other rows. Shadow rows are not predictions (:func:`read_shadow`).
    ``start <= ts < end`` and
    ``model_version`` filter the rows. Sorted by ts, request_id, instance.

    ``inputs`` (field -> signature type, :func:`input_types`) reads those input fields as the
    model reads them rather than as DuckDB guesses from the JSON: numeric as float64 (a JSON
    number; NULL otherwise), boolean as bool, categorical as the category's key (text:
    1, 1.0 and "1" are '1'), datetime as the text sent; a value that is not one of its type
    reads as null. Without it, each field has the type DuckDB infers (integers of both signs
    come back as Decimal).
    """
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        sql = _predictions_sql(con, folder / PREDICTIONS, pinned=True, inputs=inputs)
        sql = _window(sql, start, end, model_version)
        return to_arrow(con, f"{sql} ORDER BY ts, request_id, instance")


def read_feedback(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
) -> pyarrow.Table:
    """The logged feedback: request_id, instance (null = every instance), label, ts, time,
    reward (null when none was given); ``start <= ts < end`` on the feedback's own time.
    Sorted by ts."""
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        sql = _feedback_sql(con, folder / FEEDBACK, pinned=True)
        sql = _window(sql, start, end, None)
        return to_arrow(con, f"{sql} ORDER BY ts, request_id")


_EMPTY_REJECTS = (
    "SELECT NULL::VARCHAR AS request_id, NULL::DOUBLE AS ts, NULL::TIMESTAMPTZ AS time, "
    "NULL::VARCHAR AS model_version, NULL::BIGINT AS instances, NULL::BIGINT AS instance, "
    "NULL::VARCHAR AS field, NULL::VARCHAR AS problem WHERE false"
)


def _rejects_sql(con: duckdb.DuckDBPyConnection, directory: Path) -> str:
    """A SELECT of reject rows: request_id, ts, time, model_version, instances, instance,
    field, problem."""
    scan = _scan(con, directory, pinned=True)
    if scan is None:
        return _EMPTY_REJECTS
    source, columns = scan
    items = [
        _meta(columns, "request_id", "VARCHAR"),
        _meta(columns, "ts", "DOUBLE"),
        "to_timestamp(CAST(ts AS DOUBLE)) AS time",
        _meta(columns, "model_version", "VARCHAR"),
        _meta(columns, "instances", "BIGINT"),
        _meta(columns, "instance", "BIGINT"),
        _meta(columns, "field", "VARCHAR"),
        _meta(columns, "problem", "VARCHAR"),
    ]
    return f"SELECT {', '.join(items)} FROM {source}"


def read_rejects(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
    model_version: str | int | None = None,
) -> pyarrow.Table:
    """Requests the server refused in validation, one row per problem: request_id, ts,
    time, model_version, instances (of the request, all refused), instance, field (None
    when the request itself was malformed), problem. Sorted by ts."""
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        sql = _window(_rejects_sql(con, folder / REJECTS), start, end, model_version)
        return to_arrow(con, f"{sql} ORDER BY ts, request_id, instance")


def read_shadow(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
    experiment: str | None = None,
) -> pyarrow.Table:
    """What shadow models answered (step 8), one row per instance: request_id, instance,
    ts, time, model_version (the shadow's), the output (one column per key of dict outputs,
    as in :func:`read_predictions`), latency_ms (the shadow's own scoring time), experiment,
    arm. ``start <= ts < end`` and ``experiment`` filter the rows; the live answer of the
    same request_id and instance is in :func:`read_predictions`. Sorted by ts, request_id,
    instance."""
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        sql = _window(
            _predictions_sql(con, folder / SHADOW, pinned=True, shadow=True), start, end, None
        )
        if experiment is not None:
            sql = f"SELECT * FROM ({sql}) WHERE experiment = {sql_literal(str(experiment))}"
        return to_arrow(con, f"{sql} ORDER BY ts, request_id, instance")


def labelled(
    workspace_root: str | Path | Workspace,
    *,
    start: float | str | datetime | None = None,
    end: float | str | datetime | None = None,
    model_version: str | int | None = None,
    inputs: Mapping[str, str] | None = None,
) -> pyarrow.Table:
    """Predictions that have feedback, with the latest label: the columns of
    :func:`read_predictions` plus ``true_label``, ``label_ts`` and ``reward`` (of the same
    feedback row; NULL when it gave none). Feedback without an
    instance labels every instance of its request; feedback for an unknown request id
    matches nothing. The filters apply to the prediction's ts and model_version;
    ``inputs`` types the input fields as in :func:`read_predictions`."""
    folder = log_folder(workspace_root)
    with _reading(folder) as con:
        predictions = _predictions_sql(con, folder / PREDICTIONS, pinned=True, inputs=inputs)
        predictions = _window(predictions, start, end, model_version)
        sql = _labelled_sql(predictions, _feedback_sql(con, folder / FEEDBACK, pinned=True))
        return to_arrow(con, f"{sql} ORDER BY p.ts, p.request_id, p.instance")


def duckdb_view(
    con: duckdb.DuckDBPyConnection,
    workspace_root: str | Path | Workspace,
    name: str = "predictions",
    *,
    feedback: str = "feedback",
    labelled: str = "labelled",
    pinned: bool = False,
    inputs: Mapping[str, str] | None = None,
) -> None:
    """Create (or replace) views ``name``, ``feedback`` and ``labelled`` on ``con``, with the
    columns of :func:`read_predictions`, :func:`read_feedback` and :func:`labelled`.

    Live (default): the views read the segment glob on every query, so new rows show up;
    DuckDB infers the JSON types on each query (about 5 s per million rows). The set of
    columns is fixed now: call again after new input fields appear, or when the log was
    empty (an empty log gives empty views with the metadata columns). ``pinned``: the
    segments that exist now, with the types inferred now; queries are several times faster
    and call again to see later rows. ``inputs`` types the input fields as in
    :func:`read_predictions`; a live view's fields are inferred first, then converted, so
    there a date-time may read in DuckDB's timestamp text rather than as sent.
    """
    folder = log_folder(workspace_root)
    predictions = _predictions_sql(con, folder / PREDICTIONS, pinned=pinned, inputs=inputs)
    feedback_sql = _feedback_sql(con, folder / FEEDBACK, pinned=pinned)
    con.execute(f"CREATE OR REPLACE VIEW {sql_identifier(name)} AS {predictions}")
    con.execute(f"CREATE OR REPLACE VIEW {sql_identifier(feedback)} AS {feedback_sql}")
    con.execute(
        f"CREATE OR REPLACE VIEW {sql_identifier(labelled)} AS {_labelled_sql(predictions, feedback_sql)}"
    )


def block_view(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[Path],
    feedback: pyarrow.Table,
    *,
    inputs: Mapping[str, str] | None = None,
) -> None:
    """Create (or replace) the views ``predictions`` and ``labelled`` of
    :func:`duckdb_view` (pinned) over the prediction segments ``files`` alone, labelled from
    ``feedback`` (the whole log's, as :func:`read_feedback` returns it).

    One block of a log read in parallel: a prediction's label depends only on the feedback
    of its own request, so blocks labelled apart are labelled as the whole log is.
    """
    con.register("block_feedback", feedback)
    predictions = _predictions_sql(con, Path(), pinned=True, inputs=inputs, files=files)
    feedback_sql = "SELECT * FROM block_feedback"
    con.execute(f"CREATE OR REPLACE VIEW predictions AS {predictions}")
    con.execute(f"CREATE OR REPLACE VIEW labelled AS {_labelled_sql(predictions, feedback_sql)}")
