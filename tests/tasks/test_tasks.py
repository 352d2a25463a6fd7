"""The task classes: every kind keeps the contract the rest of mlsd relies on."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd.evaluation.metrics import METRICS, get_metric
from mlsd.tasks import BINARY, LABEL, MULTICLASS, NAMES, PER_CLASS, REGRESSION, TASKS, get_task
from mlsd.tasks.metric_names import MetricError, resolve, tasks_of

CLASSES = ["a", "b", "c"]


def _prediction(task, n=7, seed=0):
    rng = np.random.default_rng(seed)
    k = task.n_scores(len(CLASSES))
    if task.per_class:
        z = rng.normal(size=(n, k))
        return task.from_margin(z)
    return task.from_margin(rng.normal(size=(n, 1)))


@pytest.mark.parametrize("name", NAMES)
def test_every_task_declares_a_usable_contract(name):
    task = get_task(name)
    assert task.name == name and task.description
    assert task.default_metric in task.metrics
    for metric in task.metrics:  # each listed metric is implemented and scores this task
        assert name in get_metric(metric, name).tasks
    assert task.outputs and len({f.name for f in task.outputs}) == len(task.outputs)
    assert task.watched_output is task.outputs[0]
    assert task.default_split in (("group",) if task.grouped else ("stratified", "random"))


@pytest.mark.parametrize("task", TASKS.values(), ids=NAMES)
def test_output_values_follow_the_declared_fields(task):
    pred = _prediction(task)
    values = task.output_values(pred, threshold=0.4)
    assert len(values) == len(task.outputs)
    for field, v in zip(task.outputs, values, strict=True):
        assert len(v) == len(pred)
        if field.kind == LABEL:
            assert task.classification
            assert np.array_equal(v, task.decide(pred, 0.4))
            assert set(v.tolist()) <= set(range(task.n_labels(len(CLASSES))))
        elif field.kind == PER_CLASS:
            assert v.shape == (len(pred), len(CLASSES))
            assert np.allclose(v.sum(axis=1), 1.0)
        else:
            assert v.ndim == 1
    assert task.per_class == (pred.ndim == 2)


def test_decisions_by_kind():
    assert BINARY.decide(np.array([0.1, 0.4, 0.5, 0.9]), 0.5).tolist() == [0, 0, 1, 1]
    assert MULTICLASS.decide(np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])).tolist() == [1, 0]
    assert REGRESSION.decide(np.array([1.0])) is None
    assert np.allclose(BINARY.from_margin(np.array([[0.0], [800.0], [-800.0]])), [0.5, 1, 0])


def test_truth_reads_feedback_labels_as_the_metrics_want_them():
    assert np.array_equal(
        REGRESSION.truth(["1.5", 2, None, "x"], None), [1.5, 2.0, np.nan, np.nan], equal_nan=True
    )
    # binary: the class values, and true/false/yes/no for two classes
    got = BINARY.truth(["no", "yes", "TRUE", 0, "maybe", None], [0, 1])
    assert np.array_equal(got, [0, 1, 1, 0, np.nan, np.nan], equal_nan=True)
    got = MULTICLASS.truth(["b", "c", "yes", 1.0], ["a", "b", "c"])
    assert np.array_equal(got, [1, 2, np.nan, np.nan], equal_nan=True)


def test_metric_names_come_from_the_tasks():
    assert resolve("NDCG@05") == "ndcg@5" and tasks_of("ndcg@5") == ("ranking",)
    assert tasks_of("accuracy") == ("binary", "multiclass")
    assert set(METRICS) >= {m for t in TASKS.values() for m in t.metrics}
    with pytest.raises(MetricError, match="does not apply to a binary task"):
        resolve("rmse", BINARY)
    with pytest.raises(MetricError, match="did you mean 'rmse'"):
        resolve("rmsee")


def test_unknown_task_names_the_closest():
    with pytest.raises(Exception, match="did you mean 'binary'"):
        get_task("binray")
