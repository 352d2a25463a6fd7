"""The featurizer as a whole: column selection, fit/transform contract, JSON state, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.columns import select_features
from mlsd.errors import FeatureError
from mlsd.features import Featurizer, FittedFeaturizer, load, save
from mlsd.spec import FeaturesSpec, SystemSpec

SRC = Path(__file__).resolve().parents[2] / "src"
TYPES = {"age": "numeric", "member": "boolean", "city": "categorical", "seen": "datetime"}


def frame(rows: int = 200, seed: int = 0) -> dict[str, np.ndarray | pd.Categorical]:
    """A batch as the offline code passes it: numpy arrays and a pandas Categorical."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 10, rows)
    age[rng.random(rows) < 0.1] = np.nan
    city = rng.choice(
        ["paris", "lyon", "nice", "brest", "metz"], rows, p=[0.4, 0.3, 0.2, 0.08, 0.02]
    )
    codes = pd.Categorical(city).codes.copy()
    codes[rng.random(rows) < 0.05] = -1
    minutes = rng.integers(0, 10**6, rows).astype("timedelta64[m]")
    seen = (np.datetime64("2020-01-01T00:00") + minutes).astype("datetime64[ms]")
    seen[rng.random(rows) < 0.05] = np.datetime64("NaT")
    return {
        "age": age,
        "member": rng.random(rows) < 0.3,
        "city": pd.Categorical.from_codes(codes, categories=sorted(set(city))),
        "seen": seen,
    }


def as_request(batch: dict, row: int) -> dict[str, list]:
    """One row as an online JSON request would carry it (None for missing, ISO strings)."""
    age = batch["age"][row]
    seen = batch["seen"][row]
    return {
        "age": [None if np.isnan(age) else float(age)],
        "member": [bool(batch["member"][row])],
        "city": [None if batch["city"].codes[row] < 0 else str(batch["city"][row])],
        "seen": [None if np.isnat(seen) else str(seen)],
    }


@pytest.fixture(params=["codes", "onehot"])
def fitted(request) -> FittedFeaturizer:
    options = FeaturesSpec(min_frequency=3, columns={"age": {"cyclical": 50}})
    return Featurizer(TYPES, options, encoding=request.param).fit(frame())


# --- contract ------------------------------------------------------------------------------


def test_output_contract(fitted):
    out = fitted.transform(frame(50, seed=1))
    assert out.dtype == np.float64 and out.flags.c_contiguous
    assert out.shape == (50, len(fitted.feature_names))
    assert not np.isnan(out).any()
    assert fitted.input_columns == TYPES
    empty = fitted.transform({name: [] for name in TYPES})
    assert empty.shape == (0, len(fitted.feature_names))


def test_codes_encoding_lists_categorical_positions():
    f = Featurizer(TYPES, encoding="codes").fit(frame())
    assert [f.feature_names[i] for i in f.categorical_indices] == ["city"]
    codes = f.transform(frame(30, seed=3))[:, f.categorical_indices[0]]
    assert np.array_equal(codes, codes.astype(int)) and codes.min() >= 0


def test_online_row_equals_offline_batch(fitted):
    batch = frame(40, seed=2)
    offline = fitted.transform(batch)
    for row in range(40):
        online = fitted.transform(as_request(batch, row))
        assert np.array_equal(online[0], offline[row]), row


def test_chunked_transform_equals_small_batches(fitted, monkeypatch):
    batch = frame(500, seed=4)
    whole = fitted.transform(batch)
    monkeypatch.setattr("mlsd.features.featurizer._BLOCK_CELLS", 64)  # many small chunks
    assert np.array_equal(fitted.transform(batch), whole)


def test_input_forms_agree():
    pa = pytest.importorskip("pyarrow")
    batch = frame(100, seed=5)
    f = Featurizer(TYPES).fit(batch)
    expected = f.transform(batch)
    city = np.asarray(batch["city"]).astype(object)
    forms = [
        {**batch, "city": city},  # object strings (NaN for missing)
        {**batch, "city": pa.array(batch["city"])},  # pyarrow DictionaryArray
        {
            **batch,
            "city": pa.chunked_array([pa.array(batch["city"][:30]), pa.array(batch["city"][30:])]),
        },
        {**batch, "city": pd.Series(batch["city"])},  # Series of category dtype
        {k: pa.array(v) for k, v in batch.items()},
    ]
    for data in forms:
        assert np.array_equal(f.transform(data), expected)


def test_extra_columns_are_ignored_and_missing_ones_named(fitted):
    batch = frame(5)
    assert fitted.transform({**batch, "unused": np.zeros(5)}).shape[0] == 5
    del batch["city"]
    with pytest.raises(FeatureError, match="'city'"):
        fitted.transform(batch)


def test_bad_inputs_raise_feature_error(fitted):
    with pytest.raises(FeatureError, match="length"):
        fitted.transform({**frame(5), "age": np.zeros(4)})
    with pytest.raises(FeatureError, match="list or array"):
        fitted.transform({**as_request(frame(5), 0), "age": 42.0})
    with pytest.raises(FeatureError, match="zero rows"):
        Featurizer(TYPES).fit({name: [] for name in TYPES})


# --- JSON state ----------------------------------------------------------------------------


