"""mlsd retrain end to end on real parts: a trained champion, a real prediction log, MLflow
on SQLite, the event log. A better challenger is promoted, a worse one refused, a failed
validation stops the retrain, and a crash mid-retrain leaves the registry and the serving
model as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from loop_helpers import champion, frame, serve, system

from mlsd.cli import main
from mlsd.events import EventLog
from mlsd.loop import lock
from mlsd.loop.retrain import RETRAIN_PROMOTED, RETRAIN_REFUSED, retrain
from mlsd.models import aliases
from mlsd.models.registry import Registry

NEW = (-3.0, 2.0, 0.5, 1.0)  # the concept after the world changed


def _champion_alias(spec, ws) -> int:
    return aliases.read(ws.root, spec.name)["aliases"]["champion"]


def _events(ws, kind):
    return EventLog(ws.root / "events.sqlite").read(kind=kind)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    """The world changed: served traffic follows a new concept; the window keeps only it."""
    extra = "retraining: {triggers: [{new_labels: 100}], window: {rows: 600}}\n"
    spec, ws = champion(tmp_path_factory.mktemp("drifted"), frame(1500, 0), extra)
    serve(ws, frame(800, 1, coef=NEW))
    result = retrain(spec, ws, if_needed=True, progress=False)
    return spec, ws, result


def test_a_better_challenger_is_promoted_with_its_evidence(drifted):
    spec, ws, result = drifted
    assert result.needed and result.trained and result.promoted and result.exit_code == 0
    assert [t["name"] for t in result.fired] == ["new_labels"]
    assert result.champion_version == 1 and result.challenger_version == 2
    assert _champion_alias(spec, ws) == 2  # the alias the server follows moved
    cmp = result.comparison
    assert cmp["metric"] == "mae" and cmp["direction"] == "min"
    assert cmp["n_holdout"] == 160  # 20% of the 800 fresh labelled rows
    assert cmp["challenger"] < cmp["champion"] / 5  # it learned the new concept
    assert cmp["difference"] == pytest.approx(cmp["challenger"] - cmp["champion"])
    assert cmp["ci_low"] <= cmp["difference"] <= cmp["ci_high"] < 0
    counts = result.data["counts"]
    assert counts["train_rows"] == 600 and counts["train_rows_from_log"] == 600
    assert counts["holdout_rows"] == 160 and counts["fresh_log_rows"] == 800


def test_promotion_is_one_event_and_the_history_says_why(drifted):
    spec, ws, result = drifted
    (event,) = _events(ws, RETRAIN_PROMOTED)
    assert event["id"] == result.event_id
    assert event["evidence"]["comparison"]["n_holdout"] == 160
    assert event["evidence"]["triggers"][0]["fired"] is True
    assert _events(ws, RETRAIN_REFUSED) == []
    history = Registry(ws, spec.name).history()
    assert [h["version"] for h in history] == [1, 2]
    assert history[-1]["kind"] == "promoted" and history[-1]["previous"] == 1
    assert "retrain (new_labels): mae" in history[-1]["reason"]
    assert "95% CI" in history[-1]["reason"]


def test_report_files_hold_the_comparison(drifted):
    _, _, result = drifted
    saved = json.loads(Path(result.report["json"]).read_text())
    assert saved["promoted"] is True and saved["comparison"]["n_holdout"] == 160
    html = Path(result.report["html"]).read_text()
    assert "Champion against challenger" in html and "new_labels" in html


def test_if_needed_without_a_trigger_does_nothing(drifted, capsys):
    spec, ws, _ = drifted
    # no labels arrived since version 2 was built: the new_labels trigger is quiet
    code = main(["retrain", "-c", str(spec.path), "--if-needed", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["needed"] is False and out["trained"] is False
    assert out["triggers"][0]["evidence"]["new_labels"] == 0
    assert [v["version"] for v in Registry(ws, spec.name).versions()] == [1, 2]


def test_a_worse_challenger_is_refused(tmp_path):
    # a passing shift: the window holds only the transient concept, the freshest rows (the
    # holdout) are back to the champion's concept
    extra = "retraining: {window: {rows: 500}, holdout: {share: 0.5, rows: 120}}\n"
    spec, ws = champion(tmp_path, frame(1500, 0), extra)
    serve(ws, pd.concat([frame(500, 1, coef=NEW), frame(120, 2)]))
    result = retrain(spec, ws, progress=False)
    assert result.trained and not result.promoted and result.exit_code == 1
    assert result.challenger_version == 2  # registered by train as challenger, not promoted
    assert _champion_alias(spec, ws) == 1
    cmp = result.comparison
    assert cmp["challenger"] > cmp["champion"] and cmp["ci_low"] > 0
    assert "does not beat the champion's" in result.reasons[0]
    (event,) = _events(ws, RETRAIN_REFUSED)
    assert event["evidence"]["reasons"] == result.reasons
    assert [h["version"] for h in Registry(ws, spec.name).history()] == [1]


def test_failed_validation_stops_the_retrain_with_its_report(tmp_path):
    spec, ws = champion(tmp_path, frame(1500, 0))
    bad = frame(200, 1)
    bad.loc[:9, "a"] = 50.0  # outside the declared range [-10, 10]: a blocking anomaly
    serve(ws, bad)
    result = retrain(spec, ws, progress=False)
    assert not result.trained and not result.promoted and result.exit_code == 1
    assert not result.validation["passed"]
    assert any("out_of_range on a" in r for r in result.reasons)
    report = json.loads(Path(result.validation["report"]).read_text())
    assert any(a["check"] == "out_of_range" and a["blocking"] for a in report["anomalies"])
    assert [v["version"] for v in Registry(ws, spec.name).versions()] == [1]
    assert _events(ws, RETRAIN_REFUSED)[0]["evidence"]["validation"]["passed"] is False


def test_a_crash_mid_retrain_leaves_the_champion_and_frees_the_lock(tmp_path, monkeypatch):
    spec, ws = champion(tmp_path, frame(1500, 0))
    serve(ws, frame(300, 1, coef=NEW))
    published = aliases.aliases_path(ws.root, spec.name).read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("killed while comparing")

    monkeypatch.setattr("mlsd.loop.compare.compare", crash)
    with pytest.raises(RuntimeError, match="killed"):
        retrain(spec, ws, progress=False)
    assert _champion_alias(spec, ws) == 1
    assert (
        Registry(ws, spec.name).resolve("champion").name == Registry(ws, spec.name).resolve(1).name
    )
    assert _events(ws, [RETRAIN_PROMOTED, RETRAIN_REFUSED, "promoted"]) == []
    assert not lock.lock_path(ws, spec.name).exists()
    # the server reads the published aliases: the champion entry is unchanged
    assert json.loads(published)["aliases"]["champion"] == _champion_alias(spec, ws)
    monkeypatch.undo()
    # the next retrain runs: the lock did not outlive the crash
    assert retrain(spec, ws, progress=False).promoted


def test_a_second_retrain_waits_for_the_first(drifted):
    spec, ws, _ = drifted
    with (
        lock.retrain_lock(ws, spec.name),
        pytest.raises(lock.LockedError, match="another retrain is running"),
    ):
        retrain(spec, ws, progress=False)


def test_a_challenger_that_wins_but_breaks_a_guardrail_on_fresh_rows_is_refused(tmp_path):
    # the freshest rows are noisier than those trained on: the challenger beats the champion
    # there, yet its R² falls under the guardrail it passed on its own test split
    extra = "retraining: {window: {rows: 500}, holdout: {share: 0.5, rows: 150}}\n"
    metrics = "{primary: mae, guardrails: {r2: {min: 0.8}}}"
    spec, ws = champion(tmp_path, frame(1500, 0), extra, metrics)
    serve(ws, pd.concat([frame(500, 1, coef=NEW), frame(150, 2, coef=NEW, noise=4.0)]))
    result = retrain(spec, ws, progress=False)
    assert result.training["registered"] and result.comparison["beats"]
    assert not result.promoted and _champion_alias(spec, ws) == 1
    (reason,) = result.reasons
    assert reason.startswith("guardrail r2 >= 0.8 failed") and "on the fresh holdout" in reason


def test_retrain_without_a_champion_is_bad_input(tmp_path, capsys):
    spec, _ = system(tmp_path, frame(50, 0))
    assert main(["retrain", "-c", str(spec.path)]) == 2
    err = capsys.readouterr().err
    assert "cannot retrain: 'loop' has no champion" in err and "mlsd train" in err
