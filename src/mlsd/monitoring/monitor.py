"""``mlsd monitor``: the prediction log against the model's reference, window by window.

For each model version found in the log (or the one asked for), the rows it answered are
cut into windows (:mod:`mlsd.monitoring.windows`) and compared with what its package
recorded (:mod:`mlsd.monitoring.reference`). Each window gets:

- feature drift of every profiled input against the package's reference profile
  (:mod:`mlsd.monitoring.drift`), prediction drift against the outputs the package
  recorded, and, once feedback arrived, label drift against the training labels;
- realised performance on exactly the rows that have labels (primary metric against the
  package's test score, guardrails), and for thresholded (binary) models a label-free
  estimate from the calibrated scores (CBPE), reported apart;
- data quality (:mod:`mlsd.monitoring.quality`), serving latency p50/p99 per request
  against ``problem.latency_budget_ms``, and, for the latest window, the model's age
  against ``monitoring.max_age``.

Each threshold crossed is an :class:`~mlsd.monitoring.alerts.Alert`; new alerts go to the
event log and the webhook. ``monitoring.json`` and ``monitoring.html`` are written to the
system's reports folder and logged to MLflow (:class:`~mlsd.monitoring.result.MonitorResult`
holds the report and its summary). The exit code of ``mlsd monitor`` is 1 when the latest
window alerts.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlsd.errors import MlsdError
from mlsd.events import FILE_NAME, EventLog, jsonable
from mlsd.monitoring import alerts as alerting
from mlsd.monitoring import performance, quality
from mlsd.monitoring.alerts import Alert
from mlsd.monitoring.reference import PREDICTION, Reference, load_reference
from mlsd.monitoring.result import MonitorResult
from mlsd.monitoring.windows import (
    LogRows,
    Window,
    cut_windows,
    drift_values,
    iso,
    numbers,
    output_columns,
    per_class_output,
    probabilities,
    rejects_by_window,
    watched_values,
    window_text,
)
from mlsd.predlog.reader import input_column, input_types
from mlsd.spec import MonitoringSpec, SystemSpec, parse_duration
from mlsd.workspace import Workspace, write_json

GROUP = "group"  # the log field /v1/rank fills with the request's group

_ROWS_RE = re.compile(r"^\s*(?:rows\s*[:=]\s*)?(\d+)\s*(?:rows?)?\s*$", re.IGNORECASE)


class MonitorError(MlsdError):
    """Monitoring cannot run: nothing logged yet, an unknown model, a bad window."""

    headline = "cannot monitor"


def parse_window(text: str | int | Mapping) -> Any:
    """A window from the command line or the spec: ``1d``/``6h`` (serving time) or a
    number of rows (``1000``, ``1000rows``, ``rows:1000``). Returns the validated value of
    ``monitoring.window``."""
    from pydantic import ValidationError

    value: Any = text
    if isinstance(text, str) and (match := _ROWS_RE.match(text)):
        value = {"rows": int(match.group(1))}
    try:
        return MonitoringSpec(window=value).window
    except ValidationError:
        raise MonitorError(
            f"{text!r} is not a monitoring window",
            hint="give a duration of serving time (1d, 6h, 30m) or a number of rows "
            "(1000 or rows:1000)",
        ) from None


def _column_evidence(col: Mapping[str, Any]) -> dict[str, Any]:
    """A drift column's figures without its histograms (those go to the report only)."""
    drop = {"reference_hist", "current_hist", "edges_or_categories"}
    return {k: v for k, v in col.items() if k not in drop}


def _drift_message(what: str, col: Mapping[str, Any]) -> str:
    bits = [f"{col.get('method')}"]
    if col.get("statistic") is not None:
        bits.append(f"statistic {col['statistic']:.4g}")
    p = col.get("p_adjusted", col.get("p_value"))
    if p is not None:
        bits.append(f"p {p:.3g}")
    if col.get("distance") is not None:
        bits.append(f"distance {col['distance']:.3g}")
    return (
        f"{what} drifted ({', '.join(bits)}; {col.get('n_current'):,} rows against "
        f"{col.get('n_reference'):,} reference)"
    )


