"""Slices: spec expressions against hand counts, the search finds a planted bad slice."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd.evaluation import slices
from mlsd.evaluation.slices import SliceError

CARAVAN = Path(__file__).resolve().parents[2] / "examples" / "caravan" / "caravan.csv"


def _credit(n: int = 400, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "student": pd.Categorical(rng.choice(["Yes", "No"], size=n, p=[0.3, 0.7])),
            "balance": rng.uniform(0, 2500, size=n).round(2),
            "income": np.where(rng.random(n) < 0.05, np.nan, rng.normal(40, 10, n)),
        }
    )


def test_spec_expressions_match_a_hand_count():
    frame = _credit()
    rng = np.random.default_rng(2)
    y = rng.normal(size=len(frame))
    pred = y + rng.normal(scale=0.5, size=len(frame))
    out = slices.analyse(
        frame,
        y,
        pred,
        task="regression",
        primary="mae",
        columns=list(frame.columns),
        spec_entries=['student == "Yes"', "balance > 1000", "student"],
        auto=False,
    )
    by_name = {s["slice"]: s for s in out["spec"]}
    student = by_name['student == "Yes"']
    rich = by_name["balance > 1000"]
    is_student = np.array([v == "Yes" for v in frame["student"]])
    is_rich = np.array([b > 1000 for b in frame["balance"]])
    assert student["support"] == int(is_student.sum())
    assert rich["support"] == int(is_rich.sum())
    assert student["metric"] == pytest.approx(np.abs(y - pred)[is_student].mean())
    assert rich["metric"] == pytest.approx(np.abs(y - pred)[is_rich].mean())
    assert student["ci_low"] <= student["metric"] <= student["ci_high"]
    assert student["gap"] == pytest.approx(student["metric"] - np.abs(y - pred).mean())
    # a column name gives one slice per level, covering every row once
    levels = [s for s in out["spec"] if s["columns"] == ["student"]]
    assert {s["slice"] for s in levels} == {"student == 'No'", "student == 'Yes'"}
    assert sum(s["support"] for s in levels) == len(frame)


def test_missing_values_never_satisfy_a_condition():
    frame = _credit()
    rows = slices.spec_slice_rows(frame, "income > 30")
    expected = int((frame["income"] > 30).sum())  # NaN > 30 is False
    assert len(rows) == expected
    assert not frame["income"].iloc[rows].isna().any()


@pytest.mark.parametrize(
    "expression", ["no_such_column > 3", "balance >", "balance + 1"], ids=["name", "syntax", "bool"]
)
def test_a_bad_spec_slice_is_a_clear_error(expression):
    with pytest.raises(SliceError) as err:
        slices.spec_slice_rows(_credit(), expression)
    assert expression in err.value.message and err.value.hint


def test_search_finds_a_planted_bad_slice():
    rng = np.random.default_rng(7)
    n = 4000
    frame = pd.DataFrame(
        {
            "region": pd.Categorical(rng.choice(["north", "south", "east", "west"], size=n)),
            "age": rng.uniform(18, 90, size=n),
            "plan": pd.Categorical(rng.choice(["basic", "plus", "pro"], size=n)),
            "noise": rng.normal(size=n),
        }
    )
    y = rng.normal(size=n)
    pred = y + rng.normal(scale=0.3, size=n)
    planted = (frame["region"] == "east").to_numpy() & (frame["age"] > 75).to_numpy()
    pred[planted] += rng.normal(scale=3.0, size=planted.sum())  # the model fails here
    out = slices.analyse(
        frame, y, pred, task="regression", primary="mae", columns=list(frame.columns)
    )
    top = out["worst"][0]
    assert set(top["columns"]) == {"region", "age"}, out["worst"][:3]
    assert "region == 'east'" in top["slice"] and "age >=" in top["slice"]
    assert top["significant"] and top["beyond_chance"]
    assert top["ci_low"] > out["overall"]
    # the slice found is (nearly) the planted one: most of its rows are planted rows
    in_slice = (frame["region"] == "east").to_numpy() & (
        frame["age"].to_numpy() >= float(top["slice"].split("age >= ")[1])
    )
    assert planted[in_slice].mean() > 0.9
    # the noise column is not named by any slice beyond chance
    assert not any("noise" in s["columns"] for s in out["worst"] if s["beyond_chance"])


def test_classification_slices_use_log_loss_and_report_the_primary():
    rng = np.random.default_rng(3)
    n = 2000
    frame = pd.DataFrame({"segment": pd.Categorical(rng.choice(list("abcd"), size=n))})
    y = (rng.random(n) < 0.3).astype(float)
    p = np.where(y == 1, 0.7, 0.2)
    bad = (frame["segment"] == "c").to_numpy()
    p[bad] = 1 - p[bad]  # inverted on segment c
    out = slices.analyse(frame, y, p, task="binary", primary="roc_auc", columns=["segment"])
    assert out["metric"] == "log_loss"
    worst = out["worst"][0]
    assert worst["slice"] == "segment == 'c'"
    assert worst["primary"] == pytest.approx(0.0)  # every positive ranked below every negative


def test_search_over_caravan_pairs_is_fast():
    frame = pd.read_csv(CARAVAN)
    y = (frame.pop("Purchase") == "Yes").to_numpy(dtype=float)
    p = np.clip(0.06 + 0.02 * np.random.default_rng(0).normal(size=len(y)), 0.01, 0.99)
    start = time.perf_counter()
    out = slices.analyse(frame, y, p, task="binary", primary="pr_auc", columns=list(frame.columns))
    elapsed = time.perf_counter() - start
    assert out["columns_searched"] == 85 and out["pairs_searched"] == 85 * 84 // 2
    assert len(out["worst"]) == 10
    assert all(s["support"] >= out["min_support"] for s in out["worst"])
    assert elapsed < 5.0, elapsed
