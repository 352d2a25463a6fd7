"""LinearModel: sklearn fit, numpy predict, coefficients JSON round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mlsd.models.base import FitData, ModelError, TaskInfo, read_header
from mlsd.models.families import load_model, make_model
from mlsd.models.linear import COEF_FILE, LinearModel

BINARY = TaskInfo("binary", 2)
MULTI = TaskInfo("multiclass", 3)
REGRESSION = TaskInfo("regression")


def _classes(n: int = 600, k: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    logits = X @ rng.normal(size=(4, k)) * 2
    y = np.array([rng.choice(k, p=np.exp(r) / np.exp(r).sum()) for r in logits], dtype=float)
    return X, y


def test_ridge_recovers_coefficients(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 2))
    y = 2 * X[:, 0] - 3 * X[:, 1] + 0.5 + rng.normal(scale=0.1, size=2000)
    model = LinearModel(REGRESSION).fit(FitData(X, y))
    np.testing.assert_allclose(model.coef_[:, 0], [2, -3], atol=0.02)
    assert model.intercept_[0] == pytest.approx(0.5, abs=0.02)
    model.save(tmp_path)
    assert np.array_equal(LinearModel.load(tmp_path).predict(X), model.predict(X))


@pytest.mark.parametrize("task", [BINARY, MULTI], ids=["binary", "multiclass"])
def test_logistic_matches_sklearn_and_round_trips(task, tmp_path):
    X, y = _classes(k=task.n_classes)
    model = LinearModel(task, {"C": 0.5}).fit(FitData(X, y))
    reference = model._estimator().fit(X, y).predict_proba(X)
    pred = model.predict(X)
    expected = reference[:, 1] if task.kind == "binary" else reference
    np.testing.assert_allclose(pred, expected, rtol=0, atol=1e-9)
    if task.kind == "multiclass":
        np.testing.assert_allclose(pred.sum(axis=1), 1.0)

    written = model.save(tmp_path)
    assert sorted(written) == sorted([COEF_FILE, "model.json"])
    assert read_header(tmp_path)["family"] == "linear"
    state = json.loads((tmp_path / COEF_FILE).read_text())
    assert state["n_classes"] == task.n_classes
    loaded = load_model(tmp_path)
    assert isinstance(loaded, LinearModel)
    assert np.array_equal(loaded.predict(X), pred)


def test_balanced_class_weight_raises_minority_recall():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3000, 3))
    y = (X[:, 0] + rng.normal(scale=1.5, size=3000) > 2.6).astype(float)
    assert 0.01 < y.mean() < 0.1
    recall = {}
    for weight in (None, "balanced"):
        model = make_model("linear", BINARY, {"class_weight": weight}).fit(FitData(X, y))
        recall[weight] = ((model.predict(X) > 0.5) & (y == 1)).sum() / (y == 1).sum()
    assert recall["balanced"] > recall[None] + 0.2


def test_class_missing_from_training_gets_near_zero_probability():
    X, y = _classes(k=2)
    model = LinearModel(MULTI).fit(FitData(X, y))  # class 2 never seen
    pred = model.predict(X)
    assert pred.shape == (len(X), 3)
    assert pred[:, 2].max() < 1e-6
    np.testing.assert_allclose(pred.sum(axis=1), 1.0)


def test_bad_parameters_and_inputs_are_model_errors():
    with pytest.raises(ModelError, match="did you mean 'alpha'"):
        LinearModel(REGRESSION, {"alpah": 1.0})
    with pytest.raises(ModelError, match="class_weight"):
        LinearModel(BINARY, {"class_weight": "heavy"})
    assert LinearModel(REGRESSION, {"class_weight": None}).resolved == {"alpha": 1.0}
    with pytest.raises(ModelError, match="not regression"):
        LinearModel(REGRESSION, {"class_weight": "balanced"})
    with pytest.raises(ModelError, match="parameter C must be a number > 0 — given 0"):
        LinearModel(BINARY, {"C": 0})
    X, y = _classes()
    with pytest.raises(ModelError, match="missing or infinite"):
        LinearModel(BINARY).fit(FitData(np.where(X > 2, np.nan, X), y))
    with pytest.raises(ModelError, match="single class"):
        LinearModel(BINARY).fit(FitData(X, np.zeros(len(X))))
    model = LinearModel(BINARY).fit(FitData(X, y))
    with pytest.raises(ModelError, match="expects 4 features"):
        model.predict(X[:, :3])
    with pytest.raises(ModelError, match="not fitted"):
        LinearModel(BINARY).predict(X)


def test_loading_and_predicting_imports_no_sklearn(tmp_path):
    """The serving path: numpy only (no scikit-learn, pandas or lightgbm)."""
    X, y = _classes(k=3)
    LinearModel(MULTI).fit(FitData(X, y)).save(tmp_path)
    np.save(tmp_path / "X.npy", X)
    code = (
        "import sys, numpy as np\n"
        "from mlsd.models.families import load_model\n"
        f"folder = {str(tmp_path)!r}\n"
        "model = load_model(folder)\n"
        "p = model.predict(np.load(folder + '/X.npy'))\n"
        "assert p.shape == (600, 3), p.shape\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('sklearn', 'pandas', 'lightgbm')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_rows_prediction_does_not_depend_on_its_batch():
    """Batch and online answers must be identical: no BLAS blocking in the scores."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 60))
    y = (X[:, 0] + rng.normal(size=3000) > 0).astype(float)
    model = LinearModel(TaskInfo("binary", 2)).fit(FitData(X=X, y=y))
    full = model.predict(X)
    for start in range(0, 3000, 97):
        assert np.array_equal(model.predict(X[start : start + 7]), full[start : start + 7])
    assert all(np.array_equal(model.predict(X[i : i + 1]), full[i : i + 1]) for i in range(50))