class _Monitor:
    """One run over the log of one system (kept private: :func:`monitor` is the API)."""

    def __init__(self, spec: SystemSpec, workspace: Workspace, window: Any, now: float):
        self.spec = spec
        self.ws = workspace
        self.mspec = spec.monitoring.model_copy(update={"window": window})
        self.now = now
        self.alerts: list[Alert] = []

    # -- per window

    def drift(self, ref: Reference, table: Any, w: Window, columns: list[str]) -> dict:
        from mlsd.monitoring import drift

        part = table.slice(w.lo, w.n)
        current = {
            c: drift_values(part.column(input_column(c)), ref.profile["columns"][c]["type"])
            for c in columns
            if input_column(c) in part.column_names
        }
        for c in columns:  # a field never sent is all missing
            current.setdefault(c, np.full(w.n, np.nan))
        result = drift.detect(ref.profile, current, spec=self.mspec.drift, columns=columns)
        return result.to_dict()

    def one_column_drift(self, reference: dict, values: np.ndarray) -> dict:
        """Prediction or label drift: one column, tested as a feature is (no correction)."""
        from mlsd.monitoring import drift

        spec = self.mspec.drift
        return drift.scores_drift(reference, values, alpha=spec.alpha, thresholds=spec.thresholds)

    def window(
        self,
        ref: Reference,
        table: Any,
        w: Window,
        columns: list[str],
        outputs: dict[str, str],
        rejects: list[dict],
    ) -> dict[str, Any]:
        m = self.mspec
        out: dict[str, Any] = w.to_dict()
        part = table.slice(w.lo, w.n)
        tested = w.n >= m.min_rows
        out["tested"] = tested
        where = {**w.to_dict(), "model_version": ref.version}
        found: list[Alert] = []

        def alert(kind: str, check: str, subject: str | None, message: str, evidence: dict):
            found.append(Alert(kind, check, subject, message, ref.version, w.to_dict(), evidence))

        # feature and prediction drift
        if tested:
            out["drift"] = self.drift(ref, table, w, columns)
            for col in out["drift"].get("columns", []):
                if col.get("drifted"):
                    alert(
                        alerting.DRIFT_ALERT,
                        "feature_drift",
                        col["column"],
                        _drift_message(f"feature {col['column']}", col),
                        {**_column_evidence(col), "window": where},
                    )
        else:
            out["drift"] = {"skipped": f"{w.n} rows < monitoring.min_rows ({m.min_rows})"}
        task = ref.task
        pred = watched_values(part, task, outputs)
        # the prediction as the metrics take it: the class probabilities, else the number
        scores, numeric_out = pred, pred
        if (per_class := per_class_output(task)) is not None:
            scores = probabilities(part, outputs.get(per_class), ref.classes)
            # a row is non-finite when any class probability is
            numeric_out = None if scores is None else scores.sum(axis=1)
        out["prediction_drift"] = None
        if tested and pred is not None and ref.predictions is not None:
            col = self.one_column_drift(ref.predictions, pred)
            out["prediction_drift"] = col
            if col and col.get("drifted"):
                alert(
                    alerting.DRIFT_ALERT,
                    "prediction_drift",
                    PREDICTION,
                    _drift_message("the model's predictions", col),
                    {**_column_evidence(col), "reference": ref.predictions_source, "window": where},
                )

        # data quality
        current = {
            c: part.column(input_column(c)) for c in columns if input_column(c) in part.column_names
        }
        q = quality.check(
            current,
            w.n,
            profile=ref.profile,
            signature={"inputs": ref.signature.get("inputs", [])},
            spec=m.quality,
            outputs=numeric_out,
            rejects=rejects,
        )
        out["quality"] = q
        enough = w.n + q["rejected"]["instances"] >= m.min_rows
        for p in q["problems"]:
            if enough or p["check"] == "non_finite_output":
                alert(
                    alerting.QUALITY_ALERT,
                    p["check"],
                    p["column"],
                    p["message"],
                    {
                        **p["evidence"],
                        "value": p["value"],
                        "threshold": p["threshold"],
                        "window": where,
                    },
                )

        # performance: realised on labelled rows, estimated from scores
        out["performance"] = self.performance(ref, part, pred, scores, alert, where)
        out["n_labelled"] = (out["performance"].get("realised") or {}).get("n", 0)

        # latency per request
        out["latency"] = self.latency(part)
        lat = out["latency"]
        if tested and lat["p99_ms"] is not None and lat["p99_ms"] > lat["budget_ms"]:
            alert(
                alerting.LATENCY_ALERT,
                "latency_p99",
                None,
                f"serving latency p99 {lat['p99_ms']:.1f} ms is over the budget of "
                f"{lat['budget_ms']:g} ms ({lat['requests']:,} requests)",
                {**lat, "window": where},
            )
        out["alerts"] = [a.to_dict() for a in found]
        self.alerts += found
        return out

    def _groups(self, part: Any) -> np.ndarray | None:
        """The group of each logged row: /v1/rank's ``group`` field, else the input field
        named by ``problem.group`` (rows scored one by one through /v1/predict)."""
        for column in (GROUP, input_column(self.spec.problem.group or "")):
            if column in part.column_names:
                values = part.column(column).to_pandas().astype(object).to_numpy()
                if not any(v is None or v != v for v in values):
                    return values.astype(str)
        return None

    def performance(self, ref: Reference, part: Any, pred, scores, alert, where) -> dict:
        """Realised metrics on the labelled rows of ``part`` (``scores``: the prediction as
        the metrics take it), label drift, and CBPE's estimate from the scores ``pred``."""
        task, m = ref.task, self.mspec
        result: dict[str, Any] = {"realised": None, "estimated": None, "label_drift": None}
        if task.thresholded and pred is not None:
            result["estimated"] = {
                **performance.cbpe(pred, ref.threshold),
                "threshold": ref.threshold,
                "note": "expected values with each score taken as the probability of the "
                "positive class: as good as the scores are calibrated (see the evaluation "
                "report's reliability curve)",
            }
        elif not task.classification:
            result["estimated"] = {
                "n": 0,
                "method": None,
                "note": f"not estimated for {task.name}: there is no calibrated score to "
                "estimate from",
            }
        if "true_label" not in part.column_names or pred is None:
            return result
        labels = part.column("true_label").to_pylist()
        has = np.array([v is not None for v in labels], dtype=bool)
        if not has.any():
            return result
        groups = None
        if task.grouped:
            groups = self._groups(part)
            if groups is None:
                result["realised"] = {
                    "n": int(has.sum()),
                    "metrics": {},
                    "note": "the log has no group for its rows (neither /v1/rank's group nor "
                    f"the input field {self.spec.problem.group!r}): ranking metrics need them",
                }
                return result
            # implicit feedback: in a group with any label, an item without one (shown, not
            # clicked) counts as not relevant; groups without feedback are left out
            has = np.isin(groups, groups[has])
            labels = [0 if v is None else v for v in labels]
        y = task.truth([labels[i] for i in np.flatnonzero(has)], ref.classes)
        known = ~np.isnan(y)
        rows = np.flatnonzero(has)[known]
        y = y[known]
        p = None if scores is None else scores[rows]
        if p is None or len(y) == 0 or (p.ndim == 1 and not np.isfinite(p).all()):
            result["realised"] = {"n": len(y), "metrics": {}, "note": "outputs missing"}
            return result
        primary = self.spec.metrics.primary or ref.meta.get("primary_metric") or task.default_metric
        real = performance.realised(
            task.name,
            y,
            p,
            primary=primary,
            guardrails=self.spec.metrics.guardrails,
            threshold=ref.threshold,
            offline=ref.offline(primary),
            max_drop=m.max_metric_drop,
            extra=performance.extra_metrics(task),
            groups=None if groups is None else groups[rows],
        )
        result["realised"] = real
        if len(y) >= m.min_rows:
            head = real["primary"]
            if not head["passed"]:
                alert(
                    alerting.PERFORMANCE_ALERT,
                    "primary_metric",
                    head["metric"],
                    f"realised {head['metric']} {head['value']:.4g} on {len(y):,} labelled rows "
                    f"is {head['drop']:.1%} worse than offline ({head['offline']:.4g}; "
                    f"allowed {m.max_metric_drop:.0%})",
                    {**head, "n_labelled": len(y), "window": where},
                )
            for rail in real["guardrails"]:
                if not rail["passed"]:
                    bound = " and ".join(
                        f"{k} {rail[k]:g}" for k in ("min", "max") if rail[k] is not None
                    )
                    shown = "undefined" if rail["value"] is None else f"{rail['value']:.4g}"
                    alert(
                        alerting.PERFORMANCE_ALERT,
                        "guardrail",
                        rail["metric"],
                        f"guardrail {rail['metric']} ({bound}) broken: {shown} on "
                        f"{len(y):,} labelled rows",
                        {**rail, "n_labelled": len(y), "window": where},
                    )
            # not for ranking: its feedback is often clicks, another scale than the training
            # grades, with implicit zeros; the realised ranking metrics watch it instead
            if ref.target is not None and not task.grouped:
                # numbers as the task's truth() read them; categories as sent (the profile's keys)
                values = (
                    y
                    if ref.target["type"] == "numeric"
                    else np.array([labels[i] for i in rows], dtype=object)
                )
                col = self.one_column_drift(ref.target, values)
                result["label_drift"] = col
                if col and col.get("drifted"):
                    alert(
                        alerting.DRIFT_ALERT,
                        "label_drift",
                        ref.meta.get("target"),
                        _drift_message(f"the labels ({ref.meta.get('target')})", col),
                        {**_column_evidence(col), "reference": ref.target_source, "window": where},
                    )
        return result

    def latency(self, part: Any) -> dict[str, Any]:
        import pyarrow.compute as pc

        budget = self.spec.problem.latency_budget_ms
        if "latency_ms" not in part.column_names or part.num_rows == 0:
            return {"requests": 0, "p50_ms": None, "p99_ms": None, "budget_ms": budget}
        ids = part.column("request_id")
        first = pc.equal(ids.slice(1), ids.slice(0, part.num_rows - 1))
        # rows of a request are adjacent (sorted by ts, request_id): keep the first of each
        keep = np.concatenate([[True], ~first.to_numpy(zero_copy_only=False)])
        values = numbers(part.column("latency_ms"))[keep]
        values = values[np.isfinite(values)]
        if not len(values):
            return {"requests": 0, "p50_ms": None, "p99_ms": None, "budget_ms": budget}
        return {
            "requests": len(values),
            "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max()),
            "budget_ms": budget,
        }

    # -- per model version

    def model(self, log: LogRows, ref: Reference, rejects: list[dict]) -> dict[str, Any]:
        columns = [
            name
            for name, col in ref.profile.get("columns", {}).items()
            if col.get("type") in ("numeric", "categorical", "boolean")
        ]
        # this version's inputs read with the types its signature declares (the
        # segments' inferred types are remembered: no second inference)
        types = input_types(ref.signature)
        if ref.task.grouped and self.spec.problem.group:  # not a feature, but ranked by
            types.setdefault(self.spec.problem.group, "categorical")
        available = log.columns(types)
        outputs = output_columns(ref.task, available)
        inputs = [input_column(c) for c in columns if input_column(c) in available]
        if ref.task.grouped:  # the rows' groups, for the ranking metrics
            grouping = (GROUP, input_column(self.spec.problem.group or ""))
            inputs += [c for c in grouping if c in available and c not in inputs]
        table = log.rows(ref.version, types, [*inputs, *outputs.values()])
        ts = numbers(table.column("ts"))
        windows = cut_windows(ts, seconds=self.mspec.window_seconds, rows=self.mspec.window_rows)
        per_window = rejects_by_window(rejects, windows, by_rows=self.mspec.window_seconds is None)
        created = ref.created_at
        age_days = None if created is None else (self.now - created) / 86400
        max_age_days = parse_duration(self.mspec.max_age) / 86400
        report = {
            "model_version": ref.version,
            "task": ref.task.name,
            "package": str(ref.folder),
            "created_at": ref.manifest.get("created_at"),
            "age_days": age_days,
            "max_age_days": max_age_days,
            "stale": age_days is not None and age_days > max_age_days,
            "reference": {
                "features": "package profile (training split)",
                "predictions": ref.predictions_source,
                "labels": ref.target_source,
            },
            "features": columns,
            "n": int(table.num_rows),
            "windows": [
                self.window(ref, table, w, columns, outputs, per_window.get(w.index, []))
                for w in windows
            ],
        }
        report["n_labelled"] = sum(w["n_labelled"] for w in report["windows"])
        return report

    def staleness(self, model: dict) -> None:
        if not model["stale"] or not model["windows"]:
            return
        last = model["windows"][-1]
        window = {
            k: last[k] for k in ("index", "start", "end", "start_ts", "end_ts", "n", "partial")
        }
        alert = Alert(
            alerting.STALENESS_ALERT,
            "staleness",
            None,
            f"model version {model['model_version']} is {model['age_days']:.1f} days old, "
            f"older than monitoring.max_age ({self.mspec.max_age})",
            model["model_version"],
            window,
            {
                "age_days": model["age_days"],
                "max_age_days": model["max_age_days"],
                "created_at": model["created_at"],
            },
        )
        last["alerts"].append(alert.to_dict())
        self.alerts.append(alert)


