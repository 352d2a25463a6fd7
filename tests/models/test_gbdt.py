"""GBDTModel: LightGBM native training, deterministic text model, early stopping."""

from __future__ import annotations

import numpy as np
import pytest
from tree_data import TASKS, tree_data

from mlsd.models.base import FitData, ModelError, TaskInfo
from mlsd.models.families import load_model, make_model
from mlsd.models.gbdt import MAX_ROUNDS, MODEL_TXT, GBDTModel


def _loss(kind: str, y: np.ndarray, p: np.ndarray) -> float:
    if kind == "regression":
        return float(np.mean((y - p) ** 2))
    if kind == "binary":
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y.astype(int)], 1e-12, 1))))


@TASKS
def test_beats_the_mean_or_prior_and_round_trips(task, tmp_path):
    data = tree_data(task.kind)
    model = make_model("lightgbm", task, seed=3).fit(data)
    pred = model.predict(data.X_valid)
    if task.kind == "regression":
        trivial = np.full(len(data.y_valid), data.y.mean())
    else:
        priors = np.bincount(data.y.astype(int), minlength=max(task.n_classes, 2)) / len(data.y)
        trivial = (
            np.full(len(data.y_valid), priors[1])
            if task.kind == "binary"
            else (np.tile(priors, (len(data.y_valid), 1)))
        )
    assert _loss(task.kind, data.y_valid, pred) < 0.7 * _loss(task.kind, data.y_valid, trivial)
    if task.kind == "multiclass":
        assert pred.shape == (len(data.y_valid), 3)
        np.testing.assert_allclose(pred.sum(axis=1), 1.0)

    assert sorted(model.save(tmp_path)) == sorted([MODEL_TXT, "model.json"])
    loaded = load_model(tmp_path)
    assert isinstance(loaded, GBDTModel)
    assert loaded.best_iteration == model.best_iteration
    assert np.array_equal(loaded.predict(data.X_valid), pred)


def test_early_stopping_stops_on_noise():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 4))
    y = rng.normal(size=600)
    data = FitData(X[:400], y[:400], X[400:], y[400:])
    model = GBDTModel(TaskInfo("regression")).fit(data)
    assert model.best_iteration < 100 < MAX_ROUNDS
    assert model.booster_.current_iteration() == model.best_iteration
    assert model.describe()["best_iteration"] == model.best_iteration


def test_same_inputs_give_byte_identical_model_files(tmp_path):
    data = tree_data("binary")
    params = {"feature_fraction": 0.7, "bagging_fraction": 0.8, "bagging_freq": 1}
    for name in ("a", "b"):
        GBDTModel(TaskInfo("binary", 2), params, seed=11).fit(data).save(tmp_path / name)
    first = (tmp_path / "a" / MODEL_TXT).read_bytes()
    assert first == (tmp_path / "b" / MODEL_TXT).read_bytes()
    assert (tmp_path / "a" / "model.json").read_bytes() == (
        tmp_path / "b" / "model.json"
    ).read_bytes()
    GBDTModel(TaskInfo("binary", 2), params, seed=12).fit(data).save(tmp_path / "c")
    assert (tmp_path / "c" / MODEL_TXT).read_bytes() != first


def test_categorical_codes_are_split_as_categories():
    rng = np.random.default_rng(5)
    n = 3000
    codes = rng.integers(0, 12, size=n).astype(float)
    effect = rng.permutation(12).astype(float)  # no order a threshold could exploit
    X = np.column_stack([codes, rng.normal(size=n)])
    y = effect[codes.astype(int)] + rng.normal(scale=0.2, size=n)
    data = FitData(X[:2000], y[:2000], X[2000:], y[2000:], categorical=[0])
    model = GBDTModel(TaskInfo("regression")).fit(data)
    dump = model.booster_.dump_model()

    def decisions(node):
        if "split_index" not in node:
            return []
        here = [node["decision_type"]] if node["split_feature"] == 0 else []
        return here + decisions(node["left_child"]) + decisions(node["right_child"])

    kinds = {d for tree in dump["tree_info"] for d in decisions(tree["tree_structure"])}
    assert kinds == {"=="}
    assert np.mean((model.predict(data.X_valid) - data.y_valid) ** 2) < 0.1


def test_balanced_class_weight_raises_minority_predictions():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(4000, 3))
    y = (X[:, 0] + rng.normal(scale=1.5, size=4000) > 2.8).astype(float)
    data = FitData(X[:2000], y[:2000])
    X_new, positive = X[2000:], y[2000:] == 1
    plain = GBDTModel(TaskInfo("binary", 2)).fit(data).predict(X_new)
    weighted = GBDTModel(TaskInfo("binary", 2), {"class_weight": "balanced"}).fit(data)
    assert weighted.predict(X_new)[positive].mean() > plain[positive].mean() + 0.1


def test_errors_name_the_problem():
    with pytest.raises(ModelError, match="did you mean 'num_leaves'"):
        GBDTModel(TaskInfo("regression"), {"num_leave": 7})
    with pytest.raises(ModelError, match="not regression"):
        GBDTModel(TaskInfo("regression"), {"class_weight": "balanced"})
    with pytest.raises(ModelError, match=r"num_leaves must be an integer in \[2, 131072\]"):
        GBDTModel(TaskInfo("regression"), {"num_leaves": 1})
    with pytest.raises(ModelError, match="objective must be one of lambdarank, rank_xendcg"):
        GBDTModel(TaskInfo("ranking"), {"objective": "pairwise"})
    groups = np.repeat(np.arange(5), 4)
    with pytest.raises(ModelError, match=r"whole grades 0\.\.30"):
        GBDTModel(TaskInfo("ranking")).fit(FitData(np.zeros((20, 2)), groups * 0.5, groups=groups))
    with pytest.raises(ModelError, match="not contiguous"):
        GBDTModel(TaskInfo("ranking")).fit(
            FitData(np.zeros((20, 2)), np.ones(20), groups=np.tile(np.arange(5), 4))
        )
    with pytest.raises(ModelError, match=r"labels must be 0\.\.1"):
        GBDTModel(TaskInfo("binary", 2)).fit(FitData(np.zeros((10, 2)), np.arange(10.0)))
    model = GBDTModel(TaskInfo("regression")).fit(tree_data("regression", n=200))
    with pytest.raises(ModelError, match="expects 5 features"):
        model.predict(np.zeros((3, 4)))
    with pytest.raises(ModelError, match="unknown model family"):
        make_model("xgboost", TaskInfo("regression"))
