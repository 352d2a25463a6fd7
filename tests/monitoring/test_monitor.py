"""The monitor over a real package and a real prediction log (written as the server writes
it, without a server): windows, no false alarm on training-like traffic, drift and quality
alerts on shifted traffic, late labels, CBPE, staleness and the exit code.

The tests share one trained package and one log, and each adds traffic to it: they run in
file order (days 0-2 calm, day 3 shifted, day 5 from a second "version")."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from mlsd.models import aliases
from mlsd.models import package as packages
from mlsd.monitoring.monitor import MonitorError, monitor, parse_window
from mlsd.monitoring.windows import cut_windows
from mlsd.predlog.writer import PredictionLog
from mlsd.serving.model import format_outputs
from mlsd.spec import RowWindow, load_spec
from mlsd.workspace import Workspace

DAY = 86400.0
START = 1_750_000_000.0 - 1_750_000_000.0 % DAY  # a UTC midnight
MONITORING = "\nmonitoring: {window: 1d, min_rows: 200, max_age: 30d, log_to_mlflow: false}\n"


def trained(folder, target: str, frame: pd.DataFrame) -> dict:
    """Train and register the system in ``folder`` (system.yaml and its data); the
    context the tests and :func:`send` share."""
    from mlsd.models.train import train

    spec = load_spec(folder / "system.yaml")
    result = train(spec, progress=False)
    assert result.registered
    ws = Workspace.for_spec(spec)
    _, folder_of = aliases.resolve(ws.root, spec.name, "champion")
    return {
        "spec": spec,
        "ws": ws,
        "package": packages.load(folder_of),
        "frame": frame,
        "target": target,
        "version": str(result.model_version),
    }


@pytest.fixture(scope="module")
def caravan(tmp_path_factory):
    """Caravan trained once, with daily windows and at least 200 rows per tested window."""
    import shutil

    from conftest import EXAMPLES

    folder = tmp_path_factory.mktemp("monitor-unit") / "caravan"
    shutil.copytree(EXAMPLES / "caravan", folder, ignore=shutil.ignore_patterns(".mlsd"))
    spec_path = folder / "system.yaml"
    spec_path.write_text(spec_path.read_text() + MONITORING)
    return trained(folder, "Purchase", pd.read_csv(folder / "caravan.csv"))


NEGATIVES = """name: negatives
problem: {task: regression, target: y}
data:
  source: d.csv
  columns: {code: {type: categorical}, flag: {type: boolean}}
