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


def test_a_time_column_of_day_numbers_is_a_feature_not_an_identifier(tmp_path):
    """Found by the corpus (trump_approval): a declared time column of consecutive integers
    was typed identifier and excluded from the features."""
    rng = np.random.default_rng(1)
    pd.DataFrame({"day": np.arange(736000, 736300), "y": rng.normal(size=300)}).to_csv(
        tmp_path / "d.csv", index=False
    )
    spec = parse_spec(render_spec(tmp_path / "d.csv", "y", out=tmp_path / "s.yaml", time=["day"]))
    assert spec.data.columns["day"].type == "numeric"
    assert spec.features.exclude == [] and spec.data.split.method == "time"


def test_an_entity_with_several_rows_gets_a_group_split(tmp_path):
    """Found by the corpus (modechoice): four rows per traveller were spread over the splits."""
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {
            "person": np.repeat(np.arange(100), 4),
            "x": rng.normal(size=400),
            "y": rng.integers(0, 2, 400),
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(
        render_spec(tmp_path / "d.csv", "y", out=tmp_path / "s.yaml", entity="person")
    )
    assert spec.data.split.method == "group" and spec.problem.id == "person"
    frame.drop_duplicates("person").to_csv(tmp_path / "one.csv", index=False)
    spec = parse_spec(
        render_spec(tmp_path / "one.csv", "y", out=tmp_path / "s.yaml", entity="person")
    )
    assert spec.data.split.method == "stratified"  # one row per entity: nothing to keep apart


def test_a_group_makes_a_ranking_spec_split_by_group(tmp_path):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "query": np.repeat(np.arange(50), 8),
            "x": rng.normal(size=400),
            "grade": rng.integers(0, 5, 400),
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    spec = parse_spec(
        render_spec(tmp_path / "d.csv", "grade", out=tmp_path / "s.yaml", group="query")
    )
    assert spec.problem.task == "ranking" and spec.problem.group == "query"
    assert spec.metrics.primary == "ndcg@10" and spec.data.split.method == "group"
    with pytest.raises(DataError, match="did you mean 'query'"):
        render_spec(tmp_path / "d.csv", "grade", out=tmp_path / "s.yaml", group="querry")
    with pytest.raises(DataError, match="--group ranks rows"):
        render_spec(
            tmp_path / "d.csv", "grade", out=tmp_path / "s.yaml", group="query", task="binary"
        )


def _table(tmp_path, target_values):
    rng = np.random.default_rng(3)
    pd.DataFrame({"x": rng.normal(size=300), "y": rng.choice(target_values, 300)}).to_csv(
        tmp_path / "d.csv", index=False
    )
    return tmp_path / "d.csv"


@pytest.mark.parametrize(
    ("values", "has_costs"),
    [(["a", "b", "c"], False), (["yes", "no"], True)],
)
def test_costs_of_a_false_positive_are_written_for_a_binary_task_only(tmp_path, values, has_costs):
    """A multiclass spec from `mlsd init` carried binary costs (false_positive/negative)."""
    text = render_spec(_table(tmp_path, values), "y", out=tmp_path / "s.yaml")
    assert ("costs:" in text) is has_costs
    assert ("false_positive" in text) is has_costs
    parse_spec(text)


def test_init_writes_retraining_triggers_that_load(tmp_path):
    """A spec from `mlsd init` had no triggers, so `mlsd retrain --if-needed` never fired."""
    text = render_spec(_table(tmp_path, ["a", "b", "c"]), "y", out=tmp_path / "s.yaml")
    spec = parse_spec(text)
    assert spec.retraining.triggers == ["drift", "performance"]
    commented = [line for line in text.splitlines() if line.lstrip().startswith("# - {")]
    assert len(commented) == 2  # schedule and new_labels, shown for the user to switch on
    for line in commented:  # each commented trigger loads once uncommented
        uncommented = text.replace(line, line.replace("# - ", "- ", 1))
        assert len(parse_spec(uncommented).retraining.triggers) == 3
