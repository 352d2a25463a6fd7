"""`mlsd monitor` as a user meets it: bikeshare trained on January-June, July-December sent
through a real `mlsd serve`, labels for part of the traffic, a webhook on 127.0.0.1."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from server import ServerProcess
from test_cli_data import mlsd

from conftest import EXAMPLES
from mlsd.serving.batch import csv_value
from webhook import Receiver

REQUEST_ROWS = 250
WINDOW_ROWS = 1100
SPEC = "first-half.yaml"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Train on Jan-Jun, serve Jul-Dec in time order, label every other request partly."""
    folder = tmp_path_factory.mktemp("monitor") / "bikeshare"
    folder.mkdir()
    for name in ("bikeshare.csv", SPEC):
        (folder / name).write_bytes((EXAMPLES / "bikeshare" / name).read_bytes())
    receiver = Receiver()
    spec = folder / SPEC
    text = spec.read_text()
    if "\nmonitoring:" in text:  # the example may declare its own window: ours wins
        text = text[: text.index("\nmonitoring:")] + "\n"
    spec.write_text(
        text + f"\nmonitoring: {{window: {{rows: {WINDOW_ROWS}}}, webhook: {receiver.url}}}\n"
    )
    trained = mlsd("train", "-c", SPEC, cwd=folder)
    assert trained.returncode == 0, trained.stdout + trained.stderr

    with open(folder / "bikeshare.csv", newline="") as handle:
        later = [r for r in csv.DictReader(handle) if int(r["day"]) > 181]
    inputs = [
        {k: csv_value(v) for k, v in r.items() if k not in ("bikers", "casual", "registered")}
        for r in later
    ]
    truth = np.array([float(r["bikers"]) for r in later])
    predictions = np.empty(len(later))
    labelled = np.zeros(len(later), dtype=bool)
    server = ServerProcess(folder, "-c", SPEC)
    try:
        for number, start in enumerate(range(0, len(inputs), REQUEST_ROWS)):
            rid = f"req-{number}"
            chunk = inputs[start : start + REQUEST_ROWS]
            status, body, _ = server.client.call(
                "POST", "/v1/predict", {"instances": chunk}, {"X-Request-ID": rid}
            )
            assert status == 200, body
            predictions[start : start + len(chunk)] = [p["value"] for p in body["predictions"]]
            if number % 2 == 0:  # late labels: every other request, two instances in three
                feedback = [
                    {"request_id": rid, "instance": k, "label": truth[start + k]}
                    for k in range(len(chunk))
                    if k % 3 != 0
                ]
                status, body, _ = server.client.call("POST", "/v1/feedback", feedback)
                assert status == 200 and body["recorded"] == len(feedback), body
                labelled[[start + k for k in range(len(chunk)) if k % 3 != 0]] = True
        # two requests the server refuses: a temperature that is not a number, a missing
        # humidity (a number outside the training range would be answered and flagged)
        hot = {**inputs[-1], "temp": "hot"}
        dry = {k: v for k, v in inputs[-1].items() if k != "hum"}
        for bad in ([hot, inputs[-2]], [dry]):
            status, _, _ = server.client.call("POST", "/v1/predict", {"instances": bad})
            assert status == 422
    finally:
        server.stop()
    first = mlsd("monitor", "-c", SPEC, "--json", cwd=folder)
    second = mlsd("monitor", "-c", SPEC, cwd=folder)
    yield {
        "folder": folder,
        "first": first,
        "second": second,
        "report": json.loads(first.stdout) if first.stdout.startswith("{") else None,
        "predictions": predictions,
        "truth": truth,
        "labelled": labelled,
        "receiver": receiver,
    }
    receiver.close()


def test_second_half_drifts_on_temperature_and_predictions_and_exits_1(served):
    first = served["first"]
    assert first.returncode == 1, first.stdout + first.stderr
    report = served["report"]
    (model,) = report["models"]
    assert model["n"] == 4395 and model["task"] == "regression"
    assert [w["n"] for w in model["windows"]] == [1095, 1100, 1100, 1100]
    latest = model["windows"][-1]
    drifted = set(latest["drift"]["drifted"])
    assert {"temp", "atemp"} <= drifted, latest["drift"]
    assert latest["prediction_drift"]["drifted"], latest["prediction_drift"]
    assert model["reference"]["predictions"] == "package profile"
    # every alert of the latest window is in the report's latest list, with its evidence
    checks = {(a["check"], a["subject"]) for a in report["latest"]["alerts"]}
    assert {("feature_drift", "temp"), ("feature_drift", "atemp")} <= checks
    assert ("prediction_drift", "prediction") in checks
    temp = next(a for a in report["latest"]["alerts"] if a["subject"] == "temp")
    evidence = temp["evidence"]
    assert evidence["p_adjusted"] < 0.01 and evidence["distance"] >= evidence["threshold"]
    assert evidence["n_current"] == 1100 and evidence["n_reference"] > 1000
    assert evidence["window"]["n"] == 1100 and evidence["window"]["model_version"] == "1"


