"""The model families' one declaration (mlsd.model_params): defaults, checks and their text,
the spec's models.params and candidates, and `mlsd schema`."""

from __future__ import annotations

import json

import pytest

from mlsd.cli import main
from mlsd.errors import SpecError
from mlsd.model_params import FAMILIES, LIGHTGBM, LINEAR, NAMES, ParamError
from mlsd.models import families
from mlsd.models.gbdt import OBJECTIVES
from mlsd.spec import parse_spec
from mlsd.tasks import BINARY, MULTICLASS, RANKING, REGRESSION


def test_the_defaults_are_the_models_own():
    assert LINEAR.defaults(REGRESSION) == {"alpha": 1.0}
    assert LINEAR.defaults(MULTICLASS) == {"C": 1.0, "class_weight": None}
    assert LIGHTGBM.defaults(BINARY) == {
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.9,
        "bagging_fraction": 1.0,
        "bagging_freq": 0,
        "lambda_l1": 0.0,
        "lambda_l2": 0.0,
        "max_depth": -1,
        "min_sum_hessian_in_leaf": 1e-3,
        "max_bin": 255,
        "cat_smooth": 10.0,
        "cat_l2": 10.0,
        "min_data_per_group": 100,
        "max_cat_threshold": 32,
        "extra_trees": False,
        "class_weight": None,
        "num_boost_round": None,
        "early_stopping_rounds": 50,
    }
    assert "class_weight" not in LIGHTGBM.defaults(REGRESSION)


def test_names_exist_once_and_every_name_has_a_class():
    assert tuple(families.FAMILIES) == NAMES == tuple(FAMILIES)
    assert all(cls.family == name for name, cls in families.FAMILIES.items())
    assert set(OBJECTIVES) == set(LIGHTGBM.tasks)


def test_validate_resolves_types_and_names_what_is_wrong():
    resolved = LIGHTGBM.validate({"num_leaves": 15.0, "lambda_l2": 1}, REGRESSION)
    assert (resolved["num_leaves"], resolved["lambda_l2"]) == (15, 1.0)
    assert type(resolved["lambda_l2"]) is float
    # None is "not set": callers pass class_weight=None whatever the task
    assert LINEAR.validate({"class_weight": None}, REGRESSION) == {"alpha": 1.0}
    cases = [
        ({"num_leave": 7}, REGRESSION, "unknown lightgbm parameter 'num_leave' — did you mean"),
        ({"num_leaves": 1}, REGRESSION, r"num_leaves must be an integer in \[2, 131072\]"),
        ({"num_leaves": 7.5}, REGRESSION, "num_leaves must be an integer"),
        ({"feature_fraction": 0}, BINARY, r"feature_fraction must be a number in \(0, 1\]"),
        ({"extra_trees": 1}, BINARY, "extra_trees must be true or false"),
        ({"learning_rate": float("nan")}, BINARY, "learning_rate must be a number > 0"),
        ({"class_weight": "heavy"}, BINARY, "class_weight must be one of null, balanced"),
        ({"class_weight": "balanced"}, REGRESSION, "applies to binary and multiclass tasks"),
        ({"objective": "l2"}, RANKING, "objective must be one of lambdarank, rank_xendcg"),
        ({"objective": "lambdarank"}, REGRESSION, "applies to ranking tasks, not regression"),
        ({"class_weight": "balanced"}, RANKING, "applies to binary and multiclass tasks"),
    ]
    for params, task, message in cases:
        with pytest.raises(ParamError, match=message):
            LIGHTGBM.validate(params, task)
    with pytest.raises(
        ParamError, match="alpha applies to regression and ranking tasks, not binary"
    ):
        LINEAR.validate({"alpha": 2.0}, BINARY)


def test_search_space_is_the_searched_parameters_in_draw_order():
    assert list(LINEAR.search_space(REGRESSION)) == ["alpha"]
    assert list(LINEAR.search_space(BINARY)) == ["C"]
    assert list(LIGHTGBM.search_space(REGRESSION)) == [
        "learning_rate",
        "num_leaves",
        "min_data_in_leaf",
        "feature_fraction",
        "bagging_fraction",
        "bagging_freq",
        "lambda_l2",
        "extra_trees",
    ]


def _spec(models: str, task: str = "regression"):
    return parse_spec(
        f"name: t\nproblem: {{task: {task}, target: y}}\ndata: {{source: d.csv}}\nmodels:\n{models}"
    )


def test_a_wrong_parameter_in_system_yaml_is_a_spec_error_with_line_and_key():
    with pytest.raises(SpecError) as info:
        _spec(
            "  candidates: [lightgbm]\n"
            "  params:\n"
            "    lightgbm:\n"
            "      num_leave: 15\n"
            "      num_leaves: 1\n"
            "      class_weight: balanced\n"
        )
    problems = {p["key"]: p for p in info.value.problems}
    assert set(problems) == {
        "models.params.lightgbm.num_leave",
        "models.params.lightgbm.num_leaves",
        "models.params.lightgbm.class_weight",
    }
    unknown = problems["models.params.lightgbm.num_leave"]
    assert unknown["line"] == 8 and "did you mean 'num_leaves'" in unknown["problem"]
    out_of_range = problems["models.params.lightgbm.num_leaves"]
    assert out_of_range["line"] == 9
    assert "an integer in [2, 131072] — given 1" in out_of_range["problem"]
    assert "models.class_weight" in problems["models.params.lightgbm.class_weight"]["problem"]
    assert "system.yaml:9: models.params.lightgbm.num_leaves:" in str(info.value)


def test_spec_params_and_candidates_take_declared_names_only():
    spec = _spec("  params: {lightgbm: {num_leaves: 15}, linear: {alpha: 0.5}}\n")
    assert spec.models.params == {"lightgbm": {"num_leaves": 15}, "linear": {"alpha": 0.5}}
    assert spec.models.candidates == list(NAMES)
    with pytest.raises(SpecError, match="did you mean 'lightgbm'"):
        _spec("  candidates: [lightgbn]\n")
    with pytest.raises(SpecError, match=r"models\.params\.lgbm: 'lgbm' is not allowed"):
        _spec("  params: {lgbm: {num_leaves: 15}}\n")
    with pytest.raises(SpecError, match=r"linear is not in models\.candidates"):
        _spec("  candidates: [lightgbm]\n  params: {linear: {alpha: 0.5}}\n")
    with pytest.raises(SpecError, match="C applies to binary and multiclass tasks"):
        _spec("  params: {linear: {C: 0.5}}\n")


def test_mlsd_schema_lists_each_familys_parameters(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    models = schema["$defs"]["ModelsSpec"]["properties"]
    assert models["candidates"]["items"]["enum"] == list(NAMES)
    params = models["params"]["properties"]
    assert set(params) == set(NAMES)
    num_leaves = params["lightgbm"]["properties"]["num_leaves"]
    assert num_leaves["type"] == "integer"
    assert (num_leaves["default"], num_leaves["minimum"], num_leaves["maximum"]) == (31, 2, 131072)
    assert "leaves" in num_leaves["description"]
    assert "log-uniform over [7, 255]" in num_leaves["description"]
    assert params["linear"]["properties"]["alpha"]["exclusiveMinimum"] == 0
    assert "class_weight" not in params["lightgbm"]["properties"]  # models.class_weight sets it
