"""A retrain's rows: log rows typed like the source, the fresh holdout, the window."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from loop_helpers import serve

from mlsd.loop.data import Champion, RetrainDataError, assemble, read_log
from mlsd.spec import load_spec
from mlsd.workspace import Workspace

SPEC = """name: d
problem: {{task: regression, target: y{time}}}
data: {{source: s.csv}}
retraining: {{min_new_labels: 10{extra}}}
"""


def _system(folder: Path, source: pd.DataFrame, *, time_cols: str = "", extra: str = ""):
    source.to_csv(folder / "s.csv", index=False)
    (folder / "system.yaml").write_text(SPEC.format(time=time_cols, extra=extra))
    spec = load_spec(folder / "system.yaml")
    return spec, Workspace.for_spec(spec)


def _source(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": range(n),
            "ts": [float(i) for i in range(n)],  # a field named like a log column
            "kind": ["a", "b"] * (n // 2),
            "x": [i / 10 for i in range(n)],
            "extra": [1] * n,  # never sent by clients
            "y": [float(i) for i in range(n)],
        }
    )


def _served(n: int, first_day: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": range(first_day, first_day + n),
            "ts": [0.5] * n,
            "kind": ["b"] * n,
            "x": [1.5] * n,
            "y": [100.0 + i for i in range(n)],
        }
    )


def test_log_rows_are_typed_like_the_source_and_the_freshest_are_held_out(tmp_path):
    spec, ws = _system(tmp_path, _source())
    before = serve(ws, _served(20, 1000))  # labelled before the champion was built
    champ = Champion(1, tmp_path, created_at=time.time())
    after = serve(ws, _served(40, 2000))  # fresh: labelled after it
    assert after > before
    data = assemble(spec, ws, champ)
    source_schema = pa.csv.read_csv(tmp_path / "s.csv").schema
    assert data.train.schema == source_schema and data.holdout.schema == source_schema
    # 20% of the 40 fresh rows, the most recent ones, are held out and never trained on
    assert data.counts == {
        "source_rows": 50,
        "labelled_log_rows": 60,
        "fresh_log_rows": 40,
        "holdout_rows": 8,
        "train_rows": 50 + 60 - 8,
        "train_rows_from_log": 52,
    }
    assert data.holdout.column("day").to_pylist() == list(range(2032, 2040))
    assert not set(data.holdout.column("day").to_pylist()) & set(
        data.train.column("day").to_pylist()
    )
    held = data.holdout.to_pandas()
    assert held["y"].tolist() == [132.0 + i for i in range(8)]  # the labels
    assert (held["ts"] == 0.5).all()  # the field `ts`, not the log's own ts
    assert held["extra"].isna().all() and (held["kind"] == "b").all()


def test_windows_keep_the_most_recent_rows(tmp_path):
    spec, ws = _system(tmp_path, _source(), time_cols=", time: [day]", extra=", window: {rows: 34}")
    champ = Champion(1, tmp_path, created_at=time.time() - 1)
    serve(ws, _served(40, 100))
    data = assemble(spec, ws, champ)
    # ordered by the spec's time column; the 32 unheld log rows and the last source rows
    assert data.train.column("day").to_pylist() == [*range(48, 50), *range(100, 132)]
    assert data.window == "the most recent 34 rows"


def test_a_sliding_window_drops_rows_older_than_the_span(tmp_path):
    spec, ws = _system(tmp_path, _source(), extra=", window: {sliding: 1h}")
    champ = Champion(1, tmp_path, created_at=time.time() - 7200)  # two hours ago
    start = serve(ws, _served(40, 100))
    data = assemble(spec, ws, champ, now=start + 1800)
    # the source, without clock times, counts as dated when the champion was built: too old
    assert data.counts["train_rows"] == 32 and data.counts["train_rows_from_log"] == 32
    later = assemble(spec, ws, champ, now=start + 3 * 3600)
    assert later.counts["train_rows"] == 0


def test_too_few_fresh_labels_is_a_clear_error(tmp_path):
    spec, ws = _system(tmp_path, _source())
    serve(ws, _served(5, 100))
    with pytest.raises(RetrainDataError, match=r"5 labelled log rows arrived after the champion"):
        assemble(spec, ws, Champion(3, tmp_path, created_at=time.time() - 60))


def test_labels_stamped_in_the_future_have_not_arrived(tmp_path):
    _, ws = _system(tmp_path, _source())
    start = serve(ws, _served(10, 100))
    assert read_log(ws, now=start + 0.0045).num_rows == 5  # labels at ts + 0.0005
    assert read_log(ws).num_rows == 10


def test_the_log_is_read_with_the_champion_signature_types(tmp_path):
    """Integers of both signs are read as the numbers the champion's signature declares
    (JSON inference alone reads them as decimals), categories as their keys."""
    spec, ws = _system(tmp_path, _source())
    served = _served(10, 100)
    served["x"] = [-3, 4] * 5
    served["kind"] = [1, 1.0] * 5  # one category, sent as an int and as a float
    start = serve(ws, served)
    package = tmp_path / "package"
    package.mkdir()
    inputs = [{"name": "x", "type": "numeric"}, {"name": "kind", "type": "categorical"}]
    (package / "signature.json").write_text(json.dumps({"inputs": inputs}))
    champ = Champion(1, package, created_at=start - 1)
    assert champ.inputs == {"x": "numeric", "kind": "categorical"}
    assert Champion(1, tmp_path / "nowhere", created_at=start).inputs is None

    log = read_log(ws, inputs=champ.inputs)
    assert log.column("x").type == pa.float64() and log.column("x").to_pylist() == [-3.0, 4.0] * 5
    assert log.column("kind").to_pylist() == ["1"] * 10
    data = assemble(spec, ws, champ)  # typed like the source: x float64, kind text
    served_rows = pa.concat_tables([data.train.slice(50), data.holdout]).to_pydict()
    assert served_rows["x"] == [-3.0, 4.0] * 5 and served_rows["kind"] == ["1"] * 10
