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
        return pcsv.read_csv(
            path,
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            convert_options=pcsv.ConvertOptions(
                strings_can_be_null=True,
                null_values=["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise DataError(
            f"{path} is not a readable CSV: {exc}",
            hint="check the line named above: a wrong number of fields or an unclosed quote",
        ) from exc


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
    return table
