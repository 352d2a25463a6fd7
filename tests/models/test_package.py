"""The model package: build → load round trip, tamper detection, no pickle, holdout replay,
atomic build, and a serving path free of pandas, scikit-learn and MLflow.

The model is a tiny numpy linear scorer defined here (the real families live elsewhere); this
module imports no pandas at top level because the subprocess test imports it to get the class.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlsd.features.featurizer import Featurizer, FittedFeaturizer
from mlsd.models import package as pkg
from mlsd.models.base import FitData, Model, TaskInfo, read_header
from mlsd.models.package import Package, PackageError, build, find_pickles, load

SRC = Path(__file__).resolve().parents[2] / "src"
TYPES = {"x1": "numeric", "x2": "numeric", "color": "categorical", "flag": "boolean"}


class LinearScorer(Model):
    """A least-squares scorer: identity (regression), sigmoid (binary) or softmax (multiclass)
    of a linear function, saved as coefficients.json."""

    family = "test_linear"
    encoding = "onehot"

    def fit(self, data: FitData) -> LinearScorer:
        X = np.column_stack([data.X, np.ones(len(data.X))])
        if self.task.kind == "multiclass":
            Y = np.eye(self.task.n_classes)[data.y.astype(int)] * 4.0 - 2.0
        else:
            Y = data.y.astype(float) * (4.0 if self.task.kind == "binary" else 1.0)
        solution = np.linalg.lstsq(X, Y, rcond=None)[0]
        self.coef_ = solution[:-1].reshape(X.shape[1] - 1, -1)  # (features, outputs)
        self.intercept_ = np.atleast_1d(solution[-1])
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        z = X @ self.coef_ + self.intercept_
        if self.task.kind == "multiclass":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        z = z[:, 0]
        return 1.0 / (1.0 + np.exp(-z)) if self.task.kind == "binary" else z

    def save(self, folder: Path) -> list[str]:
        self._write_header(folder)
        state = {"coef": self.coef_.tolist(), "intercept": self.intercept_.tolist()}
        (folder / "coefficients.json").write_text(json.dumps(state), encoding="utf-8")
        return ["model.json", "coefficients.json"]

    @classmethod
    def load(cls, folder: Path) -> LinearScorer:
        header = read_header(folder)
        model = cls(TaskInfo(**header["task"]), header["params"], header["seed"])
        state = json.loads((folder / "coefficients.json").read_text(encoding="utf-8"))
        model.coef_ = np.asarray(state["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(state["intercept"], dtype=np.float64)
        return model


def make_data(rows: int, seed: int = 0) -> dict:
    """Raw columns as the offline code has them: floats with NaN, strings with None, bools."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=rows)
    x1[rng.random(rows) < 0.1] = np.nan
    color = rng.choice(np.array(["red", "green", "blue"], dtype=object), rows)
    color[rng.random(rows) < 0.1] = None
    return {
        "x1": x1,
        "x2": rng.uniform(0, 10, rows),
        "color": color,
        "flag": rng.random(rows) < 0.4,
    }


def make_parts(kind: str = "binary", rows: int = 300) -> tuple[Model, FittedFeaturizer, dict]:
    """A fitted featurizer and model, and a holdout (with an extra target column)."""
    data = make_data(rows)
    featurizer = Featurizer(TYPES, encoding="onehot").fit(data)
    X = featurizer.transform(data)
    signal = np.nan_to_num(data["x1"]) + 0.3 * data["x2"] + (data["color"] == "red")
    if kind == "regression":
        y, task = signal, TaskInfo("regression")
    elif kind == "binary":
        y, task = (signal > np.median(signal)).astype(int), TaskInfo("binary", 2)
    else:
        y, task = np.digitize(signal, np.quantile(signal, [0.33, 0.66])), TaskInfo("multiclass", 3)
    model = LinearScorer(task).fit(FitData(X, y))
    holdout = {**make_data(40, seed=1), "target": np.arange(40.0)}
    return model, featurizer, holdout


