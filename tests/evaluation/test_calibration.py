"""Calibration: reliability and ECE, confidence, Platt and isotonic chosen honestly on valid,
and a package that carries its calibrator to every place it predicts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlsd.evaluation import calibration
from mlsd.evaluation.metrics import score
from mlsd.models.calibrator import CalibrationError, Calibrator


def draw(n: int, seed: int, temper: float = 1.0, shift: float = 0.0):
    """Labels drawn from true probabilities, and scores that distort them: ``temper`` > 1
    makes them overconfident, ``shift`` moves them up in logit space."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=n) - 1.0
    truth = 1 / (1 + np.exp(-z))
    y = (rng.random(n) < truth).astype(float)
    return y, 1 / (1 + np.exp(-(temper * z + shift))), truth


def test_reliability_of_true_probabilities_is_near_perfect_and_distorted_ones_are_not():
    y, _, truth = draw(20000, 0)
    good = calibration.reliability(y, truth)
    assert len(good["bins"]) == 10 and sum(b["count"] for b in good["bins"]) == 20000
    assert good["ece"] < 0.02
    _, bad_p, _ = draw(20000, 0, temper=3.0, shift=1.0)
    assert calibration.reliability(y, bad_p)["ece"] > 0.1


def test_reliability_and_ece_by_hand():
    y = [0, 0, 1, 1, 1]
    p = [0.1, 0.15, 0.9, 0.95, 0.5]
    out = calibration.reliability(y, p, bins=2)
    low, high = out["bins"]
    assert (low["count"], high["count"]) == (2, 3)  # 0.5 falls in the upper bin
    assert low["mean_score"] == pytest.approx(0.125) and low["fraction_positive"] == 0.0
    assert high["mean_score"] == pytest.approx(2.35 / 3) and high["fraction_positive"] == 1.0
    assert out["ece"] == pytest.approx((2 * 0.125 + 3 * (1 - 2.35 / 3)) / 5)
    empty = calibration.reliability(y, p, bins=10)["bins"][3]
    assert empty["count"] == 0 and empty["mean_score"] is None


def test_confidence_share_and_accuracy_by_hand():
    y = [1, 0, 1, 0]
    p = [0.95, 0.2, 0.3, 0.65]  # labels at 0.5: 1, 0, 0, 1 -> right, right, wrong, wrong
    levels = calibration.confidence(y, p, threshold=0.5, levels=(0.6, 0.9, 0.99))
    assert levels[0] == {"level": 0.6, "share": 1.0, "accuracy": 0.5}
    assert levels[1] == {"level": 0.9, "share": 0.25, "accuracy": 1.0}
    assert levels[2] == {"level": 0.99, "share": 0.0, "accuracy": None}
    # at threshold 0.25 the third row is labelled positive (confidence 0.3) and is right
    assert calibration.confidence(y, p, threshold=0.25, levels=(0.0,))[0]["accuracy"] == 0.75


def test_choose_fixes_distorted_scores_and_the_fix_holds_on_fresh_rows():
    y, p, _ = draw(3000, 1, temper=2.5, shift=1.0)
    calibrator, report = calibration.choose(y, p, "auto", seed=0)
    assert calibrator is not None and report["kept"] == calibrator.method
    losses = report["log_loss"]
    assert set(losses) == {"none", "platt", "isotonic"}
    assert losses[report["kept"]] < losses["none"] * 0.9
    # honest: on rows it never saw, the calibrated scores are better too
    y_new, p_new, _ = draw(5000, 2, temper=2.5, shift=1.0)
    raw = score("log_loss", "binary", y_new, p_new)
    fixed = score("log_loss", "binary", y_new, calibrator.apply(p_new))
    assert fixed < raw * 0.9
    assert calibration.reliability(y_new, calibrator.apply(p_new))["ece"] < 0.03


def test_choose_keeps_nothing_for_calibrated_scores_or_when_asked_not_to():
    y, _, truth = draw(3000, 3)
    calibrator, report = calibration.choose(y, truth, "auto")
    assert calibrator is None and report["kept"] == "none"
    assert "no method lowered" in report["reason"]
    y, p, _ = draw(3000, 3, temper=2.5)
    calibrator, report = calibration.choose(y, p, "none")
    assert calibrator is None and report["reason"] == "calibration is off in the spec"
    calibrator, report = calibration.choose(y, p, "isotonic")
    assert calibrator.method == "isotonic" and set(report["log_loss"]) == {"none", "isotonic"}
    y_few = np.zeros(100)
    y_few[:3] = 1
    assert calibration.choose(y_few, np.full(100, 0.1))[0] is None


def test_calibrators_are_plain_json_and_isotonic_matches_scikit_learn():
    from sklearn.isotonic import IsotonicRegression

    y, p, _ = draw(2000, 4, temper=2.0)
    for method in ("platt", "isotonic"):
        fitted = calibration.fit(y, p, method)
        again = Calibrator.from_json(json.loads(json.dumps(fitted.to_json())))
        grid = np.linspace(0, 1, 501)
        assert np.array_equal(again.apply(grid), fitted.apply(grid))
        assert np.all(np.diff(fitted.apply(grid)) >= 0)  # monotone: ranking is kept
    floor = 0.5 / len(y)
    iso = IsotonicRegression(y_min=floor, y_max=1 - floor, out_of_bounds="clip").fit(p, y)
    grid = np.linspace(-0.1, 1.1, 301)
    assert np.allclose(calibration.fit(y, p, "isotonic").apply(grid), iso.predict(grid))
    with pytest.raises(CalibrationError, match="not a calibrator"):
        Calibrator.from_json({"method": "isotonic", "params": {"x": [0.5, 0.1], "y": [0, 1]}})
    with pytest.raises(CalibrationError, match="unknown calibration method"):
        calibration.choose(y, p, "beta")