def monitor(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    model: str | None = None,
    window: str | int | None = None,
    now: float | None = None,
    publish: bool = True,
    write: bool = True,
    engine: Callable[[Workspace], LogRows] = LogRows,
) -> MonitorResult:
    """Monitor the served traffic of ``spec``'s system (see the module docstring).

    ``model`` restricts to one model (an alias, a version number, or a package folder);
    ``window`` overrides ``monitoring.window``; ``now`` (epoch seconds) is the time model
    ages are measured at. ``publish`` records new alerts in the event log and sends them to
    the webhook; ``write`` writes ``monitoring.json`` and ``monitoring.html`` and logs them
    to MLflow (when ``monitoring.log_to_mlflow``). ``engine`` opens the log for reading:
    here (:class:`~mlsd.monitoring.windows.LogRows`) or in blocks on Ray
    (:func:`mlsd.engine.log_reader`); a recommender system's log is read here.
    """
    from mlsd.predlog.reader import log_folder, read_rejects

    started = time.perf_counter()
    ws = workspace or Workspace.for_spec(spec)
    chosen_window = parse_window(window) if window is not None else spec.monitoring.window
    if spec.architecture.funnel:
        from mlsd.monitoring.recommendations import monitor_recommendations

        return monitor_recommendations(
            spec,
            ws,
            model=model,
            window=chosen_window,
            now=time.time() if now is None else float(now),
            publish=publish,
            write=write,
        )
    run = _Monitor(spec, ws, chosen_window, time.time() if now is None else float(now))
    wanted: str | None = None
    if model is not None:
        from mlsd.models import aliases

        try:
            version, folder = aliases.resolve(ws.root, spec.name, model)
        except MlsdError as exc:
            raise MonitorError(
                exc.message,
                hint="pass champion, challenger, a registered version number or "
                "a package folder (`mlsd models` lists them)",
            ) from None
        wanted = str(version) if version is not None else folder.name

    log = engine(ws)
    try:
        versions = [v for v, _, _ in log.versions()]
        if wanted is not None:
            versions = [v for v in versions if v == wanted]
        if not versions:
            where = log_folder(ws) / "predictions"
            raise MonitorError(
                f"no predictions of {spec.name!r}"
                + (f" model {model!r}" if model is not None else "")
                + f" are logged in {where}",
                hint="serve the model (`mlsd serve`) and send it traffic first; the log is "
                "read from the workspace of this system.yaml",
            )
        rejects = read_rejects(ws).to_pylist()
        models, skipped = [], []
        for version in versions:
            ref = load_reference(ws, spec.name, version)
            if ref is None:
                skipped.append(version)
                continue
            mine = [r for r in rejects if r.get("model_version") == version]
            models.append(run.model(log, ref, mine))
        skipped_segments = log.set_aside()
    finally:
        log.close()
    if not models:
        raise MonitorError(
            f"the log's model versions ({', '.join(skipped)}) have no package in {ws.root}",
            hint="monitor from the workspace the models were registered in",
        )

    # the latest window: every model whose last window reaches into the newest one
    newest = max(models, key=lambda m: m["windows"][-1]["end_ts"])["windows"][-1]
    latest_versions = [
        m["model_version"] for m in models if m["windows"][-1]["end_ts"] >= newest["start_ts"]
    ]
    for m in models:
        if m["model_version"] in latest_versions:
            run.staleness(m)
    latest_keys = {
        a["key"]
        for m in models
        if m["model_version"] in latest_versions
        for a in m["windows"][-1]["alerts"]
    }
    latest = [a for a in run.alerts if a.key in latest_keys]

    report: dict[str, Any] = {
        "system": spec.name,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "now": iso(run.now),
        "window": {
            "text": window_text(run.mspec),
            "rows": run.mspec.window_rows,
            "seconds": run.mspec.window_seconds,
        },
        "min_rows": run.mspec.min_rows,
        "drift": run.mspec.drift.model_dump(mode="json"),
        "latency_budget_ms": spec.problem.latency_budget_ms,
        "n_predictions": sum(m["n"] for m in models),
        "n_labelled": sum(m["n_labelled"] for m in models),
        "models": models,
        "skipped_versions": skipped,
        "skipped_segments": skipped_segments,
        "latest": {
            "model_versions": latest_versions,
            "alerts": [a.to_dict() for a in latest],
        },
        "alerts": {"total": len(run.alerts)},
    }
    result = MonitorResult(report, run.alerts, latest)
    if publish:
        events = EventLog(ws.root / FILE_NAME)
        result.published = alerting.publish(
            run.alerts,
            events=events,
            system=spec.name,
            webhook=run.mspec.webhook,
            timeout=run.mspec.webhook_timeout_s,
        )
        report["alerts"].update(result.published)
    report["seconds"] = round(time.perf_counter() - started, 3)
    if write:
        from mlsd.monitoring.report import write_html

        json_path = ws.reports / "monitoring.json"
        html_path = ws.reports / "monitoring.html"
        result.paths = {"report": str(json_path), "html": str(html_path)}
        report["paths"] = dict(result.paths)
        write_html(report, html_path)
        write_json(json_path, jsonable(report))
        if run.mspec.log_to_mlflow:
            result.run_id = _log_run(spec, ws, report, json_path, html_path)
            report["mlflow_run_id"] = result.run_id  # in --json; the file predates the run
    return result


