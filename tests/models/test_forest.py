"""RandomForestModel: LightGBM's rf mode as its own family: averaged bagged trees, a fixed
number of them, the same text format and runtime as the boosted trees."""

from __future__ import annotations

import numpy as np
import pytest
from tree_data import TASKS, tree_data

from mlsd.model_params import RANDOM_FOREST
from mlsd.models.base import ModelError, TaskInfo
from mlsd.models.families import load_model, make_model
from mlsd.models.forest import RandomForestModel
from mlsd.models.gbdt import MODEL_TXT


@TASKS
def test_a_forest_learns_keeps_every_tree_and_round_trips(task, tmp_path):
    data = tree_data(task.kind)
    model = make_model("random_forest", task, seed=3).fit(data)
    assert isinstance(model, RandomForestModel)
    # no early stopping: the forest keeps all its trees even with a validation split
    assert model.best_iteration == RANDOM_FOREST.param("num_boost_round").default
    pred = model.predict(data.X_valid)
    if task.kind == "regression":
        mse = np.mean((data.y_valid - pred) ** 2)
        assert mse < 0.5 * np.var(data.y_valid)
        # an average of trees never leaves the range of the training targets
        assert data.y.min() <= pred.min() and pred.max() <= data.y.max()
    elif task.kind == "binary":
        assert np.mean((pred > 0.5) == data.y_valid) > 0.8
    else:
        assert pred.shape == (len(data.y_valid), 3)
        np.testing.assert_allclose(pred.sum(axis=1), 1.0)
        assert np.mean(pred.argmax(axis=1) == data.y_valid) > 0.7

    assert sorted(model.save(tmp_path)) == sorted([MODEL_TXT, "model.json"])
    assert "[boosting: rf]" in (tmp_path / MODEL_TXT).read_text()
    loaded = load_model(tmp_path)
    assert isinstance(loaded, RandomForestModel)
    assert np.array_equal(loaded.predict(data.X_valid), pred)
    again = make_model("random_forest", task, seed=3).fit(data)
    assert again.model_string() == model.model_string()  # same data, seed: the same forest


def test_a_forest_is_not_the_boosted_trees_under_another_name():
    data = tree_data("regression")
    forest = make_model("random_forest", TaskInfo("regression")).fit(data)
    boosted = make_model("lightgbm", TaskInfo("regression")).fit(data)
    assert not np.allclose(forest.predict(data.X_valid), boosted.predict(data.X_valid))


def test_parameters_outside_the_forest_table_are_refused():
    with pytest.raises(ModelError, match="bagging_fraction"):
        make_model("random_forest", TaskInfo("regression"), {"bagging_fraction": 1.0})
    with pytest.raises(ModelError, match="learning_rate"):  # a forest does not shrink
        make_model("random_forest", TaskInfo("regression"), {"learning_rate": 0.1})