def test_json_roundtrip_and_determinism(fitted, tmp_path):
    again = Featurizer(
        TYPES,
        FeaturesSpec(min_frequency=3, columns={"age": {"cyclical": 50}}),
        encoding=fitted.encoding,
    ).fit(frame())
    assert json.dumps(again.to_json()) == json.dumps(fitted.to_json())
    path = save(fitted, tmp_path / "featurizer.json")
    other = save(again, tmp_path / "again.json")
    assert path.read_bytes() == other.read_bytes()
    loaded = load(path)
    batch = frame(60, seed=9)
    assert np.array_equal(loaded.transform(batch), fitted.transform(batch))
    assert loaded.feature_names == fitted.feature_names
    assert loaded.categorical_indices == fitted.categorical_indices
    restored = FittedFeaturizer.from_json(json.loads(json.dumps(fitted.to_json())))
    assert np.array_equal(restored.transform(batch), fitted.transform(batch))


def test_corrupt_state_is_refused(fitted, tmp_path):
    state = fitted.to_json()
    with pytest.raises(FeatureError, match="not a saved"):
        FittedFeaturizer.from_json({"transforms": []})
    with pytest.raises(FeatureError, match="version"):
        FittedFeaturizer.from_json({**state, "version": 99})
    with pytest.raises(FeatureError, match="inconsistent"):
        FittedFeaturizer.from_json({**state, "feature_names": ["x"]})
    broken = json.loads(json.dumps(state))
    broken["transforms"][0]["kind"] = "magic"
    with pytest.raises(FeatureError, match="unknown transform kind"):
        FittedFeaturizer.from_json(broken)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FeatureError, match="not valid JSON"):
        load(tmp_path / "bad.json")
    with pytest.raises(FeatureError, match="does not exist"):
        load(tmp_path / "absent.json")


# --- misuse --------------------------------------------------------------------------------


def test_misused_options_raise_feature_error():
    with pytest.raises(FeatureError, match=r"cyclical applies to numeric"):
        Featurizer({"c": "categorical"}, FeaturesSpec(columns={"c": {"cyclical": 7}}))
    with pytest.raises(FeatureError, match="not a feature column"):
        Featurizer({"a": "numeric"}, FeaturesSpec(crosses=[["a", "b"]]))
    with pytest.raises(FeatureError, match="text"):
        Featurizer({"note": "text"})
    with pytest.raises(FeatureError, match="encoding"):
        Featurizer({"a": "numeric"}, encoding="dense")  # type: ignore[arg-type]


def test_generated_name_collision_is_refused():
    data = {"x": [1.0, None], "x__missing": [0.0, 1.0]}
    with pytest.raises(FeatureError, match="x__missing"):
        Featurizer({"x": "numeric", "x__missing": "numeric"}).fit(data)


# --- select_features -----------------------------------------------------------------------


def spec(**features) -> SystemSpec:
    """A minimal spec with target ``y``, entity id ``uid`` and the given features section."""
    return SystemSpec.model_validate(
        {
            "name": "t",
            "problem": {"task": "binary", "target": "y", "id": "uid"},
            "data": {"source": "data.csv"},
            "features": features,
        }
    )


COLUMNS = {
    "uid": "numeric",
    "age": "numeric",
    "y": "boolean",
    "zip": "identifier",
    "note": "text",
    "city": "categorical",
    "seen": "datetime",
    "leak": "numeric",
}


def test_select_features_rules():
    assert select_features(spec(), COLUMNS) == {
        "age": "numeric",
        "city": "categorical",
        "seen": "datetime",
        "leak": "numeric",
    }
    assert select_features(spec(exclude=["leak", "seen"]), COLUMNS) == {
        "age": "numeric",
        "city": "categorical",
    }
    # include keeps data order, and may bring the entity id back on purpose
    assert list(select_features(spec(include=["city", "uid", "age"]), COLUMNS)) == [
        "uid",
        "age",
        "city",
    ]


def test_select_features_unknown_names():
    with pytest.raises(FeatureError, match=r"features.exclude names 'lek'.*'leak'"):
        select_features(spec(exclude=["lek"]), COLUMNS)
    with pytest.raises(FeatureError, match=r"features.include names 'agee'.*'age'"):
        select_features(spec(include=["agee"]), COLUMNS)
    with pytest.raises(FeatureError, match=r"features.columns names 'citi'"):
        select_features(spec(columns={"citi": {"min_frequency": 2}}), COLUMNS)
    with pytest.raises(FeatureError, match="identifier column"):
        select_features(spec(include=["zip"]), COLUMNS)


def test_select_features_accepts_cross_options():
    chosen = select_features(
        spec(crosses=[["city", "age"]], columns={"city__x__age": {"min_frequency": 1}}), COLUMNS
    )
    assert "city" in chosen and "age" in chosen


# --- serving-path imports ------------------------------------------------------------------


def test_transform_path_imports_neither_pandas_nor_pydantic(tmp_path):
    path = save(Featurizer(TYPES).fit(frame()), tmp_path / "f.json")
    code = textwrap.dedent(f"""
        import sys
        import mlsd.features
        f = mlsd.features.load({str(path)!r})
        out = f.transform({{"age": [30.0], "member": ["yes"], "city": ["paris"],
                            "seen": ["2021-05-01T10:00"]}})
        assert out.shape == (1, len(f.feature_names))
        heavy = {{"pandas", "pyarrow", "sklearn", "pydantic", "yaml"}} & set(sys.modules)
        print(sorted(heavy))
    """)
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC)},
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
