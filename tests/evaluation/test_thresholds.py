"""Decision thresholds: the cost curve by hand, the rules, and the caravan example, where a
missed buyer costs ten mailings, so the threshold drops well below 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsd.evaluation import thresholds
from mlsd.evaluation.thresholds import ThresholdError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_cost_curve_by_hand():
    y = [0, 0, 1, 1, 0]
    p = [0.1, 0.4, 0.35, 0.8, 0.7]
    curve = thresholds.cost_curve(y, p, fp_cost=1, fn_cost=10, grid=[0.3, 0.5, 0.9])
    # 0.3: flags 0.4, 0.35, 0.8, 0.7 -> tp 2, fp 2, fn 0; 0.5: 0.8, 0.7 -> tp 1 fp 1 fn 1;
    # 0.9: nothing flagged -> fn 2
    assert curve["expected_cost"] == pytest.approx([2 / 5, 11 / 5, 20 / 5])
    assert curve["precision"] == pytest.approx([0.5, 0.5, 1.0])
    assert curve["recall"] == pytest.approx([1.0, 0.5, 0.0])


def scores(n=20000, seed=0):
    """Labels drawn from the scores themselves: perfectly calibrated probabilities."""
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(scale=2.0, size=n)))
    return (rng.random(n) < p).astype(float), p


def test_cost_rule_finds_the_bayes_threshold_of_calibrated_scores():
    y, p = scores()
    for fp, fn in [(1, 1), (1, 10), (5, 1)]:
        chosen = thresholds.choose(y, p, costs={"false_positive": fp, "false_negative": fn})
        # for calibrated probabilities the least-cost threshold is fp / (fp + fn)
        assert chosen["threshold"] == pytest.approx(fp / (fp + fn), abs=0.05)
        assert chosen["expected_cost"] == min(chosen["curve"]["expected_cost"])
        assert chosen["expected_cost"] <= chosen["cost_at_0_5"]


def test_precision_and_recall_targets_and_fixed():
    y, p = scores()
    got = thresholds.choose(y, p, rule="precision", target=0.6)
    curve = got["curve"]
    i = curve["thresholds"].index(got["threshold"])
    assert got["met"] and got["precision"] >= 0.6
    assert curve["precision"][i - 1] < 0.6  # the lowest threshold that reaches it
    got = thresholds.choose(y, p, rule="recall", target=0.9)
    i = got["curve"]["thresholds"].index(got["threshold"])
    assert got["met"] and got["recall"] >= 0.9 and got["curve"]["recall"][i + 1] < 0.9
    assert thresholds.choose(y, p, rule="fixed", value=0.37)["threshold"] == 0.37
    impossible = thresholds.choose(y, np.full(len(y), 0.5), rule="precision", target=0.99)
    assert not impossible["met"]
    with pytest.raises(ThresholdError, match="needs a target"):
        thresholds.choose(y, p, rule="recall")
    with pytest.raises(ThresholdError, match="unknown threshold rule"):
        thresholds.choose(y, p, rule="f1")


def test_spec_refuses_an_incomplete_or_misplaced_threshold_policy():
    from mlsd.errors import SpecError
    from mlsd.spec import parse_spec

    base = "name: t\nproblem: {task: TASK, target: y}\ndata: {source: d.csv}\n"
    with pytest.raises(SpecError, match="rule precision needs a target"):
        parse_spec(base.replace("TASK", "binary") + "evaluation: {threshold: {rule: precision}}")
    with pytest.raises(SpecError, match="threshold is for binary tasks"):
        parse_spec(base.replace("TASK", "regression") + "evaluation: {threshold: {rule: recall}}")


@pytest.fixture(scope="module")
def caravan(tmp_path_factory):
    """The bundled caravan example, trained once (6% positives; a false negative costs 10)."""
    import shutil

    from mlsd.models.train import train
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    folder = tmp_path_factory.mktemp("caravan") / "caravan"
    shutil.copytree(EXAMPLES / "caravan", folder, ignore=shutil.ignore_patterns(".mlsd"))
    spec = load_spec(folder / "system.yaml")
    assert (spec.problem.costs.false_positive, spec.problem.costs.false_negative) == (1, 10)
    result = train(spec, Workspace(folder / "ws"), progress=False)
    return spec, result


def test_caravan_threshold_is_below_half_and_costs_less_than_half(caravan):
    from mlsd.models import package

    _, result = caravan
    chosen = result.evaluation["threshold"]
    assert chosen["rule"] == "cost"
    assert chosen["threshold"] < 0.5
    assert chosen["expected_cost"] < chosen["cost_at_0_5"]
    assert result.registered, result.reasons
    loaded = package.load(result.package)
    # the package labels at the chosen threshold (the server and batch read it from here)
    assert loaded.meta["threshold"] == chosen["threshold"]
    assert loaded.signature["output"]["threshold"] == chosen["threshold"]
    # and the MLflow run records the decision
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{loaded.folder.parents[1] / 'mlflow.db'}"
    params = MlflowClient(tracking_uri=uri).get_run(result.run_id).data.params
    assert float(params["decision.threshold"]) == chosen["threshold"]
    assert params["decision.rule"] == "cost"
    assert params["calibration"] == result.evaluation["calibration"]["kept"]
    # `mlsd train --json` carries the decision (without the curve)
    import json

    summary = json.loads(json.dumps(result.to_dict()))["evaluation"]
    assert summary["threshold"]["threshold"] == chosen["threshold"]
    assert "curve" not in summary["threshold"] and summary["calibration"]["kept"] in (
        "none",
        "platt",
        "isotonic",
    )


def test_caravan_threshold_also_costs_less_on_test(caravan):
    """Chosen on valid; on the test split (never used to choose) it still beats 0.5."""
    from mlsd.data.snapshot import load_dataset, split_dataset
    from mlsd.data.split import TEST
    from mlsd.data.target import encode_target
    from mlsd.models import package
    from mlsd.workspace import Workspace

    spec, result = caravan
    workspace = Workspace(spec.base_dir / "ws")
    dataset = load_dataset(spec, workspace)
    labels, _ = split_dataset(dataset, spec)
    y, _ = encode_target(dataset.frame, spec)
    test = dataset.frame.iloc[np.flatnonzero(labels == TEST)]
    loaded = package.load(result.package)
    p = loaded.predict_matrix({c: test[c].array for c in loaded.featurizer.input_columns})
    t = result.evaluation["threshold"]["threshold"]
    cost = thresholds.cost_curve(y[labels == TEST], p, 1, 10, grid=[t, 0.5])["expected_cost"]
    assert cost[0] < cost[1]
