"""Reading sources: CSV, Parquet file and folder, DuckDB SQL, and their errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsd.data.sources import read_source
from mlsd.errors import DataError
from mlsd.spec import SourceSpec


@pytest.fixture
def table():
    return pa.table({"a": [1, 2, 3, 4], "b": ["x", "y", "x", None], "y": [0.5, 1.5, 2.5, 3.5]})


def test_csv_with_nulls(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,x\n2,\nNA,z\n")
    t = read_source(SourceSpec(path="d.csv"), tmp_path)
    assert t.num_rows == 3
    assert t["a"].null_count == 1 and t["b"].null_count == 1


def test_parquet_file_and_folder(tmp_path, table):
    pq.write_table(table, tmp_path / "one.parquet")
    assert read_source(SourceSpec(path="one.parquet"), tmp_path).equals(table)
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 2), tmp_path / "parts" / "p0.parquet")
    pq.write_table(table.slice(2), tmp_path / "parts" / "p1.parquet")
    got = read_source(SourceSpec(path="parts"), tmp_path)
    assert got.num_rows == 4
    assert sorted(got["a"].to_pylist()) == [1, 2, 3, 4]


def test_sql_over_files_relative_to_spec_folder(tmp_path, table, monkeypatch):
    pq.write_table(table, tmp_path / "t.parquet")
    monkeypatch.chdir("/")  # the query's relative path must not depend on the cwd
    got = read_source(SourceSpec(sql="select a, y from 't.parquet' where a > 2"), tmp_path)
    assert got.column_names == ["a", "y"]
    assert got["a"].to_pylist() == [3, 4]


def test_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_source(SourceSpec(path="missing.csv"), tmp_path)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataError, match="not a readable CSV"):
        read_source(SourceSpec(path="bad.csv"), tmp_path)
    with pytest.raises(DataError, match="query failed"):
        read_source(SourceSpec(sql="select * from 'nothing_here.parquet'"), tmp_path)
    (tmp_path / "data.bin").write_bytes(b"\0")
    with pytest.raises(DataError, match="format"):
        read_source(SourceSpec(path="data.bin"), tmp_path)
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="no rows"):
        read_source(SourceSpec(path="empty.csv"), tmp_path)