# --- in a package: trained with balanced class weights, whose probabilities are inflated ----


@pytest.fixture(scope="module")
def calibrated_system(tmp_path_factory):
    from mlsd.models.train import train
    from mlsd.spec import parse_spec
    from mlsd.workspace import Workspace

    folder = tmp_path_factory.mktemp("calibrated")
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.normal(size=(n, 3))
    logit = 1.5 * x[:, 0] - x[:, 1] - 2.5
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    cust = [f"C{i:05d}" for i in range(n)]
    frame = pd.DataFrame({"cust": cust, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})
    frame.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: cal\nproblem: {task: binary, target: y, positive_class: 'yes', id: cust}\n"
        "data: {source: d.csv, split: {method: stratified, valid: 0.3, test: 0.2}}\n"
        "models: {candidates: [linear], class_weight: balanced}\n"
        "evaluation: {calibration: platt}\n"
    )
    spec._path = folder / "system.yaml"
    workspace = Workspace(folder / "ws")
    result = train(spec, workspace, progress=False)
    assert result.registered, result.reasons
    return spec, workspace, result, folder


def test_balanced_weights_are_calibrated_and_the_package_applies_it(calibrated_system):
    from mlsd.models import package

    _, _, result, folder = calibrated_system
    report = result.evaluation["calibration"]
    assert report["kept"] == "platt"
    assert report["log_loss"]["platt"] < report["log_loss"]["none"] * 0.8
    assert report["reliability"]["ece"] < report["reliability_before"]["ece"]
    loaded = package.load(result.package)  # verifies hashes and replays the calibrated holdout
    assert loaded.calibration is not None and loaded.meta["calibration"] == "platt"
    assert json.loads((loaded.folder / "calibration.json").read_text())["method"] == "platt"
    inputs, expected = package.holdout(loaded)
    raw = loaded.model.predict(loaded.featurizer.transform(inputs))
    assert np.allclose(expected, loaded.calibration.apply(raw), rtol=0, atol=0)
    assert not np.allclose(expected, raw)  # the recorded outputs are the calibrated ones
    # balanced weights inflate probabilities; calibrated, the mean is near the base rate
    rate = float((pd.read_csv(folder / "d.csv")["y"] == "yes").mean())
    assert np.mean(raw) > rate + 0.15
    assert abs(np.mean(expected) - rate) < 0.05


def test_a_tampered_calibration_is_refused(calibrated_system, tmp_path):
    import shutil

    from mlsd.models import package

    _, _, result, _ = calibrated_system
    copy = tmp_path / "pkg"
    shutil.copytree(result.package, copy)
    path = copy / "calibration.json"
    data = json.loads(path.read_text())
    data["params"]["b"] += 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(package.PackageError, match=r"calibration\.json"):
        package.load(copy)


def test_server_and_batch_answer_with_the_calibrated_score(calibrated_system, tmp_path):
    from mlsd.serving.batch import predict_batch
    from mlsd.serving.model import load_served

    spec, workspace, _, folder = calibrated_system
    served = load_served(workspace.root, spec.name, "champion", spec.serving)  # holdout check
    rows = pd.read_csv(folder / "d.csv").head(300)
    columns = {c: rows[c].tolist() for c in ("a", "b", "c")}
    answers = served.predict(columns)
    calibrated = served.package.predict_matrix(columns)
    raw = served.package.model.predict(served.package.featurizer.transform(columns))
    assert [a["score"] for a in answers] == calibrated.tolist()
    assert np.allclose(calibrated, served.package.calibration.apply(raw))
    threshold = served.package.meta["threshold"]
    assert served.package.signature["output"]["threshold"] == threshold
    assert [a["label"] for a in answers] == ["yes" if p >= threshold else "no" for p in calibrated]
    rows.drop(columns=["y"]).to_csv(tmp_path / "in.csv", index=False)
    predict_batch(spec, tmp_path / "in.csv", tmp_path / "out.csv", workspace=workspace)
    out = pd.read_csv(tmp_path / "out.csv")
    assert np.allclose(out["score"], [a["score"] for a in answers], rtol=1e-15, atol=0)
    assert out["label"].tolist() == [a["label"] for a in answers]


def test_multiclass_reliability_and_confidence_use_the_top_label():
    y = [0, 1, 2, 2]
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05]])
    out = calibration.reliability(y, p, bins=2)
    # top scores 0.7, 0.5, 0.4, 0.9; right on rows 0, 1, 2
    low, high = out["bins"]
    assert (low["count"], high["count"]) == (1, 3)
    assert low["fraction_positive"] == 1.0 and high["fraction_positive"] == pytest.approx(2 / 3)
    levels = calibration.confidence(y, p, levels=(0.6,))
    assert levels == [{"level": 0.6, "share": 0.5, "accuracy": 0.5}]