def build_package(folder: Path, kind: str = "binary") -> Path:
    model, featurizer, holdout = make_parts(kind)
    return build(
        folder,
        model=model,
        featurizer=featurizer,
        signature={"inputs": {name: {"type": t} for name, t in TYPES.items()}, "output": kind},
        metrics={"test": {"roc_auc": 0.91, "undefined": float("nan")}},
        profile={"x1": {"mean": 0.0}},
        holdout=holdout,
        meta={"task": kind, "system": "demo", "family": model.family, "threshold": 0.5},
    )


@pytest.fixture(autouse=True)
def _test_loader(monkeypatch):
    """load() finds the test family (the real families module may not exist yet)."""
    monkeypatch.setattr(pkg, "model_loader", LinearScorer.load)


@pytest.fixture
def built(tmp_path) -> Path:
    return build_package(tmp_path / "pkg")


def edit_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    index = data.index(b"1")  # a digit of a number: the file stays valid JSON
    data[index : index + 1] = b"2"
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_round_trip_predicts_the_same(tmp_path, kind):
    model, featurizer, holdout = make_parts(kind)
    folder = build_package(tmp_path / "pkg", kind)
    loaded = load(folder)
    assert isinstance(loaded, Package)
    expected = model.predict(featurizer.transform(holdout))
    np.testing.assert_array_equal(loaded.predict_matrix(holdout), expected)
    assert loaded.meta["task"] == kind and loaded.model.task.kind == kind
    assert loaded.signature["output"] == kind
    assert loaded.featurizer.to_json() == featurizer.to_json()
    assert loaded.metrics == {"test": {"roc_auc": 0.91, "undefined": None}}  # NaN → null
    table = pq.read_table(folder / "holdout.parquet")
    if kind == "multiclass":
        assert [c for c in table.column_names if c.startswith("__")] == [
            "__expected_0__",
            "__expected_1__",
            "__expected_2__",
        ]
    else:
        assert "__expected__" in table.column_names
    assert "target" in table.column_names  # the holdout is kept as the caller gave it


