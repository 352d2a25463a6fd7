"""Champion against challenger: the same rows, the package's threshold, a paired interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlsd.evaluation.metrics import compute
from mlsd.loop.compare import compare, paired_bootstrap, score_package
from mlsd.models.train import train
from mlsd.spec import load_spec
from mlsd.workspace import Workspace


def _scored(y, pred, task="regression", threshold=0.5) -> dict:
    return {"y": np.asarray(y, float), "pred": np.asarray(pred, float), "task": task,
            "threshold": threshold}  # fmt: skip


def test_identical_models_differ_by_exactly_zero():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    pred = y + rng.normal(size=200)
    low, high, used = paired_bootstrap(_scored(y, pred), _scored(y, pred), "mae", seed=1, n=200)
    assert (low, high, used) == (0.0, 0.0, 200)


def test_the_paired_interval_sees_a_small_gap_under_large_shared_noise():
    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    shared = rng.normal(scale=5.0, size=400)  # both models share most of their error
    champion = _scored(y, y + 1.05 * shared)
    challenger = _scored(y, y + shared)
    mae = {k: compute("regression", y, s["pred"], names=["mae"])["mae"]
           for k, s in (("champion", champion), ("challenger", challenger))}  # fmt: skip
    gap = mae["challenger"] - mae["champion"]
    low, high, _ = paired_bootstrap(champion, challenger, "mae", seed=1, n=500)
    # each MAE is ~4 ± 0.15 on its own: unpaired, a 0.2 gap would be lost in that noise
    assert low <= gap <= high < 0
    assert high - low < 0.05


def test_resamples_where_the_metric_is_undefined_are_left_out():
    y = np.array([0] * 19 + [1])
    p = np.linspace(0.1, 0.9, 20)
    low, high, used = paired_bootstrap(
        _scored(y, p, "binary"), _scored(y, p[::-1], "binary"), "roc_auc", seed=0, n=400
    )
    assert 200 < used < 400  # a third of the resamples draw no positive row
    assert low is not None and low <= high


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    folder = tmp_path_factory.mktemp("binary")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1200, 3))
    label = np.where(x[:, 0] - 0.5 * x[:, 1] + rng.normal(scale=0.7, size=1200) > 0.8, "yes", "no")
    df = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": label})
    df.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text(
        "name: bin\nproblem: {task: binary, target: label, positive_class: 'yes',"
        " costs: {false_positive: 1, false_negative: 5}}\n"
        "data: {source: d.csv}\nmodels: {candidates: [linear]}\n"
    )
    spec = load_spec(folder / "system.yaml")
    result = train(spec, Workspace.for_spec(spec), progress=False)
    assert result.registered
    return spec, result.package, pa.Table.from_pandas(df.iloc[-300:], preserve_index=False)


def test_packages_score_through_their_own_threshold(binary):
    spec, package, rows = binary
    scored = score_package(package, rows, "label")
    assert scored["threshold"] != 0.5  # costly misses: the threshold moved on valid
    truth = (rows.column("label").to_numpy(zero_copy_only=False) == "yes").astype(float)
    assert np.array_equal(scored["y"], truth)
    accuracy = np.mean((scored["pred"] >= scored["threshold"]) == (truth == 1))
    cmp = compare(spec, package, package, rows, n_bootstrap=100)
    assert cmp["champion_metrics"]["accuracy"] == pytest.approx(accuracy)
    assert cmp["metric"] == "roc_auc" and cmp["direction"] == "max"
    assert cmp["difference"] == 0 and cmp["gain"] == 0 and cmp["n_holdout"] == 300
    assert not cmp["beats"]  # a tie does not beat the champion by a margin of 0
