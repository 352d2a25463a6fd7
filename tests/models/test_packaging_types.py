"""What a package records keeps its type end to end: integer class labels stay integers in
the signature, the JSON answer, V2, batch columns and monitoring; and the signature's ranges
and domains are the training split's, the same numbers monitoring reports."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlsd.data.target import class_value, classes_of, encode_target
from mlsd.evaluation.evaluate import package_labels
from mlsd.models import package as packages
from mlsd.models import packaging
from mlsd.models.train import train
from mlsd.monitoring import quality
from mlsd.monitoring.reference import load_reference
from mlsd.serving.batch import predict_batch
from mlsd.serving.model import format_outputs, load_served
from mlsd.serving.v2 import output_tensors
from mlsd.spec import QualitySpec, parse_spec
from mlsd.workspace import Workspace


def make_system(tmp_path, df: pd.DataFrame, problem: str, extra: str = ""):
    df.to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(f"name: t\nproblem: {problem}\ndata:\n  source: d.csv\n{extra}")
    spec._path = tmp_path / "system.yaml"
    (tmp_path / "system.yaml").write_text("# written by the test\n")
    return spec, Workspace(tmp_path / "ws")


def int_label_frame(n: int = 300, seed: int = 0, missing: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.digitize(x[:, 0] + 0.3 * rng.normal(size=n), [-0.5, 0.5]).astype(float)
    if missing:  # a missing label makes pandas read the column as floats 0.0/1.0/2.0
        y[[3, 7]] = np.nan
    else:
        y = y.astype(int)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})


# --- labels ------------------------------------------------------------------------------------


def test_class_values_are_ints_when_whole_and_keep_other_types():
    assert [class_value(v) for v in (np.float64(2.0), 1.0, np.int64(3), 0.5)] == [2, 1, 3, 0.5]
    assert type(class_value(np.float64(2.0))) is int
    assert class_value(True) is True and class_value(np.bool_(False)) is False
    assert class_value("1.0") == "1.0"
    assert classes_of(pd.Series([2.0, 0.0, None, 1.0])) == [0, 1, 2]
    assert classes_of(pd.Series(["b", "a", "b"])) == ["a", "b"]


@pytest.mark.parametrize("missing", [False, True])
def test_integer_labels_stay_integers_everywhere(tmp_path, missing):
    df = int_label_frame(missing=missing)
    spec, ws = make_system(
        tmp_path, df, "{task: multiclass, target: y}", "models: {candidates: [lightgbm]}\n"
    )
    y, classes = encode_target(df, spec)
    assert classes == [0, 1, 2] and all(type(c) is int for c in classes)
    assert np.array_equal(y, df["y"].to_numpy(dtype=float), equal_nan=True)

    result = train(spec, ws, progress=False)
    assert result.registered, result.reasons
    loaded = packages.load(result.package)
    # the signature and the manifest
    assert loaded.signature["output"]["classes"] == [0, 1, 2]
    assert all(type(c) is int for c in loaded.signature["output"]["classes"])
    assert loaded.manifest["meta"]["classes"] == [0, 1, 2]
    written = json.loads((loaded.folder / "signature.json").read_text())
    assert [type(c) for c in written["output"]["classes"]] == [int, int, int]

    # the JSON answer: the label is an int, the probabilities are keyed "0", "1", "2"
    served = load_served(ws.root, spec.name, "champion", spec.serving)
    rows = df[["a", "b", "c"]].iloc[:5]
    answers = served.predict({k: rows[k].tolist() for k in rows})
    for answer in answers:
        assert type(answer["label"]) is int
        assert list(answer["probabilities"]) == ["0", "1", "2"]
    # V2: the label tensor holds "0", not "0.0"
    label = next(t for t in output_tensors(answers, served.task, classes) if t["name"] == "label")
    assert set(label["data"]) <= {"0", "1", "2"}
    # format_outputs on a plain matrix agrees
    out = format_outputs(np.array([[0.1, 0.2, 0.7]]), loaded.signature)
    assert out == [{"label": 2, "probabilities": {"0": 0.1, "1": 0.2, "2": 0.7}}]

    # batch: columns probability_0.. and an integer label column
    inputs = tmp_path / "in.csv"
    df[["a", "b", "c"]].iloc[:20].to_csv(inputs, index=False)
    predict_batch(spec, inputs, tmp_path / "out.parquet", workspace=ws, progress=False)
    table = pq.read_table(tmp_path / "out.parquet")
    assert {"probability_0", "probability_1", "probability_2"} <= set(table.column_names)
    assert not any(".0" in name for name in table.column_names)
    assert set(table.column("label").to_pylist()) <= {0, 1, 2}

    # monitoring: the prediction profile names the classes as the server does, and
    # feedback labels 1, 1.0 and "1" are the same class
    reference = json.loads((loaded.folder / "reference" / "profile.json").read_text())
    names = set(reference["predictions"]["columns"])
    assert {"probabilities.0", "probabilities.1", "probabilities.2"} <= names
    ref = load_reference(ws, spec.name, "1")
    assert ref.classes == [0, 1, 2]
    assert ref.task.truth([1, 1.0, "1", "2", 2.0, 0], ref.classes).tolist() == [1, 1, 1, 2, 2, 0]
    # mlsd evaluate reads the labels of a file typed either way
    assert package_labels(pd.Series([0.0, 2.0, None]), loaded.manifest["meta"]).tolist()[:2] == [
        0.0,
        2.0,
    ]
    assert package_labels(pd.Series([0, 2, 1]), loaded.manifest["meta"]).tolist() == [0, 2, 1]


def test_a_package_with_float_classes_still_loads_and_serves(tmp_path, monkeypatch):
    # packages built before labels kept their type record classes as 0.0, 1.0, 2.0
    monkeypatch.setattr(packaging, "class_value", float)
    df = int_label_frame()
    spec, ws = make_system(
        tmp_path, df, "{task: multiclass, target: y}", "models: {candidates: [lightgbm]}\n"
    )
    result = train(spec, ws, progress=False)
    assert result.registered, result.reasons
    loaded = packages.load(result.package)  # verified: hashes and the holdout replay
    assert loaded.signature["output"]["classes"] == [0.0, 1.0, 2.0]
    assert all(type(c) is float for c in loaded.signature["output"]["classes"])
    served = load_served(ws.root, spec.name, "champion", spec.serving)  # holdout via serving
    answer = served.predict({"a": [1.0], "b": [0.0], "c": [0.0]})[0]
    assert answer["label"] in (0.0, 1.0, 2.0) and list(answer["probabilities"]) == [
        "0.0",
        "1.0",
        "2.0",
    ]
    # its labels still match data labelled 0/1/2 (evaluate) and feedback (monitoring)
    assert package_labels(pd.Series([0, 2, 1]), loaded.manifest["meta"]).tolist() == [0, 2, 1]
    ref = load_reference(ws, spec.name, "1")
    assert ref.task.truth([1, "2", 0.0], ref.classes).tolist() == [1, 2, 0]


# --- one training range ------------------------------------------------------------------------


def trend_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """x grows with time, so a time split leaves its largest values to valid and test; the
    category "late" appears only in the last rows."""
    rng = np.random.default_rng(seed)
    day = np.arange(n)
    x = day / n * 10 + rng.normal(scale=0.2, size=n)
    g = np.where(day < n * 0.9, rng.choice(["a", "b"], n), "late")
    noise = rng.normal(size=n)
    y = 2 * noise + (g == "a") + 0.1 * x + rng.normal(scale=0.3, size=n)
    return pd.DataFrame({"day": day, "x": x, "noise": noise, "g": g, "y": y})


def test_the_signature_range_is_the_training_splits_and_monitorings(tmp_path):
    df = trend_frame()
    spec, ws = make_system(
        tmp_path,
        df,
        "{task: regression, target: y, time: [day]}",
        "  split: {method: time, valid: 0.15, test: 0.15}\n"
        "features: {exclude: [day]}\n"
        "models: {candidates: [linear]}\n"
        "serving: {on_invalid: reject}\n",
    )
    result = train(spec, ws, progress=False)
    assert result.registered, result.reasons
    loaded = packages.load(result.package)
    x = next(i for i in loaded.signature["inputs"] if i["name"] == "x")
    g = next(i for i in loaded.signature["inputs"] if i["name"] == "g")
    train_rows = df.iloc[: int(len(df) * 0.7)]
    assert x["min"] == pytest.approx(train_rows["x"].min())
    assert x["max"] == pytest.approx(train_rows["x"].max())
    assert x["max"] < df["x"].max() - 1  # the whole table reaches further
    assert g["domain"] == ["a", "b"]  # "late" is only in valid and test rows

    # the monitoring reference says the same range
    ref = load_reference(ws, spec.name, "1")
    col = ref.profile["columns"]["x"]
    assert (col["min"], col["max"]) == (x["min"], x["max"])

    # a value inside the table's range but beyond the training split's is refused, with
    # the bounds monitoring reports for such values
    served = load_served(ws.root, spec.name, "champion", spec.serving)
    inside_table = (x["max"] + df["x"].max()) / 2
    checked = served.validator.validate([{"x": inside_table, "noise": 0.0, "g": "a"}])
    assert checked.accepted == []
    problem = checked.problems[0]
    assert problem["field"] == "x"
    assert f"outside the training range [{x['min']}, {x['max']}]" in problem["problem"]
    checked = served.validator.validate([{"x": x["max"], "noise": 0.0, "g": "late"}])
    assert checked.accepted == [] and checked.problems[0]["field"] == "g"
    assert served.validator.validate([{"x": x["max"], "noise": 0.0, "g": "b"}]).accepted == [0]

    window = {"x": np.full(50, inside_table), "noise": np.zeros(50), "g": ["a"] * 50}
    found = quality.check(
        window, 50, profile=ref.profile, signature=ref.signature, spec=QualitySpec()
    )
    assert found["columns"]["x"]["training_range"] == [x["min"], x["max"]]
    assert any(p["check"] == "out_of_range" and p["column"] == "x" for p in found["problems"])
