"""Data quality at serving: missing rates, training range, unseen categories, rejects, NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlsd.data.profile import profile
from mlsd.monitoring.quality import check
from mlsd.predlog.reader import read_rejects
from mlsd.predlog.writer import PredictionLog
from mlsd.spec import QualitySpec

SIGNATURE = {
    "inputs": [
        {"name": "x", "type": "numeric", "min": 0, "max": 10},
        {"name": "color", "type": "categorical", "domain": ["red", "green", "blue"]},
        {"name": "flag", "type": "boolean"},
    ]
}


@pytest.fixture(scope="module")
def reference():
    rng = np.random.default_rng(0)
    n = 2000
    frame = pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.05, np.nan, rng.uniform(0, 10, n)),
            "color": rng.choice(["red", "green", "blue"], n),
            "flag": rng.random(n) < 0.3,
        }
    )
    return profile(frame, {"x": "numeric", "color": "categorical", "flag": "boolean"})


def current(n: int = 1000, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": np.where(rng.random(n) < 0.05, np.nan, rng.uniform(1, 9, n)),  # inside [min, max]
        "color": rng.choice(["red", "green", "blue"], n).astype(object),
        "flag": rng.random(n) < 0.3,
    }


def test_traffic_like_training_has_no_problem(reference):
    out = check(current(), 1000, profile=reference, signature=SIGNATURE, spec=QualitySpec())
    assert out["problems"] == []
    assert out["columns"]["x"]["out_of_range"] == 0
    assert out["columns"]["color"]["unseen"] == 0
    assert abs(out["columns"]["x"]["missing_increase"]) < 0.03


def test_each_problem_is_found_with_its_figures(reference):
    values = current()
    values["x"][:200] = np.nan  # missing rate up by about 20 points
    values["x"][200:230] = 25.0  # 30 values outside the training range
    values["color"][:50] = "purple"  # 5% never seen in training
    out = check(
        {**values, "x": pa.array(values["x"], from_pandas=True)},  # Arrow arrays work too
        1000,
        profile=reference,
        signature=SIGNATURE,
        spec=QualitySpec(),
    )
    problems = {(p["check"], p["column"]): p for p in out["problems"]}
    assert set(problems) == {
        ("missing_rate", "x"),
        ("out_of_range", "x"),
        ("unseen_category", "color"),
    }
    assert problems[("missing_rate", "x")]["value"] == pytest.approx(
        out["columns"]["x"]["missing_rate"] - reference["columns"]["x"]["missing_rate"]
    )
    assert problems[("out_of_range", "x")]["evidence"]["out_of_range"] == 30
    assert problems[("out_of_range", "x")]["evidence"]["max"] == 25.0
    unseen = problems[("unseen_category", "color")]["evidence"]
    assert unseen["unseen"] == 50 and unseen["examples"] == ["purple"]


def test_thresholds_come_from_the_spec(reference):
    values = current()
    values["color"][:50] = "purple"
    lenient = QualitySpec(unseen=0.1)
    out = check(values, 1000, profile=reference, signature=SIGNATURE, spec=lenient)
    assert out["problems"] == [] and out["columns"]["color"]["unseen_rate"] == 0.05


def test_a_field_never_sent_is_all_missing(reference):
    values = current()
    del values["flag"]
    out = check(values, 1000, profile=reference, signature=SIGNATURE, spec=QualitySpec())
    assert out["columns"]["flag"]["missing_rate"] == 1.0
    assert [p["check"] for p in out["problems"]] == ["missing_rate"]


def test_non_finite_outputs_are_numerical_instability(reference):
    outputs = np.array([1.0, np.nan, 2.0, np.inf])
    out = check(
        current(4), 4, profile=reference, signature=SIGNATURE, spec=QualitySpec(), outputs=outputs
    )
    assert out["outputs"] == {"non_finite": 2, "rate": 0.5}
    assert [p["check"] for p in out["problems"]] == ["non_finite_output"]
    nulls = check(
        current(3),
        3,
        profile=reference,
        signature=SIGNATURE,
        spec=QualitySpec(),
        outputs=[1.0, None, 2.0],
    )  # the log writes NaN as null
    assert nulls["outputs"]["non_finite"] == 1


def test_rejects_round_trip_through_the_log_and_count_by_field(tmp_path, reference):
    with PredictionLog(tmp_path, flush_s=0.05) as log:
        log.rejected(
            request_id="a",
            model_version="3",
            problems=[
                {"instance": 0, "field": "x", "problem": "99 is outside the training range"},
                {"instance": 1, "field": "color", "problem": "'purple' is not a known category"},
            ],
            instances=4,
            ts=100.0,
        )
        log.rejected(
            request_id="b",
            model_version="3",
            problems=[{"instance": None, "field": "instances", "problem": "expected a list"}],
            instances=1,
            ts=200.0,
        )
        assert log.stats["rejects"]["queued"] >= 0
    rows = read_rejects(tmp_path).to_pylist()
    assert [(r["request_id"], r["field"], r["instances"]) for r in rows] == [
        ("a", "x", 4),
        ("a", "color", 4),
        ("b", "instances", 1),
    ]
    assert read_rejects(tmp_path, start=150).num_rows == 1
    assert read_rejects(tmp_path, model_version="4").num_rows == 0
    out = check(
        current(95), 95, profile=reference, signature=SIGNATURE, spec=QualitySpec(), rejects=rows
    )
    assert out["rejected"] == {
        "requests": 2,
        "instances": 5,
        "rate": 0.05,
        "by_field": {"color": 1, "instances": 1, "x": 1},
    }
    assert [p["check"] for p in out["problems"]] == ["rejected"]
    assert read_rejects(tmp_path / "empty").num_rows == 0


def test_small_training_sets_do_not_false_alarm_and_real_problems_still_do():
    """Regression (#12): with 120 training rows a new value falls outside the training range
    with probability 2/121 (1.6%), over the 1% threshold: traffic drawn from the training
    distribution alerted in most windows. Simulated: 200 windows of 300 rows each."""
    rng = np.random.default_rng(3)
    spec, signature = QualitySpec(), {"inputs": [{"name": "x", "type": "numeric"}]}
    alarms = found = 0
    for _ in range(200):
        train = pd.DataFrame({"x": rng.normal(size=120)})
        ref = profile(train, {"x": "numeric"})
        same = {"x": rng.normal(size=300)}
        out = check(same, 300, profile=ref, signature=signature, spec=spec)
        alarms += bool(out["problems"])
        shifted = {"x": rng.normal(1.5, 1.0, size=300)}  # ~16% beyond the training max
        out = check(shifted, 300, profile=ref, signature=signature, spec=spec)
        found += any(p["check"] == "out_of_range" for p in out["problems"])
    assert alarms <= 2  # 1% of windows at most; CHANCE_ALPHA is 0.1% per column
    # (the old rule, share > 1%, alarmed in most of these windows)
    assert found >= 150  # and most windows with a real shift beyond the range still alert


def test_decimals_are_numbers(reference):
    """Regression: DuckDB reads integers of both signs as HUGEINT, which Arrow holds as
    decimal128 and Python as Decimal; they counted as missing ("x is missing in 100.0% of
    rows") and never drifted."""
    from decimal import Decimal

    from mlsd.monitoring.quality import _as_float

    values = [Decimal(-3), None, Decimal("2.5"), Decimal(2**53 + 1), Decimal("sNaN"), "x", 10**400]
    expected = [-3.0, np.nan, 2.5, float(2**53 + 1), np.nan, np.nan, np.nan]
    np.testing.assert_array_equal(_as_float(values), expected)
    np.testing.assert_array_equal(_as_float(np.array(values, dtype=object)), expected)
    for kind in (pa.decimal128(38, 0), pa.decimal256(40, 1)):
        column = pa.chunked_array([pa.array([Decimal(-3), None, Decimal(7)], kind)])
        np.testing.assert_array_equal(_as_float(column), [-3.0, np.nan, 7.0])
    values = current()
    x = [None if np.isnan(v) else Decimal(round(v)) for v in values["x"]]
    values["x"] = pa.chunked_array([pa.array(x, pa.decimal128(38, 0))])
    out = check(values, 1000, profile=reference, signature=SIGNATURE, spec=QualitySpec())
    assert out["columns"]["x"]["missing_rate"] == x.count(None) / 1000 < 0.1
    assert out["problems"] == []


@pytest.mark.parametrize(("n", "m"), [(2, 1), (3, 2), (5, 4), (6, 6)])
def test_outside_range_p_value_counts_every_order(n, m):
    """The formula against brute force: every placement of m new values among n old ones
    (all orders of n + m exchangeable values are equally likely)."""
    from itertools import combinations

    from mlsd.monitoring.quality import outside_range_p_value

    outside = []
    for new in combinations(range(n + m), m):  # positions of the new values in sorted order
        old = sorted(set(range(n + m)) - set(new))
        outside.append(sum(p < old[0] or p > old[-1] for p in new))
    for k in range(m + 1):
        share = sum(o >= k for o in outside) / len(outside)
        assert outside_range_p_value(k, m, n) == pytest.approx(share, abs=1e-12)
