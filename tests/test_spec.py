"""system.yaml loading: defaults, shorthands, and errors that name file, line and key."""

from __future__ import annotations

import json

import pytest

from mlsd.errors import SpecError
from mlsd.spec import json_schema, load_spec, parse_duration, parse_spec

MINIMAL = """\
name: demo
problem:
  task: binary
  target: y
data:
  source: data.csv
"""


def problems(text: str) -> list[dict]:
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="sys.yaml")
    return info.value.problems


def test_minimal_spec_gets_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.problem.costs.false_negative == 1.0
    assert spec.data.split.valid == 0.15
    assert spec.split_method == "stratified"
    assert spec.features.min_frequency == 5
    assert spec.seed == 42


def test_shorthands_expand():
    spec = parse_spec(
        MINIMAL.replace("target: y", "target: y\n  time: ts")
        + """\
  columns: {a: categorical, b: {type: numeric, min: 0}}
  checks: {acknowledge: ["leakage:a"]}
features:
  exclude: c
"""
    )
    assert spec.problem.time == ["ts"]
    assert spec.split_method == "time"
    assert spec.data.columns["a"].type == "categorical"
    assert spec.data.columns["b"].min == 0
    assert spec.data.checks.acknowledge[0].check == "leakage"
    assert spec.data.checks.acknowledge[0].column == "a"
    assert spec.features.exclude == ["c"]
    assert spec.data.source.path == "data.csv"


def test_unknown_key_names_line_path_and_suggestion():
    [p] = problems(MINIMAL.replace("target: y", "traget: y\n  target: y"))
    assert p["line"] == 4
    assert p["key"] == "problem.traget"
    assert "did you mean 'target'" in p["problem"]
    assert p["file"] == "sys.yaml"


def test_bad_enum_value_suggests_closest():
    [p] = problems(MINIMAL.replace("task: binary", "task: regresion"))
    assert p["line"] == 3
    assert "did you mean 'regression'" in p["problem"]
    assert "binary" in p["hint"]


def test_missing_required_key_points_at_parent():
    [p] = problems(MINIMAL.replace("  target: y\n", ""))
    assert p["key"] == "problem.target"
    assert p["line"] == 2
    assert "add `target:`" in p["hint"]


def test_range_errors_carry_the_field_description():
    [p] = problems(MINIMAL + "  split: {valid: 1.5}\n")
    assert p["key"] == "data.split.valid"
    assert p["line"] == 7
    assert "less than 1" in p["problem"]


def test_cross_section_problems_are_located():
    text = MINIMAL.replace("task: binary", "task: regression\n  positive_class: 1")
    text += "  split: {method: group}\nfeatures:\n  exclude: [y]\n"
    found = {p["key"]: p for p in problems(text)}
    assert set(found) == {"problem.positive_class", "data.split.method", "features.exclude"}
    assert found["features.exclude"]["line"] == 10


def test_yaml_syntax_error_and_duplicate_keys():
    [p] = problems("name: x\nproblem: [unclosed\n")
    assert p["key"] == "(yaml)" and p["line"] is not None
    [p] = problems(MINIMAL + "name: again\n")
    assert "twice" in p["problem"] and p["line"] == 7


def test_durations():
    assert parse_duration("24h") == 86400
    assert parse_duration("1.5d") == 1.5 * 86400
    with pytest.raises(ValueError):
        parse_duration("soon")
    [p] = problems(MINIMAL + "  label_delay: 3 days\n")
    assert p["key"] == "data.label_delay"


def test_load_spec_missing_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


def test_load_spec_resolves_paths_against_its_folder(tmp_path):
    (tmp_path / "system.yaml").write_text(MINIMAL)
    spec = load_spec(tmp_path)
    assert spec.resolve("data.csv") == tmp_path.resolve() / "data.csv"


def test_json_schema_documents_every_field():
    schema = json_schema()
    json.dumps(schema)
    problem = schema["$defs"]["ProblemSpec"]["properties"]
    assert problem["latency_budget_ms"]["exclusiveMinimum"] == 0
    for name, definition in schema["$defs"].items():
        for field, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"


@pytest.mark.parametrize("example_name", ["bikeshare", "caravan"])
def test_committed_examples_load(example_name):
    from conftest import EXAMPLES

    spec = load_spec(EXAMPLES / example_name / "system.yaml")
    assert spec.name


def test_metric_names_are_checked_against_the_task():
    text = MINIMAL + "metrics:\n  primary: roc_acu\n  guardrails: {rmse: {max: 3}}\n"
    found = {p["key"]: p for p in problems(text)}
    assert "did you mean 'roc_auc'" in found["metrics.primary"]["problem"]
    assert found["metrics.primary"]["line"] == 8
    assert "does not apply to a binary task" in found["metrics.guardrails.rmse"]["problem"]


FUNNEL = """\
name: recs
problem:
  task: ranking
  id: user
  target: item
architecture:
  kind: funnel
data:
  source: ratings.csv
"""


def test_a_funnel_recommends_items_to_users_from_interactions():
    spec = parse_spec(FUNNEL)
    assert spec.architecture.funnel and spec.split_method == "per_user"
    assert spec.architecture.generators == ["popularity", "itemknn", "ease", "als"]
    timed = parse_spec(FUNNEL.replace("  target: item\n", "  target: item\n  time: ts\n"))
    assert timed.split_method == "per_user_time"  # each user's last interactions held out
    found = {p["key"]: p for p in problems(MINIMAL + "architecture:\n  kind: funnel\n")}
    assert "not a binary task" in found["problem.task"]["problem"]
    assert "user column" in found["problem.id"]["problem"]
    rules = FUNNEL.replace(
        "  kind: funnel\n", "  kind: funnel\n  filters: {rules: [year > 1990]}\n"
    )
    [p] = problems(rules)
    assert p["key"] == "architecture.filters.rules" and "data.items" in p["hint"]
    [p] = problems(FUNNEL + "  split: {method: random}\n")
    assert p["key"] == "data.split.method" and "per_user" in p["hint"]
    [p] = problems(MINIMAL + "  split: {method: per_user}\n")
    assert "architecture.kind: funnel" in p["hint"]
    [p] = problems(FUNNEL.replace("kind: funnel", "kind: funnel\n  generators: [eas]"))
    assert p["key"].startswith("architecture.generators")
    recent = FUNNEL.replace("kind: funnel", "kind: funnel\n  generators: [ease, recent]")
    [p] = problems(recent)
    assert p["key"] == "architecture.generators[1]" and "problem.time" in p["hint"]
    timed = parse_spec(recent.replace("  target: item\n", "  target: item\n  time: ts\n"))
    assert timed.architecture.generators == ["ease", "recent"]


def test_rollout_sections_are_checked_with_their_keys():
    text = (
        MINIMAL
        + "metrics:\n  online: [acuracy]\nrollout:\n  strategy: canary\n"
        + "  canary: {steps: [50, 5]}\n"
    )
    found = {p["key"]: p for p in problems(text)}
    assert "steps are increasing" in found["rollout.canary.steps"]["problem"]
    assert any(
        "last step must be 100" in p["problem"]
        for p in problems(MINIMAL + "rollout:\n  canary: {steps: [5, 50]}\n")
    )
    text = MINIMAL + "metrics:\n  online: [acuracy, mae]\n"
    found = {p["key"]: p for p in problems(text)}
    assert "did you mean 'accuracy'" in found["metrics.online[0]"]["problem"]
    assert "does not apply to a binary task" in found["metrics.online[1]"]["problem"]
