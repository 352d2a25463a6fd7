"""Step 8 in the log: routed predictions carry experiment/arm/unit/p, feedback may carry a
reward, and shadow rows live apart from the predictions."""

from __future__ import annotations

import pyarrow as pa

from mlsd.predlog.reader import labelled, read_feedback, read_predictions, read_shadow
from mlsd.predlog.writer import PredictionLog

BASE = 1_700_000_000.0


def _log(ws) -> None:
    with PredictionLog(ws, flush_s=0.2) as log:
        log.prediction(  # before any experiment: no routing keys at all
            request_id="old",
            model_version=1,
            inputs=[{"x": 1.0}],
            outputs=[{"score": 0.1}],
            latency_ms=1.0,
            ts=BASE,
        )
        for r in range(4):
            arm = "champion" if r % 2 == 0 else "challenger"
            log.prediction(
                request_id=f"r{r}",
                model_version=1 if arm == "champion" else 2,
                inputs=[{"x": float(r)}, {"x": float(r) + 0.5}],
                outputs=[{"score": r / 10}, {"score": r / 10 + 0.01}],
                latency_ms=2.0,
                ts=BASE + 1 + r,
                routed={"experiment": "e1", "arm": arm, "unit": 40 + r, "p": 0.5},
            )
            log.shadow(
                request_id=f"r{r}",
                model_version=3,
                experiment="e1" if r < 3 else "e2",
                arm="shadow",
                outputs=[{"score": 0.9}, {"score": 0.8}],
                latency_ms=5.0,
                ts=BASE + 1 + r,
            )
        log.feedback(request_id="r0", label=1, reward=2.5, ts=BASE + 10)
        log.feedback(request_id="r1", label=0, instance=1, ts=BASE + 10)
        assert log.flush(timeout=10)
        assert log.stats["shadow"]["written"] == 8
        assert log.stats["predictions"]["written"] == 9


def test_routed_fields_round_trip_and_old_rows_read_null(tmp_path):
    _log(tmp_path)
    table = read_predictions(tmp_path)
    assert table.num_rows == 9  # shadow rows are not predictions
    assert table.schema.field("experiment").type == pa.string()
    assert table.schema.field("unit").type == pa.string()
    assert table.schema.field("p").type == pa.float64()
    rows = {(r["request_id"], r["instance"]): r for r in table.to_pylist()}
    old = rows[("old", 0)]
    assert (old["experiment"], old["arm"], old["unit"], old["p"]) == (None, None, None, None)
    r1 = rows[("r1", 1)]
    assert (r1["experiment"], r1["arm"], r1["unit"], r1["p"]) == ("e1", "challenger", "41", 0.5)
    assert r1["model_version"] == "2" and r1["x"] == 1.5
    assert (
        set(read_predictions(tmp_path, model_version=3).column("request_id").to_pylist()) == set()
    )


def test_old_logs_without_routing_keys_read_as_typed_nulls(tmp_path):
    with PredictionLog(tmp_path, flush_s=0.2) as log:
        log.prediction(
            request_id="a", model_version=1, inputs=[{"x": 1}], outputs=[0.3], latency_ms=1
        )
        log.feedback(request_id="a", label=1)
    table = read_predictions(tmp_path)
    assert table.schema.field("p").type == pa.float64()
    assert table.schema.field("arm").type == pa.string()
    assert table.column("experiment").to_pylist() == [None]
    joined = labelled(tmp_path)
    assert joined.schema.field("reward").type == pa.float64()
    assert joined.column("reward").to_pylist() == [None]
    assert read_feedback(tmp_path).column("reward").to_pylist() == [None]
    assert read_shadow(tmp_path).num_rows == 0


def test_reward_joins_through_labelled(tmp_path):
    _log(tmp_path)
    joined = {(r["request_id"], r["instance"]): r for r in labelled(tmp_path).to_pylist()}
    assert set(joined) == {("r0", 0), ("r0", 1), ("r1", 1)}
    assert joined[("r0", 0)]["reward"] == 2.5 and joined[("r0", 1)]["reward"] == 2.5
    assert joined[("r1", 1)]["reward"] is None and joined[("r1", 1)]["true_label"] == 0
    assert joined[("r0", 0)]["arm"] == "champion" and joined[("r0", 0)]["unit"] == "40"


def test_read_shadow_filters_by_experiment_and_time(tmp_path):
    _log(tmp_path)
    shadow = read_shadow(tmp_path)
    assert shadow.column_names == [
        "request_id", "instance", "ts", "time", "model_version", "score", "latency_ms",
        "experiment", "arm",
    ]  # fmt: skip
    assert shadow.num_rows == 8
    e1 = read_shadow(tmp_path, experiment="e1")
    assert sorted(set(e1.column("request_id").to_pylist())) == ["r0", "r1", "r2"]
    assert set(e1.column("arm").to_pylist()) == {"shadow"}
    assert set(e1.column("model_version").to_pylist()) == {"3"}
    assert e1.column("latency_ms").to_pylist()[0] == 5.0
    assert read_shadow(tmp_path, experiment="e2").num_rows == 2
    assert read_shadow(tmp_path, experiment="none").num_rows == 0
    assert read_shadow(tmp_path, start=BASE + 3).num_rows == 4
    pairs = {(r["request_id"], r["instance"]): r["score"] for r in shadow.to_pylist()}
    assert pairs[("r0", 0)] == 0.9 and pairs[("r0", 1)] == 0.8


def test_empty_shadow_has_its_columns(tmp_path):
    empty = read_shadow(tmp_path)
    assert empty.num_rows == 0
    assert empty.column_names == [
        "request_id", "instance", "ts", "time", "model_version", "latency_ms", "experiment", "arm",
    ]  # fmt: skip


def test_shadow_rows_may_keep_their_inputs(tmp_path):
    with PredictionLog(tmp_path, flush_s=0.2) as log:
        log.shadow(
            request_id="s",
            model_version=2,
            experiment="e",
            arm="b",
            inputs=[{"x": 1}],
            outputs=[{"score": 0.5}],
            latency_ms=1,
            positions=[3],
        )
    rows = read_shadow(tmp_path).to_pylist()
    assert rows[0]["instance"] == 3 and rows[0]["score"] == 0.5
    assert "x" not in rows[0]  # inputs live in the predictions; read_shadow gives outputs
