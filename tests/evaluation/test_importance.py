"""Importance: SHAP contributions add up to the raw score; the views find the signal; which
views apply is the importance method the family declares."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.evaluation import importance
from mlsd.features import Featurizer
from mlsd.model_params import COEFFICIENTS, FAMILIES, TREES
from mlsd.models.base import FitData, TaskInfo
from mlsd.models.families import EnsembleModel, make_model
from mlsd.models.gbdt import GBDTModel
from mlsd.models.linear import LinearModel

COLUMNS = {"signal": "numeric", "colour": "categorical", "noise": "numeric"}


def _data(n: int = 1500, seed: int = 0) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    noise = rng.normal(size=n)
    z = 2.0 * signal + np.where(colour == "red", 1.0, 0.0) - 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    columns = {"signal": signal, "colour": pd.array(colour, dtype="category"), "noise": noise}
    return columns, y


def _fit(encoding: str, model_cls, task: TaskInfo, params=None):
    columns, y = _data()
    fz = Featurizer(COLUMNS, encoding=encoding).fit(columns)
    X = fz.transform(columns)
    fit = FitData(
        X=X[:1000],
        y=y[:1000],
        X_valid=X[1000:],
        y_valid=y[1000:],
        feature_names=fz.feature_names,
        categorical=fz.categorical_indices,
    )
    return model_cls(task, params or {}, seed=0).fit(fit), fz, X, y


def test_shap_contributions_sum_to_the_raw_score():
    model, _, X, _ = _fit("codes", GBDTModel, TaskInfo("binary", 2))
    contrib = importance.contributions(model, X[:300])
    assert contrib.shape == (300, X.shape[1] + 1)
    raw = importance.raw_score(model, X[:300])
    np.testing.assert_allclose(contrib.sum(axis=1), raw, rtol=1e-9, atol=1e-9)
    # and the raw score is the model's own prediction before the sigmoid
    np.testing.assert_allclose(1 / (1 + np.exp(-raw)), model.predict(X[:300]), rtol=1e-9)


def test_multiclass_contributions_sum_per_class():
    columns, y = _data()
    y3 = np.where(columns["signal"] > 0.5, 2.0, y)
    fz = Featurizer(COLUMNS).fit(columns)
    X = fz.transform(columns)
    model = GBDTModel(TaskInfo("multiclass", 3), {"num_boost_round": 20}).fit(
        FitData(X=X, y=y3, feature_names=fz.feature_names, categorical=fz.categorical_indices)
    )
    contrib = importance.contributions(model, X[:50])
    assert contrib.shape == (50, 3, X.shape[1] + 1)
    np.testing.assert_allclose(
        contrib.sum(axis=2), importance.raw_score(model, X[:50]).reshape(50, 3), atol=1e-9
    )


def test_gbdt_views_rank_the_signal_first_and_the_noise_last():
    model, fz, X, y = _fit("codes", GBDTModel, TaskInfo("binary", 2))
    out = importance.analyse(model, fz, X[1000:], y[1000:], task="binary", metric="roc_auc")
    assert out["gain"][0]["feature"] == "signal"
    assert out["shap"]["mean_abs"][0]["feature"] == "signal"
    assert out["coefficients"] is None
    drops = {d["feature"]: d["drop"] for d in out["permutation"]["drop"]}
    assert set(drops) == set(COLUMNS)  # one entry per input column, not per feature
    assert drops["signal"] > 0.1
    assert drops["signal"] > drops["colour"] > drops["noise"]
    assert abs(drops["noise"]) < 0.02
    assert sum(g["share"] for g in out["gain"]) == pytest.approx(1.0)


def test_linear_views_use_coefficients_and_group_one_hot_columns():
    model, fz, X, y = _fit("onehot", LinearModel, TaskInfo("binary", 2))
    out = importance.analyse(model, fz, X[1000:], y[1000:], task="binary", metric="log_loss")
    assert out["gain"] is None and out["shap"] is None
    assert out["coefficients"][0]["feature"] == "signal"
    assert out["coefficients"][0]["coefficient"] > 0
    drops = {d["feature"]: d["drop"] for d in out["permutation"]["drop"]}
    # the colour's one-hot columns are shuffled together: one entry named after the column
    assert "colour" in drops and not any(k.startswith("colour=") for k in drops)
    assert max(drops, key=drops.get) == "signal"


def test_the_views_follow_the_importance_method_each_family_declares():
    task = TaskInfo("binary", 2)
    for name, family in FAMILIES.items():
        assert importance.method(make_model(name, task)) == family.importance
    assert {FAMILIES["lightgbm"].importance, FAMILIES["linear"].importance} == {TREES, COEFFICIENTS}
    # an ensemble is no declared family: permutation importance only
    model, fz, X, _ = _fit("codes", GBDTModel, task)
    ensemble = EnsembleModel(task, {}, 0, [model])
    assert importance.method(ensemble) is None
    assert importance.gain(ensemble, fz) is None and importance.shap(ensemble, fz, X) is None
