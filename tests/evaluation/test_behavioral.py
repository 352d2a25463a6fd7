"""Behavioural tests: perturbation, invariance and directional expectation, on scorers whose
behaviour is known, then on a trained model (monotone data passes, a broken model fails, and
a blocking failure stops registration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.errors import SpecError
from mlsd.evaluation import behavioral
from mlsd.evaluation.behavioral import BehavioralError
from mlsd.spec import parse_spec

COLUMNS = {"x": "numeric", "z": "numeric", "color": "categorical"}


def frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.uniform(0, 1, n),
            "z": rng.normal(size=n),
            "color": pd.Categorical(rng.choice(["red", "green", "blue"], n)),
        }
    )


def smooth(f: pd.DataFrame) -> np.ndarray:
    return 2 * f["x"].to_numpy() + 0.1 * f["z"].to_numpy()


def jumpy(f: pd.DataFrame) -> np.ndarray:
    """Flips at x = 0.5: tiny noise near the step changes the output a lot."""
    return np.where(f["x"].to_numpy() > 0.5, 1.0, 0.0)


def by_color(f: pd.DataFrame) -> np.ndarray:
    return smooth(f) + (f["color"].astype(str) == "red").to_numpy() * 5.0


def test_perturbation_passes_a_smooth_scorer_and_fails_a_step_with_examples():
    f = frame()
    # noise of 5% of a std moves 2x by about 0.03: far inside 0.2; the step jumps by 1
    test = {"kind": "perturbation", "scale": 0.05, "tolerance": 0.2, "rows": 1000}
    ok = behavioral.run_one(test, smooth, f, COLUMNS, "regression")
    assert ok["passed"] and ok["n"] == 500 and ok["n_failed"] == 0 and ok["failures"] == []
    bad = behavioral.run_one(test, jumpy, f, COLUMNS, "regression")
    assert not bad["passed"] and bad["n_failed"] > 0
    assert 1 <= len(bad["failures"]) <= 5
    example = bad["failures"][0]
    assert abs(example["after"] - example["before"]) == 1.0
    assert abs(example["x"] - 0.5) < 0.2  # near the step
    assert set(example["changed"]) == {"x", "z"}  # every numeric feature was perturbed
    assert example["color"] in ("red", "green", "blue")


def test_invariance_fails_only_when_the_feature_matters():
    f = frame()
    test = {"kind": "invariance", "feature": "color"}
    assert behavioral.run_one(test, smooth, f, COLUMNS, "regression")["passed"]
    failed = behavioral.run_one(test, by_color, f, COLUMNS, "regression")
    assert not failed["passed"]
    for example in failed["failures"]:  # each failure swapped red for another colour or back
        assert ("red" in (example["color"], example["changed"]["color"])) and (
            example["color"] != example["changed"]["color"]
        )
        assert abs(abs(example["after"] - example["before"]) - 5.0) < 1e-9


def test_directional_checks_sign_tolerance_and_where():
    f = frame()
    up = {"kind": "directional", "feature": "x", "direction": "up"}
    assert behavioral.run_one(up, smooth, f, COLUMNS, "regression")["passed"]
    reversed_ = behavioral.run_one(up, lambda d: -smooth(d), f, COLUMNS, "regression")
    assert not reversed_["passed"] and reversed_["n_failed"] == reversed_["n"]
    assert reversed_["mean_change"] < 0
    down = {**up, "direction": "down"}
    assert behavioral.run_one(down, lambda d: -smooth(d), f, COLUMNS, "regression")["passed"]
    # a flat scorer moves no row the wrong way, but does not move the right way either
    flat = behavioral.run_one(up, lambda d: np.zeros(len(d)), f, COLUMNS, "regression")
    assert not flat["passed"] and flat["mean_change"] == 0 and flat["failures"]

    def hump(d):  # rises below 0.5, falls above
        return -((d["x"].to_numpy() - 0.5) ** 2)

    assert not behavioral.run_one(up, hump, f, COLUMNS, "regression")["passed"]
    below = behavioral.run_one({**up, "where": "x < 0.45"}, hump, f, COLUMNS, "regression")
    assert below["passed"] and below["n"] == 200
    nobody = behavioral.run_one({**up, "where": "x > 2"}, hump, f, COLUMNS, "regression")
    assert not nobody["passed"] and nobody["note"] == "no row matches"


def test_multiclass_outputs_compare_the_class_predicted_before():
    f = frame()

    def probs(d):
        s = 1 / (1 + np.exp(-8 * (d["x"].to_numpy() - 0.5)))
        return np.column_stack([1 - s, s])

    test = {"kind": "invariance", "feature": "z"}
    assert behavioral.run_one(test, probs, f, COLUMNS, "multiclass")["passed"]
    test = {"kind": "directional", "feature": "x", "direction": "up"}
    assert not behavioral.run_one(test, probs, f, COLUMNS, "multiclass")["passed"]


def test_check_names_the_bad_test_before_training():
    f = frame()
    with pytest.raises(BehavioralError, match=r"'colour'.*did you mean 'color'"):
        behavioral.check([{"kind": "invariance", "feature": "colour"}], COLUMNS, f)
    with pytest.raises(BehavioralError, match="'color' is categorical"):
        behavioral.check(
            [{"kind": "directional", "feature": "color", "direction": "up"}], COLUMNS, f
        )
    with pytest.raises(BehavioralError, match="cannot be evaluated"):
        behavioral.check([{"kind": "invariance", "feature": "x", "where": "y <"}], COLUMNS, f)
    f["day"] = 1  # in the data, not a feature: fine for invariance, not for directional
    behavioral.check([{"kind": "invariance", "feature": "day"}], COLUMNS, f)
    with pytest.raises(BehavioralError, match="does not use 'day'"):
        behavioral.check([{"kind": "directional", "feature": "day", "direction": "up"}], COLUMNS, f)


@pytest.mark.parametrize(
    ("test", "message"),
    [
        ("{kind: invariance}", "invariance tests need a feature"),
        ("{kind: directional, feature: x}", "needs a direction"),
        (
            "{kind: invariance, feature: x, direction: up}",
            "direction is set on the invariance test",
        ),
        ("{kind: invariance, feature: y}", "names the target"),
        ("{kind: directional, feature: q, direction: up}", "is in features.exclude"),
        ("{kind: directonal, feature: x}", "did you mean 'directional'"),
    ],
)
def test_spec_refuses_inconsistent_tests(test, message):
    text = (
        "name: t\nproblem: {task: regression, target: y}\ndata: {source: d.csv}\n"
        f"features: {{exclude: [q]}}\nevaluation:\n  tests:\n    - {test}\n"
    )
    with pytest.raises(SpecError, match=message) as info:
        parse_spec(text)
    assert "evaluation.tests[0]" in str(info.value) and "system.yaml:7" in str(info.value)


# --- on trained models --------------------------------------------------------------------


def make_system(folder, direction: str, blocking: bool = True):
    """Target rises with x (and with w and v); the spec declares ``direction``."""
    from mlsd.workspace import Workspace

    rng = np.random.default_rng(7)
    n = 800
    x, w, v = rng.uniform(0, 10, n), rng.normal(size=n), rng.normal(size=n)
    y = x + 2 * w + 2 * v + rng.normal(scale=2.0, size=n)  # no one column gives y away
    pd.DataFrame({"x": x, "w": w, "v": v, "y": y}).to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text("# written by the test\n")
    spec = parse_spec(
        "name: mono\nproblem: {task: regression, target: y}\ndata: {source: d.csv}\n"
        "models: {candidates: [linear]}\n"
        "evaluation:\n  tests:\n"
        f"    - {{kind: directional, feature: x, direction: {direction}, "
        f"blocking: {str(blocking).lower()}}}\n"
        "    - {kind: perturbation, feature: w, blocking: false}\n"
    )
    spec._path = folder / "system.yaml"
    return spec, Workspace(folder / "ws")


def test_a_model_of_monotone_data_passes_and_a_reversed_one_fails(tmp_path):
    from mlsd.models import package
    from mlsd.models.train import train

    spec, workspace = make_system(tmp_path, "up")
    result = train(spec, workspace, progress=False)
    assert result.registered, result.reasons
    directional, perturbation = result.evaluation["behavioral"]
    assert directional["passed"] and directional["mean_change"] > 0
    assert directional["n"] == 120  # every validation row (15% of 800)
    assert perturbation["passed"]
    # the same package with x reversed on the way in: a deliberately broken model
    loaded = package.load(result.package)

    def broken(f: pd.DataFrame) -> np.ndarray:
        columns = {c: f[c].to_numpy() for c in ("w", "v")}
        return loaded.predict_matrix({"x": 10 - f["x"].to_numpy(), **columns})

    valid = pd.read_csv(tmp_path / "d.csv").iloc[:200]
    columns = {"x": "numeric", "w": "numeric", "v": "numeric"}
    failed = behavioral.run(spec.evaluation.tests[:1], broken, valid, columns, "regression")[0]
    assert not failed["passed"] and failed["n_failed"] == failed["n"]
    assert failed["failures"][0]["after"] < failed["failures"][0]["before"]


def test_a_blocking_failure_stops_registration_and_a_non_blocking_one_does_not(tmp_path):
    from mlsd.models.train import train

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    spec, workspace = make_system(tmp_path / "a", "down")  # the model learnt "up"
    result = train(spec, workspace, progress=False)
    assert not result.registered and result.model_version is None
    assert any(
        "blocking behavioural test 'directional x down' (directional) failed on 120 of 120" in r
        for r in result.reasons
    ), result.reasons
    assert not (workspace.root / "packages").exists() or not any(
        (workspace.root / "packages").iterdir()
    )
    spec, workspace = make_system(tmp_path / "b", "down", blocking=False)
    result = train(spec, workspace, progress=False)
    assert result.registered and not result.evaluation["behavioral"][0]["passed"]
