"""mlsd init: task inference and a commented spec that loads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.errors import DataError, MlsdError
from mlsd.scaffold import infer_task, render_spec, write_spec
from mlsd.spec import parse_spec


@pytest.mark.parametrize(
    ("kind", "n", "task"),
    [
        ("numeric", 2, "binary"),
        ("categorical", 2, "binary"),
        ("categorical", 5, "multiclass"),
        ("numeric", 7, "multiclass"),
        ("numeric", 500, "regression"),
        ("boolean", 2, "binary"),
    ],
)
def test_infer_task(kind, n, task):
    assert infer_task(kind, n) == task


def test_text_target_is_refused():
    with pytest.raises(DataError):
        infer_task("text", 900)


def test_rendered_spec_loads_and_is_commented(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=300, freq="h").astype(str),
            "store": rng.choice(["s1", "s2", "s3"], 300),
            "order_id": np.arange(300) + 1000,
            "churn": rng.choice(["yes", "no"], 300, p=[0.2, 0.8]),
        }
    ).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "cfg" / "system.yaml"
    text = render_spec(tmp_path / "d.csv", "churn", out=out, time=["when"])
    spec = parse_spec(text)
    assert spec.problem.task == "binary"
    assert spec.problem.positive_class == "yes"
    assert spec.split_method == "time"
    assert spec.data.source.path == "../d.csv"  # relative to the spec's folder
    assert spec.data.columns["when"].type == "datetime"
    assert spec.features.exclude == ["order_id"]
    assert sum(line.lstrip().startswith("#") or " # " in line for line in text.splitlines()) > 8
    write_spec(tmp_path / "d.csv", "churn", out=out)
    with pytest.raises(MlsdError, match="already exists"):
        write_spec(tmp_path / "d.csv", "churn", out=out)
