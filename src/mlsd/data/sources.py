"""Read a data source into an Arrow table: CSV, Parquet (file or folder), or DuckDB SQL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from mlsd.errors import DataError
from mlsd.spec import SourceSpec


def _format(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    if path.is_dir():
        return "parquet"
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes or ".pq" in suffixes:
        return "parquet"
    if ".csv" in suffixes or ".tsv" in suffixes or ".txt" in suffixes:
        return "csv"
    raise DataError(
        f"cannot tell the format of {path} from its name",
        hint="name it .csv or .parquet, or set data.source.format",
    )


def _read_csv(path: Path) -> pa.Table:
    import pyarrow.csv as pcsv

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        table = pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(
                strings_can_be_null=True,
                null_values=["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"],
            ),
        )
        _ = table.column_names  # decoding them fails on a header that is not UTF-8
    except pa.ArrowInvalid as exc:
        hint = "check the line named above: a wrong number of fields or an unclosed quote"
        if "straddl" in str(exc):  # pyarrow's words for a field longer than its 1 MB block
            hint = "a field runs over 1 MB: look for an unclosed quote"
        raise DataError(f"{path} is not a readable CSV: {exc}", hint=hint) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: the header is not UTF-8 text", hint=_UTF8_HINT) from exc
    return table


_UTF8_HINT = "write it as UTF-8 (a CSV: `iconv -f latin1 -t utf-8 in.csv > out.csv`)"


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_parquet(path: Path) -> pa.Table:
    import pyarrow.dataset as ds

    try:
        return ds.dataset(path, format="parquet").to_table()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(
            f"{path} is not readable as Parquet: {exc}",
            hint="check that every file in it is Parquet with the same columns",
        ) from exc


def _read_sql(sql: str, base_dir: Path) -> pa.Table:
    import duckdb

    con = duckdb.connect()
    try:
        # relative file names in the query resolve against the spec's folder, not the cwd
        con.execute("SET file_search_path = ?", [str(base_dir)])
        relation = con.sql(sql)
        if relation is None:
            raise DataError(
                "the data.source.sql statement returns no rows", hint="write a select query"
            )
        # duckdb 2 renamed arrow() to to_arrow_table()
        return (getattr(relation, "to_arrow_table", None) or relation.arrow)()
    except duckdb.Error as exc:
        raise DataError(
            f"the data.source.sql query failed: {exc}",
            hint="try the query in the duckdb shell; file paths are relative to system.yaml",
        ) from exc
    finally:
        con.close()


def read_source(source: SourceSpec, base_dir: Path) -> pa.Table:
    """Read ``source`` (paths relative to ``base_dir``) into an Arrow table."""
    if source.sql is not None:
        return _read_sql(source.sql, base_dir)
    path = Path(source.path).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise DataError(
            f"data source {path} does not exist",
            hint="fix data.source.path in system.yaml (relative paths start at its folder)",
        )
    fmt = _format(path, source.format)
    table = _read_csv(path) if fmt == "csv" else _read_parquet(path)
    if table.num_rows == 0:
        raise DataError(f"data source {path} has no rows", hint="point data.source at real data")
    _check_columns(table, path)
    return table


def _check_columns(table: pa.Table, path: Path) -> None:
    """Every column has its own name and holds flat values: what a data frame can take."""
    names = table.column_names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"{path} has more than one column named {', '.join(map(repr, repeated))}",
            hint="rename the columns so that each name appears once",
        )
    for field in table.schema:
        # pyarrow reads a CSV column holding bytes that are not UTF-8 as binary, not text
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            values = table[field.name].to_pylist()
            row = next((i for i, v in enumerate(values) if v and not _is_utf8(v)), None)
            if row is not None:
                raise DataError(
                    f"{path}: column '{field.name}' is not UTF-8 text (data row {row + 1}: "
                    f"{values[row][:40]!r})",
                    hint=_UTF8_HINT,
                )
        if pa.types.is_nested(field.type):
            raise DataError(
                f"{path}: column '{field.name}' holds {field.type} values; mlsd reads flat "
                "columns of numbers, text, booleans and times",
                hint="flatten it first, or pick its parts with data.source.sql",
            )