models: {candidates: [linear]}
"""


@pytest.fixture(scope="module")
def negatives(tmp_path_factory):
    """A model of seven integer columns holding negative values, an integer category and a
    flag: JSON inference types such columns HUGEINT, which came back as Decimal."""
    rng = np.random.default_rng(5)
    n = 3000
    frame = pd.DataFrame({f"f{k}": rng.integers(-50, 50, n) for k in range(1, 8)})
    frame["code"] = rng.integers(-3, 4, n)
    frame["flag"] = rng.random(n) < 0.4
    numbers = frame[[f"f{k}" for k in range(1, 8)]].to_numpy()
    frame["y"] = numbers @ rng.normal(size=7) + frame["code"] + rng.normal(size=n)
    folder = tmp_path_factory.mktemp("monitor-negatives")
    frame.to_csv(folder / "d.csv", index=False)
    (folder / "system.yaml").write_text(NEGATIVES + MONITORING)
    return trained(folder, "y", frame)


def send(ctx, rows: pd.DataFrame, day: int, *, labels: bool | np.ndarray = False, tag: str = ""):
    """Log ``rows`` as the server would on ``day`` (requests of 100), with true labels for
    the rows where ``labels`` is True."""
    package, version, target = ctx["package"], ctx["version"], ctx["target"]
    inputs = rows.drop(columns=[target]).to_dict("records")
    columns = {c: rows[c].tolist() for c in rows.columns if c != target}
    outputs = format_outputs(package.predict_matrix(columns), package.signature)
    mask = np.broadcast_to(np.asarray(labels, dtype=bool), (len(rows),))
    with PredictionLog(ctx["ws"], flush_s=0.05) as log:
        for r, start in enumerate(range(0, len(rows), 100)):
            rid = f"{tag}d{day}-r{r}"
            ts = START + day * DAY + 60 * r
            log.prediction(
                request_id=rid,
                model_version=version,
                inputs=inputs[start : start + 100],
                outputs=outputs[start : start + 100],
                latency_ms=3.0 + r % 3,
                ts=ts,
            )
            for k in range(len(inputs[start : start + 100])):
                if mask[start + k]:
                    label = rows[target].iloc[start + k]
                    log.feedback(request_id=rid, instance=k, label=label, ts=ts + DAY)
    return outputs


def test_windows_and_parsing():
    ts = np.array([0.0, 10, DAY - 1, DAY, 3 * DAY + 5])
    got = [(w.lo, w.hi, w.start, w.end) for w in cut_windows(ts, seconds=DAY)]
    assert got == [(0, 3, 0.0, DAY), (3, 4, DAY, 2 * DAY), (4, 5, 3 * DAY, 4 * DAY)]
    rows = cut_windows(np.arange(10.0), rows=4)  # counted back: the latest is full
    assert [(w.lo, w.hi, w.partial) for w in rows] == [(0, 2, True), (2, 6, False), (6, 10, False)]
    assert cut_windows(np.array([]), rows=4) == []
    assert parse_window("6h") == "6h"
    for text in ("1000", "1000rows", "rows:1000", "1000 rows"):
        assert parse_window(text) == RowWindow(rows=1000)
    with pytest.raises(MonitorError, match="not a monitoring window"):
        parse_window("soon")


def test_training_like_traffic_raises_no_alert_then_shifted_traffic_does(caravan):
    frame = caravan["frame"]
    rng = np.random.default_rng(0)
    for day in range(3):  # three days of customers drawn from the data itself
        send(caravan, frame.sample(800, random_state=int(rng.integers(1 << 30))), day)
    calm = monitor(caravan["spec"], now=START + 3 * DAY, write=False)
    (model,) = calm.report["models"]
    assert [w["n"] for w in model["windows"]] == [800, 800, 800]
    assert [w["start"][:10] for w in model["windows"]] == [
        time.strftime("%Y-%m-%d", time.gmtime(START + d * DAY)) for d in range(3)
    ]
    assert all(w["tested"] and w["drift"]["drifted"] == [] for w in model["windows"])
    assert calm.alerts == [] and calm.exit_code == 0, [a.message for a in calm.alerts]
    for w in model["windows"]:  # no labels yet: the estimate stands alone
        assert w["performance"]["realised"] is None
        assert w["performance"]["estimated"]["method"] == "cbpe"
        assert 0 < w["performance"]["estimated"]["metrics"]["accuracy"] <= 1
    assert model["stale"] is False and model["age_days"] < 1

    # day 3: a subtype never seen takes a fifth of the traffic, car policies go up by 3
    shifted = frame.sample(800, random_state=7).reset_index(drop=True)
    shifted.loc[:159, "MOSTYPE"] = 99
    shifted["PPERSAUT"] = shifted["PPERSAUT"] + 3
    labelled = np.arange(800) % 4 != 0  # late labels for three rows in four
    outputs = send(caravan, shifted, 3, labels=labelled)
    stormy = monitor(caravan["spec"], now=START + 4 * DAY, write=False, publish=False)
    assert stormy.exit_code == 1
    latest = stormy.report["models"][0]["windows"][-1]
    assert {"MOSTYPE", "PPERSAUT"} <= set(latest["drift"]["drifted"])
    checks = {(a.check, a.subject) for a in stormy.latest_alerts}
    assert {("feature_drift", "MOSTYPE"), ("feature_drift", "PPERSAUT")} <= checks
    assert ("unseen_category", "MOSTYPE") in checks
    unseen = latest["quality"]["columns"]["MOSTYPE"]
    assert unseen["unseen"] == 160 and unseen["unseen_examples"] == ["99"]
    # earlier windows keep their verdicts: the alerts are in the latest one only
    assert all(a.window["index"] == 3 for a in stormy.alerts)

    # realised metrics on exactly the labelled rows, estimate shown beside them
    realised = latest["performance"]["realised"]
    assert latest["n_labelled"] == realised["n"] == int(labelled.sum())
    y = (shifted["Purchase"] == "Yes").to_numpy()[labelled]
    scores = np.array([o["score"] for o in outputs])[labelled]
    threshold = caravan["package"].signature["output"]["threshold"]
    accuracy = float(((scores >= threshold) == y).mean())
    assert realised["metrics"]["accuracy"] == pytest.approx(accuracy, rel=1e-12)
    assert realised["primary"]["metric"] == "pr_auc"
    assert [g["metric"] for g in realised["guardrails"]] == ["log_loss"]
    assert latest["performance"]["estimated"]["n"] == 800  # on every row, labels or not


def test_staleness_and_model_filter(caravan):
    late = monitor(caravan["spec"], now=time.time() + 40 * DAY, write=False, publish=False)
    stale = [a for a in late.latest_alerts if a.check == "staleness"]
    assert len(stale) == 1 and stale[0].evidence["age_days"] > 40
    assert late.report["models"][0]["stale"] is True

    with pytest.raises(MonitorError, match="no model '9'"):
        monitor(caravan["spec"], model="9", write=False, publish=False)
    one = monitor(caravan["spec"], model="champion", write=False, publish=False)
    assert [m["model_version"] for m in one.report["models"]] == [caravan["version"]]


def test_report_files_and_json(caravan):
    result = monitor(caravan["spec"], window="2000", write=True, publish=False)
    paths = {k: caravan["ws"].reports / f"monitoring.{k}" for k in ("json", "html")}
    on_disk = json.loads(paths["json"].read_text())
    assert on_disk["window"] == {"text": "2,000 rows", "rows": 2000, "seconds": None}
    assert [w["n"] for w in on_disk["models"][0]["windows"]] == [1200, 2000]
    assert result.run_id is None  # log_to_mlflow: false
    html = paths["html"].read_text()
    assert "estimated from scores (CBPE) and realised" in html
    assert "Model version" in html and "<script" not in html


def test_an_empty_log_says_what_to_do(tmp_path, example):
    spec = load_spec(example("caravan") / "system.yaml")
    with pytest.raises(MonitorError) as caught:
        monitor(spec, write=False, publish=False)
    assert "no predictions" in caught.value.message
    assert "mlsd serve" in caught.value.hint


def test_each_model_version_has_its_own_windows_and_the_newest_decides(caravan):
    # the same package served from its folder: the server logs the folder's name as version
    folder = caravan["package"].folder
    frame = caravan["frame"]
    ctx = {**caravan, "version": folder.name}
    send(ctx, frame.sample(300, random_state=11), day=5, tag="folder-")
    result = monitor(caravan["spec"], now=START + 6 * DAY, write=False, publish=False)
    by_version = {m["model_version"]: m for m in result.report["models"]}
    assert set(by_version) == {caravan["version"], folder.name}
    assert by_version[folder.name]["n"] == 300
    assert [w["n"] for w in by_version[folder.name]["windows"]] == [300]
    # version 1's last window (day 3, shifted) is not the latest any more
    assert result.report["latest"]["model_versions"] == [folder.name]
    assert result.exit_code == 0 and all(
        a.model_version == caravan["version"] for a in result.alerts
    )
    only = monitor(caravan["spec"], model=str(folder), write=False, publish=False)
    assert [m["model_version"] for m in only.report["models"]] == [folder.name]


def test_prediction_drift_follows_the_spec_thresholds(caravan):
    """The spec's drift thresholds apply to the model's outputs as to its features."""
    from mlsd.data.profile import predictions_profile
    from mlsd.monitoring.monitor import _Monitor

    rng = np.random.default_rng(3)
    reference = predictions_profile(rng.beta(2, 5, 3000), "binary", ["no", "yes"])["columns"]
    moved = rng.beta(3, 4, 1000)
    spec = caravan["spec"]
    default = _Monitor(spec, caravan["ws"], "1d", START)
    assert default.one_column_drift(reference["score"], moved)["drifted"]
    drift = spec.monitoring.drift.model_copy(update={"thresholds": {"ks": 0.9, "wasserstein": 10}})
    monitoring = spec.monitoring.model_copy(update={"drift": drift})
    lenient = spec.model_copy(update={"monitoring": monitoring})
    quiet = _Monitor(lenient, caravan["ws"], "1d", START).one_column_drift(
        reference["score"], moved
    )
    assert quiet["p_value"] < 0.01 and not quiet["drifted"]


def test_negative_integer_inputs_are_numbers_to_the_monitor(negatives):
    """Integer columns with negative values are read as numbers: no false missing-rate
    alert on traffic like training, and a shifted column is seen drifting (the issue: seven
    columns 'missing in 100.0% of rows' and 'drift: none')."""
    frame = negatives["frame"]
    calm = frame.sample(800, random_state=1).reset_index(drop=True)
    calm["f7"] = [v if i % 2 else float(v) for i, v in enumerate(calm["f7"])]  # ints and floats
    send(negatives, calm, 0)
    quiet = monitor(negatives["spec"], now=START + DAY, write=False, publish=False)
    (window,) = quiet.report["models"][0]["windows"]
    assert window["tested"] and window["drift"]["drifted"] == []
    assert all(window["quality"]["columns"][f"f{k}"]["missing_rate"] == 0 for k in range(1, 8))
    assert quiet.alerts == [], [a.message for a in quiet.alerts]

    shifted = frame.sample(800, random_state=2).reset_index(drop=True)
    shifted["f3"] = shifted["f3"] * 3 - 10  # still integers with negative values
    send(negatives, shifted, 1)
    stormy = monitor(negatives["spec"], now=START + 2 * DAY, write=False, publish=False)
    latest = stormy.report["models"][0]["windows"][-1]
    assert "f3" in latest["drift"]["drifted"]
    checks = {(a.check, a.subject) for a in stormy.latest_alerts}
    assert ("feature_drift", "f3") in checks
    assert not [a for a in stormy.alerts if a.check == "missing_rate"]


def test_numbers_reads_decimals():
    """A log read without the signature's types holds integers of both signs as decimals."""
    from decimal import Decimal

    import pyarrow as pa

    from mlsd.monitoring.windows import numbers

    for kind in (pa.decimal128(38, 0), pa.decimal256(50, 2)):
        column = pa.chunked_array([pa.array([Decimal(-3), None, Decimal(2**40)], kind)])
        np.testing.assert_array_equal(numbers(column), [-3.0, np.nan, 2.0**40])
