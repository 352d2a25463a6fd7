"""The evaluation report of `mlsd train` on the caravan example: stable keys, every section
filled, spec slices counted right, figures in a self-contained page, files on the MLflow run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from mlsd.api import System
from mlsd.data.split import TEST
from mlsd.evaluation.report import TOP_KEYS
from mlsd.models.train import train
from mlsd.spec import load_spec

SLICES = '[MOSHOOFD, "PPERSAUT > 5", "MKOOPKLA >= 7 and MOSHOOFD == 8"]'


def _with_slices(text: str, slices: str) -> str:
    """The spec text with ``evaluation.slices`` set (in its evaluation section, if any)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("evaluation:"):
            lines.insert(i + 1, f"  slices: {slices}")
            return "\n".join(lines) + "\n"
    return text + f"\nevaluation:\n  slices: {slices}\n"


def test_caravan_training_writes_a_complete_report(example):
    folder = example("caravan")
    spec_path = folder / "system.yaml"
    spec_path.write_text(_with_slices(spec_path.read_text(), SLICES))
    spec = load_spec(spec_path)
    result = train(spec, progress=False)
    files = result.evaluation["report"]
    assert Path(files["json"]).name == "evaluation.json"
    report = json.loads(Path(files["json"]).read_text())
    assert set(report) == set(TOP_KEYS)
    assert report["task"] == "binary" and report["split"] == "test"
    assert report["primary_metric"] == "pr_auc"
    assert report["metrics"]["pr_auc"] == result.entry(result.chosen).scores["test"]["pr_auc"]

    # leaderboard against the baselines, with the train-valid gap
    names = {r["name"] for r in report["leaderboard"]}
    assert {e.name for e in result.leaderboard} == names
    assert all(r["train_valid_gap"] is not None for r in report["leaderboard"])
    assert report["fit"]["verdict"] in {"overfitting", "underfitting", "ok"}
    assert report["fit"]["best_baseline"].startswith("baseline:")

    # spec slices, checked against a hand count on the test split
    system = System(spec)
    labels, _ = system.split()
    test = system.dataset.frame[labels == TEST]
    spec_slices = {s["slice"]: s for s in report["slices"]["spec"]}
    assert spec_slices["PPERSAUT > 5"]["support"] == int((test["PPERSAUT"] > 5).sum())
    both = (test["MKOOPKLA"] >= 7) & (test["MOSHOOFD"].astype(int) == 8)
    assert spec_slices["MKOOPKLA >= 7 and MOSHOOFD == 8"]["support"] == int(both.sum())
    levels = [s for s in report["slices"]["spec"] if s["columns"] == ["MOSHOOFD"]]
    assert sum(s["support"] for s in levels) == len(test)
    worst = report["slices"]["worst"]
    assert len(worst) == 10 and worst[0]["support"] >= report["slices"]["min_support"]
    assert all(s["ci_low"] <= s["metric"] <= s["ci_high"] for s in worst)

    # calibration and decisions
    assert 0 <= report["calibration"]["ece"] <= 1 and len(report["calibration"]["bins"]) == 10
    decisions = report["decisions"]
    assert decisions["threshold"] == result.evaluation["threshold"]["threshold"]
    assert decisions["costs"] == {"false_positive": 1.0, "false_negative": 10.0}
    assert len(decisions["cost_curve"]["thresholds"]) == len(
        decisions["cost_curve"]["expected_cost"]
    )
    assert np.asarray(decisions["confusion_matrix"]).sum() == report["rows"]

    # importance, errors, learning curve
    imp = report["importance"]
    assert imp["permutation"]["drop"] and imp["split"] == "valid"
    if result.entry(result.chosen).family == "lightgbm":
        assert imp["gain"] and imp["shap"]["mean_abs"]
    assert len(report["errors"]["rows"]) == 10
    assert all(
        set(r["inputs"]) == set(report["errors"]["rows"][0]["inputs"])
        for r in report["errors"]["rows"]
    )
    lc = report["learning_curve"]
    assert [p["fraction"] for p in lc["points"]] == [0.2, 0.4, 0.7, 1.0]
    assert lc["verdict"] in {"more_data_helps", "flat", "unclear"} and lc["text"]
    assert report["curves"]["roc"]["auc"] == report["metrics"]["roc_auc"]

    # the page: self-contained, every figure inline
    page = Path(files["html"]).read_text()
    assert len(re.findall(r"<svg", page)) >= 10
    assert "<script" not in page and "<link" not in page and "src=" not in page
    for title in ("Leaderboard", "Slices", "Calibration", "Decisions", "Behavioural tests"):
        assert f"<h2>{title}</h2>" in page
    assert "PPERSAUT &gt; 5" in page

    # both files are artifacts of the training run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{system.workspace.root / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"evaluation.json", "evaluation.html"} <= logged
    assert f"evaluation report: {files['html']}" in result.summary_lines()


def test_multiclass_linear_report_from_a_predict_function(tmp_path):
    """The builder needs only a predict function and labelled frames: a multiclass linear
    model on synthetic rows, with no spec at all."""
    import pandas as pd

    from mlsd.evaluation import report as reports
    from mlsd.features import Featurizer
    from mlsd.models.base import FitData, TaskInfo
    from mlsd.models.linear import LinearModel

    rng = np.random.default_rng(0)
    n = 1200
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "kind": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
            "noise": rng.normal(size=n),
        }
    )
    y = np.digitize(frame["x"] + (frame["kind"] == "a") + rng.normal(0, 0.5, n), [-0.5, 0.8])
    columns = {"x": "numeric", "kind": "categorical", "noise": "numeric"}
    cols = {c: frame[c].array for c in columns}
    fz = Featurizer(columns, encoding="onehot").fit(cols)
    X = fz.transform(cols)
    task = TaskInfo("multiclass", 3)
    model = LinearModel(task, {}).fit(FitData(X=X[:800], y=y[:800], feature_names=fz.feature_names))
    subject = reports.Subject(
        name="linear",
        family="linear",
        task="multiclass",
        predict=lambda c: model.predict(fz.transform(c)),
        model=model,
        featurizer=fz,
        classes=["low", "mid", "high"],
    )
    inputs = reports.ReportInputs(
        system="synthetic",
        subject=subject,
        primary="log_loss",
        data=reports.Labelled(frame.iloc[800:].reset_index(drop=True), y[800:].astype(float)),
        split="test",
        source="synthetic rows",
        columns=columns,
    )
    report, arrays = reports.build(inputs)
    files = reports.write(report, arrays, tmp_path)
    saved = json.loads(Path(files["json"]).read_text())
    assert set(saved) == set(TOP_KEYS)
    assert np.asarray(saved["decisions"]["confusion_matrix"]).shape == (3, 3)
    assert np.asarray(saved["decisions"]["confusion_matrix"]).sum() == 400
    assert saved["calibration"]["bins"] and saved["slices"]["metric"] == "log_loss"
    assert saved["importance"]["coefficients"][0]["feature"].startswith(("x", "kind"))
    assert saved["importance"]["permutation"]["drop"][0]["feature"] == "x"
    assert saved["errors"]["rows"][0]["prediction"]["class"] in {"low", "mid", "high"}
    assert saved["learning_curve"]["verdict"] == "not_run"
    assert Path(files["html"]).read_text().count("<svg") >= 4
