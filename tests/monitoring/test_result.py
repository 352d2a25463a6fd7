"""What a person reads after `mlsd monitor`: windows that say what they cover, and alert
counts that say what they count."""

from __future__ import annotations

import numpy as np

from mlsd.monitoring.alerts import Alert
from mlsd.monitoring.result import MonitorResult
from mlsd.monitoring.windows import cut_windows, served_span, window_span

T = 1_764_675_170.0  # 2025-12-02 11:32:50 UTC


def test_row_windows_served_within_one_second_show_rows_and_milliseconds():
    """The demo's windows all read "11:32:50 to 11:32:50": 1,100 rows replayed in a second."""
    ts = T + np.linspace(0.1, 0.9, 1000)
    windows = [w.to_dict() for w in cut_windows(ts, rows=500)]
    first, second = (window_span(w) for w in windows)
    assert first == "rows 1–500, served 2025-12-02 11:32:50.100 to 11:32:50.499 UTC"
    assert second == "rows 501–1,000, served 2025-12-02 11:32:50.500 to 11:32:50.900 UTC"
    assert windows[0]["by"] == "rows" and windows[0]["last_row"] == 500
    assert windows[0]["start"] == "2025-12-02T11:32:50+00:00"  # the JSON keeps its fields


def test_served_spans_never_read_as_a_zero_length_range():
    assert served_span(T, T) == "at 2025-12-02 11:32:50.000 UTC"
    assert served_span(T, T + 3600) == "2025-12-02 11:32:50 to 12:32:50 UTC"
    assert served_span(T, T + 86400) == "2025-12-02 11:32:50 to 2025-12-03 11:32:50 UTC"
    day = 86400.0
    (w,) = cut_windows(np.array([T, T + 1]), seconds=day)
    assert window_span(w.to_dict()) == "2025-12-02 00:00:00 to 2025-12-03 00:00:00 UTC"
    assert w.to_dict()["by"] == "time" and "first_row" not in w.to_dict()


def _alert(kind: str, subject: str) -> Alert:
    window = {"index": 3, "start": "x", "end": "y", "start_ts": T, "end_ts": T, "n": 1100}
    return Alert(kind, "check", subject, f"{subject} moved", "1", window)


def test_the_latest_alerts_are_counted_by_kind():
    """ "ALERTS in the latest window (7)" next to a drift trigger counting 6: say which."""
    latest = [_alert("drift_alert", f"f{i}") for i in range(6)]
    latest.append(_alert("performance_alert", "mae"))
    report = {
        "system": "bikes",
        "n_predictions": 1100,
        "n_labelled": 0,
        "window": {"text": "1,100 rows"},
        "models": [],
    }
    lines = MonitorResult(report, latest, latest).summary_lines()
    assert "ALERTS in the latest window (7 for model version 1: 6 drift, 1 performance):" in lines


def test_the_html_report_names_each_window_as_the_text_does():
    from mlsd.monitoring.report import _window_rows

    ts = T + np.linspace(0.1, 0.9, 1000)
    windows = [{**w.to_dict(), "n": 500} for w in cut_windows(ts, rows=500)]
    rows = _window_rows({"windows": windows})
    assert [r["covers"] for r in rows] == [window_span(w) for w in windows]
    assert "rows 1–500" in rows[0]["covers"]