def test_late_labels_give_realised_metrics_on_exactly_those_rows(served):
    model = served["report"]["models"][0]
    labelled, truth, predictions = served["labelled"], served["truth"], served["predictions"]
    bounds = [(0, 1095)] + [(1095 + i * 1100, 2195 + i * 1100) for i in range(3)]
    for window, (lo, hi) in zip(model["windows"], bounds, strict=True):
        rows = np.flatnonzero(labelled[lo:hi]) + lo
        realised = window["performance"]["realised"]
        assert window["n_labelled"] == len(rows) == realised["n"]
        expected = np.abs(predictions[rows] - truth[rows]).mean()
        assert realised["metrics"]["mae"] == pytest.approx(expected, rel=1e-9)
        assert realised["primary"]["metric"] == "mae"
        assert realised["primary"]["offline"] > 0
        # regression has no calibrated score: no estimate, and it says so
        assert window["performance"]["estimated"]["method"] is None
    assert served["report"]["n_labelled"] == int(labelled.sum())


def test_rejects_are_counted_by_field_in_the_latest_window(served):
    latest = served["report"]["models"][0]["windows"][-1]
    rejected = latest["quality"]["rejected"]
    assert rejected["requests"] == 2 and rejected["instances"] == 3
    assert rejected["by_field"] == {"hum": 1, "temp": 1}
    assert latest["quality"]["outputs"]["non_finite"] == 0
    # rows 3295-4394 come from requests 13 (rows 3250-3499) to 17: five requests
    assert latest["latency"]["requests"] == 5 and latest["latency"]["p99_ms"] > 0


def test_alerts_reach_the_event_log_and_the_webhook_once(served):
    from mlsd.events import EventLog
    from mlsd.monitoring.alerts import KINDS

    report = served["report"]
    total = report["alerts"]["total"]
    assert report["alerts"]["recorded"] == total > 0
    assert report["alerts"]["webhook"] == {
        "url": served["receiver"].url,
        "sent": total,
        "failed": 0,
        "error": None,
    }
    bodies = served["receiver"].bodies
    assert len(bodies) == total
    assert {b["system"] for b in bodies} == {"bike-demand-h1"}
    assert any(b["check"] == "feature_drift" and b["subject"] == "temp" for b in bodies)
    events = EventLog(served["folder"] / ".mlsd" / "events.sqlite").read(kind=list(KINDS))
    assert len(events) == total
    assert {e["evidence"]["key"] for e in events} == {b["key"] for b in bodies}
    # the second run finds the same alerts, records and sends nothing new, still exits 1
    second = served["second"]
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"0 new alert(s) recorded, {total} already there" in second.stdout
    assert "ALERTS in the latest window" in second.stdout
    assert len(served["receiver"].bodies) == total


def test_report_files_and_mlflow_run(served):
    folder: Path = served["folder"]
    report = served["report"]
    reports = folder / ".mlsd" / "reports" / "bike-demand-h1"
    on_disk = json.loads((reports / "monitoring.json").read_text())
    assert (
        on_disk["models"][0]["windows"][-1]["drift"]["drifted"]
        == (report["models"][0]["windows"][-1]["drift"]["drifted"])
    )
    html = (reports / "monitoring.html").read_text()
    temp = next(
        c for c in report["models"][0]["windows"][-1]["drift"]["columns"] if c["column"] == "temp"
    )
    # per feature: reference vs current histogram, and the distance per window with its threshold
    assert html.count("<svg") >= 2 * 9 and f"temp: {temp['method']} distance per window" in html
    assert "temp: reference vs window 3" in html
    assert "<script" not in html and 'src="http' not in html  # self-contained
    run_id = report["mlflow_run_id"]
    logged = [p for p in (folder / ".mlsd" / "mlruns").rglob("monitoring.html") if run_id in str(p)]
    assert len(logged) == 1 and "Monitoring: bike-demand-h1" in logged[0].read_text()


def test_report_renders_in_a_browser(served):
    from browser import render

    rendered = render(served["folder"] / ".mlsd/reports/bike-demand-h1/monitoring.html")
    assert rendered.console == []
    assert "Alerts in the latest window" in rendered.dom and "<svg" in rendered.dom
