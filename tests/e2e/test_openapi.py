"""The OpenAPI document says what the server does: Schemathesis generates requests from it
(valid and invalid, every route, every check) against a real `mlsd serve`, and the server's
answers must match the document: statuses, bodies, content types, headers."""

from __future__ import annotations

import subprocess

import pytest
from server import TOKEN, ServerProcess, mlsd_command
from test_v2_triton import serving

schemathesis = pytest.importorskip("schemathesis")
SchemathesisConfig = pytest.importorskip("schemathesis.config").SchemathesisConfig

# a request over the server's limits is a 413, which is a correct refusal of invalid data
REJECTED = ["400", "401", "403", "404", "405", "409", "413", "415", "422"]
CONFIG = {
    "seed": 14,
    "generation": {"max-examples": 100, "mode": "all"},
    # no operation creates a resource another one reads (a request id is not addressed by
    # any path), so the stateful phase would only repeat the fuzzing at many times its cost
    "phases": {"stateful": {"enabled": False}},
    "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
    "headers": {"Authorization": f"Bearer {TOKEN}"},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A small multiclass system (a float, an integer, a boolean and a category) served."""
    extra = "serving: {max_instances: 20}\n"
    with serving(tmp_path_factory.mktemp("openapi"), "multiclass", extra) as proc:
        yield proc


def run_schemathesis(port: int, only: list[str] | None = None) -> set[str]:
    """Schemathesis's examples, coverage and fuzzing phases, positive and negative data,
    every check, on every operation (or the paths in ``only``); the labels tested."""
    from schemathesis.engine import Status, from_schema
    from schemathesis.engine.events import (
        EngineFinished,
        FatalError,
        NonFatalError,
        ScenarioFinished,
    )

    api = schemathesis.openapi.from_url(
        f"http://127.0.0.1:{port}/openapi.json",
        config=SchemathesisConfig.from_dict(CONFIG),
    )
    if only:
        api = api.include(path=only)
    failures, errors, tested, stop = [], [], set(), None
    for event in from_schema(api).execute():
        if isinstance(event, EngineFinished):
            stop = event.stop_reason
        if isinstance(event, ScenarioFinished):
            tested.add(event.recorder.label)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.append(
                            f"{event.recorder.label}: {check.name}: {failure.title}\n"
                            f"{failure.message}\n{check.failure_info.code_sample}"
                        )
        elif isinstance(event, NonFatalError):
            errors.append(f"{event.label}: {event.value!r}")
        elif isinstance(event, FatalError):
            errors.append(repr(event.exception))
    assert not errors, "\n".join(errors)
    assert not failures, f"{len(failures)} failure(s):\n" + "\n\n".join(sorted(set(failures)))
    assert str(stop) == "completed", stop
    return tested


@pytest.mark.timeout(240)  # one pass over every operation (a max-time would loop until it)
def test_schemathesis_finds_no_failure(served):
    tested = run_schemathesis(served.port)
    assert any("/v2/models/{name}/infer" in label for label in tested), tested
    assert any("/v1/rank" in label for label in tested), tested  # 409: not a ranking model


@pytest.fixture(scope="module")
def ranker(tmp_path_factory):
    """A small ranking system (LightGBM lambdarank on 100 queries of 20 items) served."""
    from test_rank import write_table

    folder = tmp_path_factory.mktemp("openapi-rank")
    write_table(folder / "d.csv")
    (folder / "system.yaml").write_text(
        "name: tiny-rank\n"
        "problem: {task: ranking, target: rel, group: query}\n"
        "data: {source: d.csv}\n"
        "models: {candidates: [lightgbm]}\n"
        "serving: {max_instances: 20}\n"
    )
    run = subprocess.run(
        [*mlsd_command(), "train"], cwd=folder, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    proc = ServerProcess(folder)
    yield proc
    proc.stop()


@pytest.mark.timeout(240)
def test_schemathesis_finds_no_failure_ranking(ranker):
    """The ranking routes of a ranking model: /v1/rank answers 200 for what the document
    says is valid, 4xx for the rest; /v2 infer answers a score per row."""
    tested = run_schemathesis(ranker.port, only=["/v1/rank", "/v2/models/{name}/infer"])
    assert any("/v1/rank" in label for label in tested), tested


def test_the_document_names_the_inputs_and_every_status(served):
    _, doc, _ = served.client.call("GET", "/openapi.json")
    paths = doc["paths"]
    predict = paths["/v1/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]
    item = body["properties"]["instances"]["items"]
    assert item["required"] == ["x", "n", "flag", "color"]
    assert body["properties"]["instances"]["minItems"] == 1
    assert set(predict["responses"]) == {"200", "400", "405", "413", "422", "503"}
    assert "Allow" in predict["responses"]["405"]["headers"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert "requestBody" in infer
    error = infer["responses"]["422"]["content"]["application/json"]["schema"]
    assert error["properties"]["error"] == {"type": "string"}
    assert "/v2/models/{name}/versions/{version}/config" in paths
    rank = paths["/v1/rank"]["post"]
    body = rank["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["group", "items"]
    assert body["properties"]["items"]["items"]["required"] == ["x", "n", "flag", "color"]
    assert body["properties"]["k"]["minimum"] == 1
    assert set(rank["responses"]) == {"200", "400", "405", "409", "413", "422", "503"}
    ranking = rank["responses"]["200"]["content"]["application/json"]["schema"]
    assert ranking["properties"]["ranking"]["items"]["required"] == ["item", "score", "position"]
