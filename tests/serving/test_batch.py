"""Batch scoring (mlsd predict): the same answers as the online server, chunked, streamed,
validated with the online rules, written atomically."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from batch_data import BAD_ROWS, BAD_VALUES, system_factory

from mlsd.errors import DataError, MlsdError
from mlsd.models.train import train
from mlsd.serving import batch
from mlsd.serving.batch import csv_value, default_rejects_path, predict_batch
from mlsd.serving.model import load_served
from mlsd.spec import parse_spec
from mlsd.workspace import Workspace


@pytest.fixture(scope="module")
def systems(tmp_path_factory):
    return system_factory(tmp_path_factory)


def read_csv(path) -> pa.Table:
    """A CSV as Arrow infers it (the way mlsd reads training data)."""
    options = pcsv.ConvertOptions(strings_can_be_null=True, null_values=batch.NULL_VALUES)
    return pcsv.read_csv(path, convert_options=options)


def online(served, table: pa.Table) -> list[dict]:
    """What the server answers for these rows: columns as Python lists, as in a request."""
    names = [i["name"] for i in served.package.signature["inputs"]]
    return served.predict({n: table.column(n).to_pylist() for n in names})


def assert_same_as_online(out: pa.Table, answers: list[dict], task: str, label: str) -> None:
    assert out.num_rows == len(answers)
    rows = out.to_pylist()
    for got, want in zip(rows, answers, strict=True):
        assert str(got["model_version"]) == label  # a CSV read back infers a number
        if task == "regression":
            assert got["value"] == want["value"]
        elif task == "binary":
            assert got["score"] == want["score"] and got["label"] == want["label"]
        else:
            assert got["label"] == want["label"]
            probabilities = {k: got[f"probability_{k}"] for k in want["probabilities"]}
            assert probabilities == want["probabilities"]


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_batch_equals_the_online_answers_row_for_row_in_any_chunking(systems, task, tmp_path):
    system = systems(task)
    served = system.served()
    summary = system.predict(system.data, tmp_path / "scored.parquet")
    assert summary["rows"] == summary["scored"] == 400 and summary["rejected"] == 0
    assert summary["rejects"] is None and not (tmp_path / "scored.rejects.parquet").exists()
    assert summary["model_version"] == "1" and summary["rows_per_s"] > 0
    out = pq.read_table(tmp_path / "scored.parquet")
    expected = {
        "regression": ["value"],
        "binary": ["score", "label"],
        "multiclass": ["label", "probability_high", "probability_low", "probability_mid"],
    }[task]
    assert out.column_names == ["cust", *expected, "model_version", "flags"]
    source = read_csv(system.data)
    assert out.column("cust").to_pylist() == source.column("cust").to_pylist()
    assert_same_as_online(out, online(served, source), task, served.label)
    # chunks of 7 rows (57 chunks, the last of 1 row): each is what the server answers for a
    # request of those 7 rows
    system.predict(system.data, tmp_path / "small.parquet", serving={"batch_rows": 7})
    small = pq.read_table(tmp_path / "small.parquet")
    for start in range(0, 400, 7):
        answers = online(served, source.slice(start, 7))
        assert_same_as_online(small.slice(start, 7), answers, task, served.label)
    if served.package.model.family == "lightgbm":  # every row is predicted on its own
        assert small.equals(out)
    else:  # linear: BLAS sums X @ W in an order that depends on the number of rows
        assert small.drop_columns(["value"]).equals(out.drop_columns(["value"]))
        got, want = small.column("value").to_numpy(), out.column("value").to_numpy()
        assert np.allclose(got, want, rtol=1e-12, atol=0)


def test_parquet_in_csv_out_and_csv_in_parquet_out_agree(systems, tmp_path):
    system = systems("binary")
    table = read_csv(system.data)
    # a Parquet input with a dictionary-encoded column, as pandas categoricals are stored
    table = table.set_column(3, "c", pc.dictionary_encode(table.column("c")))
    pq.write_table(table, tmp_path / "in.parquet")
    system.predict(tmp_path / "in.parquet", tmp_path / "scored.csv")
    system.predict(system.data, tmp_path / "scored.parquet")
    from_csv = read_csv(tmp_path / "scored.csv")
    from_parquet = pq.read_table(tmp_path / "scored.parquet")
    assert from_csv.column_names == ["cust", "score", "label", "model_version", "flags"]
    # the CSV writer prints floats so that they read back as the same numbers
    assert from_csv.column("score").to_pylist() == from_parquet.column("score").to_pylist()
    assert from_csv.column("label").equals(from_parquet.column("label"))
    served = system.served()
    assert_same_as_online(from_csv, online(served, table), "binary", "1")


def expected_reason(served, instance: dict) -> str:
    problems = served.validator.validate([instance]).problems
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems)


def test_rejected_rows_go_to_the_rejects_file_with_the_online_reasons(systems, tmp_path):
    system = systems("binary")
    (tmp_path / "in.csv").write_text(BAD_ROWS + "\n")
    strict = {"on_invalid": "reject"}
    summary = system.predict(tmp_path / "in.csv", tmp_path / "scored.parquet", serving=strict)
    assert (summary["rows"], summary["scored"], summary["rejected"]) == (8, 3, 5)
    assert summary["rejects"] == str(tmp_path / "scored.rejects.parquet")
    rejects = pq.read_table(tmp_path / "scored.rejects.parquet").to_pylist()
    served = system.served(**strict)
    assert [r["cust"] for r in rejects] == list(BAD_VALUES)
    for row in rejects:
        assert row["reason"] == expected_reason(served, BAD_VALUES[row["cust"]])
    first = rejects[0]
    assert first["reason"] == "a: 1000 is outside the training range [1.0, 10.0]"
    assert first == {  # the original columns as they were in the file
        "cust": "X1",
        "a": "1000",
        "b": "0.5",
        "c": "red",
        "k": "2",
        "y": "p",
        "reason": first["reason"],
    }
    assert "; k: " in rejects[-1]["reason"] and rejects[-1]["reason"].startswith("a: 0 is")
    out = pq.read_table(tmp_path / "scored.parquet")
    assert out.column("cust").to_pylist() == ["G1", "G2", "G3"]
    good = read_csv(tmp_path / "in.csv").filter(pa.array([True, *[False] * 5, True, True]))
    assert_same_as_online(out, online(served, good), "binary", "1")
    # a clean run afterwards removes the stale rejects file
    system.predict(system.data, tmp_path / "scored.parquet")
    assert not (tmp_path / "scored.rejects.parquet").exists()


def test_flag_policy_scores_out_of_range_rows_and_says_why(systems, tmp_path):
    system = systems("binary")
    (tmp_path / "in.csv").write_text(BAD_ROWS + "\n")
    rejects = tmp_path / "bad.csv"
    summary = system.predict(
        tmp_path / "in.csv",
        tmp_path / "scored.parquet",
        rejects_path=rejects,
        serving={"on_invalid": "flag", "batch_rows": 3},
    )
    # wrong types and non-finite numbers are rejected under either policy
    assert (summary["scored"], summary["rejected"], summary["flagged"]) == (6, 2, 3)
    assert read_csv(rejects).column("cust").to_pylist() == ["X2", "X3"]
    out = pq.read_table(tmp_path / "scored.parquet")
    assert out.column("cust").to_pylist() == ["G1", "X1", "X4", "X5", "G2", "G3"]
    served = system.served(on_invalid="flag")
    checked = served.validator.validate([BAD_VALUES[c] for c in ["X1", "X4", "X5"]])
    assert out.column("flags").to_pylist()[1:4] == ["; ".join(f) for f in checked.flags]
    assert out.column("flags").to_pylist()[1] == "a: 1000 is outside the training range [1.0, 10.0]"
    assert out.column("flags").to_pylist()[0] is None
    kept = read_csv(tmp_path / "in.csv").filter(pa.array([True, True, False, False, *[True] * 4]))
    assert_same_as_online(out.drop_columns(["flags"]), online(served, kept), "binary", "1")


def test_bad_inputs_fail_the_whole_job(systems, tmp_path):
    system = systems("binary")
    table = read_csv(system.data).drop_columns(["b"])
    pcsv.write_csv(table, tmp_path / "in.csv")
    with pytest.raises(DataError, match=r"lacks 1 input column.*'b'") as caught:
        system.predict(tmp_path / "in.csv", tmp_path / "scored.parquet")
    assert caught.value.exit_code == 2
    assert not (tmp_path / "scored.parquet").exists()
    with pytest.raises(DataError, match="does not exist"):
        system.predict(tmp_path / "nope.csv", tmp_path / "scored.parquet")
    with pytest.raises(DataError, match="format"):
        system.predict(system.data, tmp_path / "scored.json")
    with pytest.raises(MlsdError, match="has no model '7'"):
        system.predict(system.data, tmp_path / "scored.parquet", ref="7")
    with pytest.raises(DataError, match="--input and --rejects are the same file"):
        system.predict(system.data, tmp_path / "scored.parquet", rejects_path=system.data)


def test_unknown_columns_are_counted_or_refused(systems, tmp_path):
    system = systems("binary")
    table = read_csv(system.data).append_column("extra", pa.array(range(400)))
    pq.write_table(table, tmp_path / "in.parquet")
    summary = system.predict(tmp_path / "in.parquet", tmp_path / "scored.parquet")
    assert summary["unknown_columns"] == ["extra"] and summary["scored"] == 400
    with pytest.raises(DataError, match="extra"):
        system.predict(
            tmp_path / "in.parquet",
            tmp_path / "scored.parquet",
            serving={"unknown_fields": "reject"},
        )


def test_a_failure_midway_leaves_no_output_under_the_final_name(systems, tmp_path, monkeypatch):
    system = systems("binary")
    output = tmp_path / "scored.parquet"
    output.write_bytes(b"the previous output")
    calls = []
    real_write = batch.Sink.write

    def failing_write(self, chunk):
        calls.append(chunk.num_rows)
        if len(calls) == 3:
            raise OSError("disk full")
        real_write(self, chunk)

    monkeypatch.setattr(batch.Sink, "write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        system.predict(system.data, output, serving={"batch_rows": 50})
    assert output.read_bytes() == b"the previous output"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scored.parquet"]  # no temp files


def test_types_arrow_reads_from_parquet(systems, tmp_path):
    system = systems("binary")
    table = pa.table(
        {
            "cust": ["A", "B", "C", "D", "E"],
            "a": pa.array([3, 3, 3, 3, None], pa.int8()),
            "b": pa.array([0.5, float("nan"), 0.5, 0.5, 0.5]),  # NaN is not a missing value
            "c": pa.array(["red", "red", "red", "", None]),  # "" is not a known category
            "k": pa.array([2.0, 2.0, 2.0, 2.0, 2.0]),  # 2.0 is category 2
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    strict = {"on_invalid": "reject"}
    summary = system.predict(tmp_path / "in.parquet", tmp_path / "scored.parquet", serving=strict)
    assert (summary["scored"], summary["rejected"]) == (3, 2)
    rejects = pq.read_table(tmp_path / "scored.rejects.parquet")
    assert rejects.column("reason").to_pylist() == [
        "b: nan is not a finite number",
        "c: '' is not a known category (known: blue, green, red)",
    ]
    served = system.served(**strict)
    good = table.filter(pa.array([True, False, True, False, True]))
    out = pq.read_table(tmp_path / "scored.parquet")
    assert_same_as_online(out, online(served, good), "binary", "1")


def test_empty_input_gives_an_empty_output_with_the_columns(systems, tmp_path):
    system = systems("binary")
    (tmp_path / "in.csv").write_text("cust,a,b,c,k\n")
    summary = system.predict(tmp_path / "in.csv", tmp_path / "scored.parquet")
    assert summary["rows"] == 0
    out = pq.read_table(tmp_path / "scored.parquet")
    assert out.num_rows == 0
    assert out.column_names == ["cust", "score", "label", "model_version", "flags"]


def test_csv_values_read_as_arrow_infers_them():
    assert [csv_value(t) for t in ["12", "-3", "1.5", "1e3", "inf", "true", "abc", None]] == [
        12,
        -3,
        1.5,
        1000.0,
        float("inf"),
        True,
        "abc",
        None,
    ]
    assert default_rejects_path(batch.Path("out/scored.csv")) == batch.Path(
        "out/scored.rejects.csv"
    )


def test_boolean_and_datetime_fields_from_csv_and_parquet(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    a = rng.normal(size=n)
    member = rng.choice(["true", "false"], n)
    ts = pd.date_range("2024-01-01", periods=n, freq="7h").strftime("%Y-%m-%dT%H:%M:%S")
    z = a + (member == "true") + (ts.str[11:13] > "12") + rng.normal(scale=0.3, size=n)
    df = pd.DataFrame({"a": a, "member": member, "ts": ts, "y": np.where(z > 1, "p", "n")})
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: t\nproblem: {task: binary, target: y}\ndata:\n  source: d.csv\n"
        "models: {candidates: [lightgbm]}\n"
    )
    spec._path = tmp_path / "system.yaml"
    workspace = Workspace(tmp_path / "ws")
    assert train(spec, workspace, progress=False).registered
    served = load_served(workspace.root, "t", "champion", spec.serving)
    kinds = {i["name"]: i["type"] for i in served.package.signature["inputs"]}
    assert kinds == {"a": "numeric", "member": "boolean", "ts": "datetime"}

    lines = (tmp_path / "d.csv").read_text().splitlines()
    lines[3] = "0.5,maybe,2024-01-02T00:00:00,p"  # not a boolean
    lines[4] = "0.5,true,yesterday,p"  # not a date-time
    lines[5] = "0.5,1,2024-01-02 10:00:00,p"  # 1 is true; a space is ISO 8601 too
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    summary = predict_batch(
        spec, tmp_path / "in.csv", tmp_path / "out.parquet", workspace=workspace, progress=False
    )
    assert (summary["scored"], summary["rejected"]) == (298, 2)
    reasons = pq.read_table(tmp_path / "out.rejects.parquet").column("reason").to_pylist()
    assert reasons == [
        "member: expected true or false, got 'maybe'",
        "ts: 'yesterday' is not an ISO 8601 date-time",
    ]
    # the same rows as a JSON client sends them: numbers, true/false, ISO strings
    text = [line.split(",") for line in lines[1:]]
    good = [r for i, r in enumerate(text) if i not in (2, 3)]
    instances = [{"a": float(r[0]), "member": r[1] in ("true", "1"), "ts": r[2]} for r in good]
    checked = served.validator.validate(instances)
    assert not checked.problems
    answers = served.predict(checked.columns)
    out = pq.read_table(tmp_path / "out.parquet")
    assert_same_as_online(out, answers, "binary", "1")
    # Parquet with real booleans and timestamps scores the same
    table = pa.table(
        {
            "a": [i["a"] for i in instances],
            "member": [i["member"] for i in instances],
            "ts": pc.strptime(
                pc.replace_substring([i["ts"] for i in instances], " ", "T"),
                format="%Y-%m-%dT%H:%M:%S",
                unit="ms",
            ),
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    predict_batch(
        spec, tmp_path / "in.parquet", tmp_path / "out2.csv", workspace=workspace, progress=False
    )
    assert_same_as_online(read_csv(tmp_path / "out2.csv"), answers, "binary", "1")
