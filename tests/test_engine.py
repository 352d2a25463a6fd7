"""The engine switch without Ray: the local engine by default, and a clear error, never a
traceback, when Ray is asked for and is not installed or a command's option is wrong."""

from __future__ import annotations

import sys

import pytest

from mlsd.engine import batch_scorer, kind, recommender, trial_pool
from mlsd.engine.cluster import EngineError, connect
from mlsd.engine.ray_serving import serve_replicas
from mlsd.serving.batch import score_here
from mlsd.serving.recommend import recommend_here
from mlsd.spec import EngineSpec, ServingSpec, SpecError, parse_spec

SPEC = "name: t\nproblem: {task: binary, target: y}\ndata: {source: d.csv}\n"


def test_the_local_engine_is_the_default_and_the_option_overrides_the_spec():
    spec = parse_spec(SPEC)
    assert kind(spec) == "local" and kind(spec, "ray") == "ray"
    assert batch_scorer(spec) is score_here and recommender(spec) is recommend_here
    assert trial_pool(spec) is None
    on_ray = parse_spec(SPEC + "engine: {kind: ray}\n")
    assert kind(on_ray) == "ray" and kind(on_ray, "local") == "local"
    assert batch_scorer(on_ray, "local") is score_here


def test_ray_asked_for_but_not_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(EngineError, match="Ray is not installed") as caught:
        connect(EngineSpec(kind="ray"))
    assert "mlsd[ray]" in caught.value.render() and caught.value.exit_code == 2


def test_serving_replicas_need_one_replica_and_a_port():
    with pytest.raises(EngineError, match="at least one replica"):
        serve_replicas(EngineSpec(kind="ray"), None, "t", ServingSpec(), "champion", 0)
    any_port = ServingSpec().model_copy(update={"port": 0})  # what `--port 0` gives
    with pytest.raises(EngineError, match=r"serving\.port must be a number"):
        serve_replicas(EngineSpec(kind="ray"), None, "t", any_port, "champion", 2)


def test_a_wrong_engine_in_the_spec_names_the_key():
    with pytest.raises(SpecError, match=r"engine\.kind") as caught:
        parse_spec(SPEC + "engine: {kind: spark}\n")
    assert "local" in str(caught.value) and "ray" in str(caught.value)
