"""Ranking in the log (/v1/rank): each ranked item is a prediction row with its request's
``group`` and the 1-based ``position`` it was given, so feedback on items joins to them."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from mlsd.predlog.reader import duckdb_view, input_column, labelled, read_predictions
from mlsd.predlog.writer import PredictionLog

BASE = 1_700_000_000.0


def _log(ws) -> None:
    with PredictionLog(ws, flush_s=0.2) as log:
        log.prediction(  # a /v1/predict row: no group, no position
            request_id="plain",
            model_version=1,
            inputs=[{"x": 0.5}],
            outputs=[{"score": 0.2}],
            latency_ms=1.0,
            ts=BASE,
        )
        log.prediction(  # four items of group 7, top 3 returned: the last was cut by k
            request_id="q1",
            model_version=1,
            inputs=[{"x": 1.0}, {"x": 2.0}, {"x": 3.0}, {"x": 4.0}],
            outputs=[{"score": 0.1}, {"score": 0.9}, {"score": 0.5}, {"score": -1.0}],
            latency_ms=2.0,
            ts=BASE + 1,
            group=7,
            ranks=[3, 1, 2, None],
        )
        log.prediction(  # a partial answer: items 0 and 2 valid, routed
            request_id="q2",
            model_version=2,
            inputs=[{"x": 5.0}, {"x": 6.0}],
            outputs=[{"score": 0.3}, {"score": 0.4}],
            latency_ms=2.0,
            ts=BASE + 2,
            positions=[0, 2],
            routed={"experiment": "e1", "arm": "challenger", "unit": "u-1", "p": 0.5},
            group="u-1",
            ranks=[2, 1],
        )
        log.feedback(request_id="q1", label=1, instance=1, ts=BASE + 5)  # a click
        log.feedback(request_id="q1", label=0, instance=0, ts=BASE + 5)
        log.feedback(request_id="q2", label=3, instance=2, ts=BASE + 6)  # a grade
        assert log.flush(timeout=10)


def test_group_and_position_round_trip_and_join_feedback(tmp_path):
    _log(tmp_path)
    table = read_predictions(tmp_path)
    assert table.column_names[-6:] == ["experiment", "arm", "unit", "p", "group", "position"]
    assert table.schema.field("group").type == pa.string()
    assert table.schema.field("position").type == pa.int64()
    rows = {(r["request_id"], r["instance"]): r for r in table.to_pylist()}
    assert (rows[("plain", 0)]["group"], rows[("plain", 0)]["position"]) == (None, None)
    assert [rows[("q1", i)]["position"] for i in range(4)] == [3, 1, 2, None]
    assert {rows[("q1", i)]["group"] for i in range(4)} == {"7"}  # text, as unit is
    assert (rows[("q2", 2)]["group"], rows[("q2", 2)]["position"]) == ("u-1", 1)
    assert rows[("q2", 2)]["arm"] == "challenger" and rows[("q2", 2)]["x"] == 6.0

    joined = {(r["request_id"], r["instance"]): r for r in labelled(tmp_path).to_pylist()}
    assert set(joined) == {("q1", 0), ("q1", 1), ("q2", 2)}
    assert (joined[("q1", 1)]["position"], joined[("q1", 1)]["true_label"]) == (1, 1)
    assert (joined[("q1", 0)]["position"], joined[("q1", 0)]["group"]) == (3, "7")
    assert joined[("q2", 2)]["true_label"] == 3


@pytest.mark.parametrize("pinned", [False, True])
def test_duckdb_views_have_group_and_position(tmp_path, pinned):
    _log(tmp_path)
    con = duckdb.connect()
    duckdb_view(con, tmp_path, pinned=pinned)
    clicks = con.execute(
        "SELECT position, count(*), sum(CAST(true_label AS INT)) FROM labelled "
        "WHERE \"group\" = '7' GROUP BY position ORDER BY position"
    ).fetchall()
    assert clicks == [(1, 1, 1), (3, 1, 0)]
    assert con.execute("SELECT count(*) FROM predictions WHERE position IS NULL").fetchone() == (
        2,
    )  # the plain prediction and the item cut by k


def test_empty_log_and_old_logs_have_typed_nulls(tmp_path):
    empty = read_predictions(tmp_path)
    assert empty.schema.field("group").type == pa.string()
    assert empty.schema.field("position").type == pa.int64()
    with PredictionLog(tmp_path, flush_s=0.2) as log:
        log.prediction(
            request_id="a", model_version=1, inputs=[{"x": 1}], outputs=[0.3], latency_ms=1
        )
    table = read_predictions(tmp_path)
    assert table.column("group").to_pylist() == [None]
    assert table.schema.field("position").type == pa.int64()


def test_features_named_group_or_position_are_prefixed(tmp_path):
    assert input_column("group") == "input_group" and input_column("position") == "input_position"
    with PredictionLog(tmp_path, flush_s=0.2) as log:
        log.prediction(
            request_id="a",
            model_version=1,
            inputs=[{"group": "g", "position": 4}],
            outputs=[0.3],
            latency_ms=1,
            group="q",
            ranks=[1],
        )
    row = read_predictions(tmp_path).to_pylist()[0]
    assert (row["input_group"], row["input_position"], row["group"], row["position"]) == (
        "g",
        4,
        "q",
        1,
    )


def test_a_ranked_request_needs_a_rank_per_item(tmp_path):
    with PredictionLog(tmp_path, flush_s=0.2) as log, pytest.raises(ValueError, match="rank"):
        log.prediction(
            request_id="a",
            model_version=1,
            inputs=[{"x": 1}, {"x": 2}],
            outputs=[0.3, 0.4],
            latency_ms=1,
            group="q",
            ranks=[1],
        )