def test_layout_and_manifest(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["format"] == "mlsd.package" and manifest["version"] == 1
    assert sorted(manifest["files"]) == [
        "featurizer.json",
        "holdout.parquet",
        "metrics.json",
        "model/coefficients.json",
        "model/model.json",
        "reference/profile.json",
        "signature.json",
    ]
    assert manifest["meta"]["system"] == "demo"
    assert manifest["model"]["family"] == "test_linear"
    assert {"python", "numpy", "pyarrow", "mlsd"} <= set(manifest["packages"])
    assert manifest["created_at"].endswith("+00:00")
    assert find_pickles(built) == []
    leftovers = [p.name for p in built.parent.iterdir() if p.name != "pkg"]
    assert leftovers == []


@pytest.mark.parametrize("name", ["model/coefficients.json", "featurizer.json", "signature.json"])
def test_a_changed_file_is_refused(built, name):
    edit_byte(built / name)
    with pytest.raises(PackageError, match="modified after it was built") as info:
        load(built)
    assert name in str(info.value)


def test_an_extra_file_is_refused(built):
    (built / "model" / "notes.txt").write_text("hello")
    with pytest.raises(PackageError, match=r"model/notes\.txt") as info:
        load(built)
    assert "does not list" in str(info.value)


def test_a_missing_file_is_refused(built):
    (built / "metrics.json").unlink()
    with pytest.raises(PackageError, match=r"missing.*metrics\.json"):
        load(built)


@pytest.mark.parametrize("name", ["model/extra.pkl", "weights.joblib", "reference/x.pickle"])
def test_a_pickle_is_refused_even_without_verification(built, name):
    (built / name).write_bytes(pickle.dumps({"a": 1}))
    for verify in (True, False):
        with pytest.raises(PackageError, match="pickle") as info:
            load(built, verify=verify)
        assert name in str(info.value)


def test_find_pickles_by_name_and_content(built):
    (built / "model" / "innocent.bin").write_bytes(pickle.dumps([1, 2, 3]))
    (built / "a.PKL").write_text("not really")
    found = sorted(p.relative_to(built).as_posix() for p in find_pickles(built))
    assert found == ["a.PKL", "model/innocent.bin"]


def test_edited_holdout_with_a_fixed_manifest_fails_the_replay(built):
    """An inconsistent package (recorded outputs differ, hashes agree) is refused."""
    path = built / "holdout.parquet"
    table = pq.read_table(path)
    expected = table.column("__expected__").to_numpy().copy()
    expected[7] += 1e-3
    index = table.column_names.index("__expected__")
    table = table.set_column(index, "__expected__", pa.array(expected))
    pq.write_table(table, path)
    manifest = json.loads((built / "manifest.json").read_text())
    manifest["files"]["holdout.parquet"] = pkg.sha256_file(path)
    (built / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError, match=r"different outputs on 1 of 40 rows") as info:
        load(built)
    assert "at row 7" in str(info.value) and "0.001" in str(info.value)
    assert load(built, verify=False).model is not None  # no replay without verification


def test_build_refuses_an_existing_folder(built):
    before = (built / "manifest.json").read_bytes()
    with pytest.raises(PackageError, match="already exists"):
        build_package(built)
    (built.parent / "empty").mkdir()
    with pytest.raises(PackageError, match="already exists"):
        build_package(built.parent / "empty")
    assert (built / "manifest.json").read_bytes() == before


def test_a_crash_mid_build_leaves_nothing(tmp_path, monkeypatch):
    def crash(self, folder):
        (folder / "model.json").write_text("{}")  # half written, then the crash
        raise RuntimeError("disk full")

    monkeypatch.setattr(LinearScorer, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        build_package(tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []


def test_build_refuses_a_model_that_does_not_load_back(tmp_path, monkeypatch):
    """A lossy save/load (here: coefficients rounded) is caught before the package exists."""
    original = LinearScorer.load.__func__

    def lossy(cls, folder):
        model = original(cls, folder)
        model.coef_ = np.round(model.coef_, 3)
        return model

    monkeypatch.setattr(LinearScorer, "load", classmethod(lossy))
    with pytest.raises(PackageError, match="different outputs"):
        build_package(tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []


def test_build_checks_its_inputs(tmp_path):
    model, featurizer, holdout = make_parts()
    common = {"model": model, "featurizer": featurizer, "profile": {}, "meta": {}}
    with pytest.raises(PackageError, match="lacks the input column"):
        build(tmp_path / "a", signature={}, metrics={}, holdout={"x1": [1.0]}, **common)
    with pytest.raises(PackageError, match="no rows"):
        empty = {name: [] for name in holdout}
        build(tmp_path / "b", signature={}, metrics={}, holdout=empty, **common)
    with pytest.raises(PackageError, match="signature is not JSON"):
        build(tmp_path / "c", signature={"f": object}, metrics={}, holdout=holdout, **common)
    with pytest.raises(PackageError, match="reserved prefix"):
        bad = {**holdout, "__expected__": np.zeros(40)}
        build(tmp_path / "d", signature={}, metrics={}, holdout=bad, **common)
    assert list(tmp_path.iterdir()) == []


def test_not_a_package(tmp_path, built):
    with pytest.raises(PackageError, match="not a folder"):
        load(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(PackageError, match=r"no manifest\.json"):
        load(tmp_path / "half")
    (built / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        load(built)
    (built / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(PackageError, match="not an mlsd package manifest"):
        load(built)


def test_pandas_holdout_columns(tmp_path):
    """Holdouts given as pandas columns (categoricals included) are stored and replayed."""
    pd = pytest.importorskip("pandas")
    model, featurizer, holdout = make_parts()
    frame = pd.DataFrame(holdout)
    frame["color"] = frame["color"].astype("category")
    folder = build(
        tmp_path / "pkg",
        model=model,
        featurizer=featurizer,
        signature={},
        metrics={},
        profile={},
        holdout=frame,
        meta={},
    )
    np.testing.assert_array_equal(
        load(folder).predict_matrix(holdout), model.predict(featurizer.transform(holdout))
    )


def test_loading_imports_no_pandas_sklearn_or_mlflow(built):
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("pkgtests", {str(Path(__file__))!r})
        tests = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tests)
        from mlsd.models import package
        package.model_loader = tests.LinearScorer.load
        loaded = package.load({str(built)!r})
        row = {{"x1": [0.5], "x2": [3.0], "color": ["red"], "flag": [True]}}
        assert loaded.predict_matrix(row).shape == (1,)
        heavy = ("pandas", "sklearn", "mlflow", "pydantic")
        print(",".join(sorted(m for m in heavy if m in sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == ""
