"""The evaluation report as a user meets it: `mlsd train` and `mlsd evaluate` on bikeshare
write it, and the page renders in headless Chromium with no console errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_data import mlsd

from browser import render, require_chromium
from mlsd.evaluation.report import TOP_KEYS


def test_a_page_that_throws_is_caught(tmp_path):
    require_chromium()
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><p>half a page</p>"
        "<script>throw new Error('report script failed')</script></body></html>"
    )
    rendered = render(page)
    assert "half a page" in rendered.dom
    assert any("report script failed" in line for line in rendered.console), rendered.console
    clean = tmp_path / "clean.html"
    clean.write_text("<!doctype html><html><body><p>fine</p></body></html>")
    assert render(clean).console == []


def _with_slices(text: str, slices: str) -> str:
    """The spec text with ``evaluation.slices`` set (in its evaluation section, if any)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("evaluation:"):
            lines.insert(i + 1, f"  slices: {slices}")
            return "\n".join(lines) + "\n"
    return text + f"\nevaluation:\n  slices: {slices}\n"


def _check_regression_report(report: dict, split: str) -> None:
    assert set(report) == set(TOP_KEYS)
    assert report["task"] == "regression" and report["split"] == split
    assert report["calibration"] is None
    decisions = report["decisions"]
    assert sum(r["rows"] for r in decisions["error_by_target_range"]) == report["rows"]
    assert set(decisions["residuals"]["quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}
    assert report["slices"]["worst"] and report["importance"]["permutation"]["drop"]
    assert report["errors"]["rows"][0]["inputs"]


@pytest.mark.slow
def test_train_and_evaluate_write_reports_that_render(example):
    folder = example("bikeshare")
    spec = folder / "system.yaml"
    spec.write_text(_with_slices(spec.read_text(), '[workingday, "temp > 0.7"]'))
    run = mlsd("train", cwd=folder)
    assert run.returncode == 0, run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("evaluation report: "))
    html = Path(line.removeprefix("evaluation report: "))
    trained = json.loads(html.with_name("evaluation.json").read_text())
    _check_regression_report(trained, "test")
    assert [s["slice"] for s in trained["slices"]["spec"]][-1] == "temp > 0.7"
    assert len(trained["learning_curve"]["points"]) == 4

    evaluated = mlsd(
        "evaluate", "--model", "champion", "--data", "bikeshare.csv", "--json", cwd=folder
    )
    assert evaluated.returncode == 0, evaluated.stderr
    out = json.loads(evaluated.stdout)
    report = json.loads(Path(out["report"]["json"]).read_text())
    _check_regression_report(report, "data")
    assert report["rows"] == out["rows"] == 8645
    assert report["metrics"]["mae"] == pytest.approx(out["metrics"]["mae"], rel=1e-12)
    assert report["fit"]["recorded_test"] == pytest.approx(trained["metrics"]["mae"])
    assert Path(out["report"]["html"]).parent != html.parent  # the training report stays
    assert len(out["run_id"]) == 32  # logged to MLflow as a run of its own

    require_chromium()
    for page in (html, Path(out["report"]["html"])):
        rendered = render(page)
        assert rendered.console == [], rendered.console
        assert "Evaluation: bike-demand" in rendered.dom
        assert rendered.dom.count("<svg") >= 7
