"""lgbm_runtime: LightGBM's C library through ctypes gives lightgbm's own predictions bit for
bit, and loading a GBDT model with it imports no lightgbm package, pandas, sklearn or scipy."""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import lightgbm as lgb
import numpy as np
import pytest

from mlsd.models import lgbm_runtime
from mlsd.models.base import FitData, ModelError, TaskInfo
from mlsd.models.gbdt import MODEL_TXT, GBDTModel
from mlsd.models.lgbm_runtime import Booster

N_FEATURES = 6
N_CODES = 12  # the categorical column 0 holds integer codes 0..11, as the featurizer writes


def _table(n: int, seed: int) -> np.ndarray:
    """Numeric columns with missing values and a categorical code column (also missing)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 0] = rng.integers(0, N_CODES, size=n)
    X[rng.random(size=X.shape) < 0.08] = np.nan
    return X


def _target(X: np.ndarray, kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    effect = rng.permutation(N_CODES).astype(float) / 4
    codes = np.nan_to_num(X[:, 0], nan=0).astype(int)
    z = effect[codes] + np.nan_to_num(X[:, 1]) - np.nan_to_num(X[:, 2]) * np.nan_to_num(X[:, 3])
    z = z + rng.normal(scale=0.3, size=len(X))
    if kind == "regression":
        return z
    if kind == "binary":
        return (z > np.median(z)).astype(float)
    return np.digitize(z, np.quantile(z, [1 / 3, 2 / 3])).astype(float)


def _model_string(kind: str, rounds: int = 60) -> str:
    X = _table(3000, seed=1)
    params = {"objective": kind, "verbose": -1, "num_threads": 1, "deterministic": True}
    if kind == "multiclass":
        params["num_class"] = 3
    train = lgb.Dataset(X, _target(X, kind, seed=2), categorical_feature=[0])
    return lgb.train(params, train, num_boost_round=rounds).model_to_string()


def _new_rows(n: int) -> np.ndarray:
    """Rows as serving sees them: missing values, unseen (12, 40) and negative codes."""
    X = _table(n, seed=3)
    rng = np.random.default_rng(4)
    odd = rng.random(size=n) < 0.1
    X[odd, 0] = rng.choice([-1.0, 12.0, 40.0, np.nan], size=int(odd.sum()))
    X[:3] = [np.nan] * N_FEATURES, [0.0] * N_FEATURES, [40.0, *[1e30] * (N_FEATURES - 1)]
    return X


KINDS = ["regression", "binary", "multiclass"]


@pytest.fixture(scope="module", params=KINDS)
def model_string(request) -> tuple[str, str]:
    return request.param, _model_string(request.param)


def test_predictions_are_lightgbms_bit_for_bit(model_string):
    kind, text = model_string
    reference = lgb.Booster(model_str=text)
    booster = Booster.from_string(text)
    k = 3 if kind == "multiclass" else 1
    assert (booster.num_features, booster.num_classes) == (N_FEATURES, k)
    assert booster.num_iterations == booster.current_iteration() == 60

    X = _new_rows(10_000)
    expected = reference.predict(X)
    for threads in (1, 2, 0):
        got = booster.predict(X, num_threads=threads)
        assert got.shape == ((10_000, 3) if k == 3 else (10_000,))
        assert np.array_equal(got, expected)
    # one row at a time goes through the single-row predictor: same bits, same shapes
    for i in range(200):
        row = X[i : i + 1]
        got = booster.predict(row)
        assert got.shape == ((1, 3) if k == 3 else (1,))
        assert np.array_equal(got, reference.predict(row)), i
    if kind != "regression":
        assert ((expected >= 0) & (expected <= 1)).all()  # transformed: probabilities
    # views, Fortran order and float32 are converted, not misread
    assert np.array_equal(booster.predict(np.asfortranarray(X[:50])), expected[:50])
    assert np.array_equal(booster.predict(X[::2][:50]), expected[::2][:50])
    single = X[:5].astype(np.float32)
    assert np.array_equal(booster.predict(single), reference.predict(single))
    assert booster.predict(X[:0]).shape == ((0, 3) if k == 3 else (0,))


def test_gbdt_model_fitted_and_loaded_predict_as_lightgbm(tmp_path):
    X, X_valid = _table(3000, seed=5), _table(1000, seed=6)
    for kind in KINDS:
        task = TaskInfo(kind, {"regression": 0, "binary": 2, "multiclass": 3}[kind])
        data = FitData(X, _target(X, kind, 7), X_valid, _target(X_valid, kind, 8), categorical=[0])
        model = GBDTModel(task, seed=1).fit(data)
        assert isinstance(model.booster_, Booster)
        model.save(tmp_path / kind)
        loaded = GBDTModel.load(tmp_path / kind)
        reference = lgb.Booster(model_file=str(tmp_path / kind / MODEL_TXT))
        rows = _new_rows(2000)
        expected = reference.predict(rows)
        assert np.array_equal(model.predict(rows), expected)
        assert np.array_equal(loaded.predict(rows), expected)
        assert np.array_equal(loaded.predict(rows[7:8]), expected[7:8])
        assert loaded.booster_.current_iteration() == model.best_iteration


def test_loading_and_predicting_imports_no_lightgbm_pandas_sklearn_or_scipy(tmp_path):
    X = _table(500, seed=9)
    data = FitData(X, _target(X, "binary", 9), categorical=[0])
    GBDTModel(TaskInfo("binary", 2), {"num_boost_round": 20}).fit(data).save(tmp_path)
    expected = lgb.Booster(model_file=str(tmp_path / MODEL_TXT)).predict(X)
    np.save(tmp_path / "expected.npy", expected)
    np.save(tmp_path / "rows.npy", X)
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        import numpy as np
        import mlsd.models.gbdt as gbdt
        folder = Path(sys.argv[1])
        X = np.load(folder / "rows.npy")
        model = gbdt.GBDTModel.load(folder)
        assert np.array_equal(model.predict(X), np.load(folder / "expected.npy"))
        assert np.array_equal(model.predict(X[:1]), np.load(folder / "expected.npy")[:1])
        heavy = ("lightgbm", "pandas", "sklearn", "scipy")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bad_model_text_is_a_model_error_with_lightgbms_message(tmp_path):
    with pytest.raises(ModelError, match="doesn't specify the number of classes"):
        Booster.from_string("not a model")
    with pytest.raises(ModelError, match="LightGBM could not load the model"):
        Booster.from_string("tree\nversion=v4\nnum_class=1\n")

    X = _table(300, seed=10)
    model = GBDTModel(TaskInfo("regression"), {"num_boost_round": 5})
    model.fit(FitData(X, _target(X, "regression", 10))).save(tmp_path)
    text = (tmp_path / MODEL_TXT).read_text()
    (tmp_path / MODEL_TXT).write_text(text.replace("num_class=1", "num_klass=1"))
    with pytest.raises(ModelError, match=r"model.txt is damaged: .*number of classes"):
        GBDTModel.load(tmp_path)


def test_wrong_shapes_and_freed_boosters_are_model_errors():
    booster = Booster.from_string(_model_string("binary", rounds=5))
    with pytest.raises(ModelError, match=f"expects {N_FEATURES} features"):
        booster.predict(np.zeros((2, N_FEATURES + 1)))
    with pytest.raises(ModelError, match=f"expects {N_FEATURES} features"):
        booster.predict(np.zeros(N_FEATURES))
    booster.predict(np.zeros((1, N_FEATURES)))  # makes a single-row predictor to free
    booster.free()
    booster.free()  # twice is harmless
    with pytest.raises(ModelError, match="freed"):
        booster.predict(np.zeros((1, N_FEATURES)))


def test_missing_library_is_a_clear_model_error(monkeypatch, tmp_path):
    assert lgbm_runtime.find_library() in lgbm_runtime.library_candidates()
    monkeypatch.setattr(lgbm_runtime, "_lib", None)
    monkeypatch.setattr(lgbm_runtime, "library_candidates", lambda: [tmp_path / "nothing.so"])
    with pytest.raises(ModelError, match=r"lib_lightgbm.* was not found") as info:
        Booster.from_string("whatever")
    assert "nothing.so" in info.value.message and "install lightgbm" in info.value.render()


def test_copies_rebuild_from_the_text_and_predict_alike():
    text = _model_string("multiclass", rounds=10)
    booster = Booster.from_string(text)
    X = _new_rows(100)
    for other in (copy.copy(booster), copy.deepcopy(booster), pickle.loads(pickle.dumps(booster))):
        assert other._handle.value != booster._handle.value
        assert other.model_to_string() == text
        assert np.array_equal(other.predict(X), booster.predict(X))
    dump = booster.dump_model()
    assert dump["num_class"] == 3 and len(dump["tree_info"]) == 30


def test_one_booster_predicts_from_many_threads():
    booster = Booster.from_string(_model_string("binary"))
    X = _new_rows(400)
    expected = booster.predict(X)
    failures: list[str] = []

    def work(offset: int) -> None:
        for i in range(offset, len(X), 3):
            if not np.array_equal(booster.predict(X[i : i + 1]), expected[i : i + 1]):
                failures.append(f"row {i}")
        if not np.array_equal(booster.predict(X, num_threads=1), expected):
            failures.append("batch")

    threads = [threading.Thread(target=work, args=(i % 3,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert 1 <= len(booster._fast_all) <= len(threads)  # single-row predictors are pooled


def test_single_row_latency_against_lightgbm(capsys):
    """Printed, not asserted: 1-row predict on a 200-tree binary model with 20 features."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(3000, 20))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(size=3000) > 0).astype(float)
    params = {"objective": "binary", "verbose": -1, "num_threads": 1}
    text = lgb.train(params, lgb.Dataset(X, y), num_boost_round=200).model_to_string()
    reference, booster = lgb.Booster(model_str=text), Booster.from_string(text)
    row = X[:1].copy()
    assert np.array_equal(booster.predict(row), reference.predict(row))

    def per_call_us(predict, reps: int = 2000) -> float:
        predict()
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(reps):
                predict()
            best = min(best, (time.perf_counter() - start) / reps)
        return best * 1e6

    ours = per_call_us(lambda: booster.predict(row))
    theirs = per_call_us(lambda: reference.predict(row))
    theirs_one_thread = per_call_us(lambda: reference.predict(row, num_threads=1))
    with capsys.disabled():
        print(
            f"\n1-row predict, 200 trees x 20 features: lgbm_runtime {ours:.1f} us; "
            f"lightgbm.Booster.predict {theirs:.1f} us, "
            f"with num_threads=1 {theirs_one_thread:.1f} us"
        )