def _log_run(
    spec: SystemSpec, ws: Workspace, report: dict, json_path: Path, html_path: Path
) -> str:
    """Log the report as an MLflow run: latest-window figures as metrics, files as artifacts."""
    from mlsd.models.registry import Registry

    metrics: dict[str, Any] = {
        "alerts.total": report["alerts"]["total"],
        "alerts.latest": len(report["latest"]["alerts"]),
        "predictions": report["n_predictions"],
        "labelled": report["n_labelled"],
    }
    for m in report["models"]:
        last = m["windows"][-1]
        prefix = f"v{m['model_version']}"
        for col in (last.get("drift") or {}).get("columns", []):
            value = col.get("distance")
            if isinstance(value, int | float) and math.isfinite(value):
                metrics[f"{prefix}.drift.{col['column']}"] = value
        primary = ((last.get("performance") or {}).get("realised") or {}).get("primary") or {}
        if primary.get("value") is not None:
            metrics[f"{prefix}.realised.{primary['metric']}"] = primary["value"]
        if last["latency"].get("p99_ms") is not None:
            metrics[f"{prefix}.latency_p99_ms"] = last["latency"]["p99_ms"]
    registry = Registry(ws, spec.name, spec.models.tracking_uri)
    return registry.log_run(
        params={"window": report["window"]["text"], "min_rows": report["min_rows"]},
        metrics=metrics,
        tags={"mlsd.kind": "monitor"},
        artifacts={"monitoring.json": json_path, "monitoring.html": html_path},
        run_name="monitor",
    )
