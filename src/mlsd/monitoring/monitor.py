"""``mlsd monitor``: the prediction log against the model's reference, window by window.

For each model version found in the log (or the one asked for), the rows it answered are
cut into windows of serving time (``monitoring.window: 1d``) or of rows (``{rows: 1000}``,
counted back from the latest row so the latest window is full). Each window gets:

- feature drift of every profiled input against the package's reference profile
  (:mod:`mlsd.monitoring.drift`), prediction drift against the outputs the package
  recorded, and, once feedback arrived, label drift against the training labels;
- realised performance on exactly the rows that have labels (primary metric against the
  package's test score, guardrails), and for binary models a label-free estimate from the
  calibrated scores (CBPE), reported apart;
- data quality (:mod:`mlsd.monitoring.quality`), serving latency p50/p99 per request
  against ``problem.latency_budget_ms``, and, for the latest window, the model's age
  against ``monitoring.max_age``.

Each threshold crossed is an :class:`~mlsd.monitoring.alerts.Alert`; new alerts go to the
event log and the webhook. ``monitoring.json`` and ``monitoring.html`` are written to the
system's reports folder and logged to MLflow. The exit code of ``mlsd monitor`` is 1 when
the latest window alerts.

Reading is columnar: DuckDB reads the log's segments and flattens the logged inputs into
columns; only the profiled fields, the output, the label and the metadata are fetched.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlsd.errors import MlsdError
from mlsd.events import FILE_NAME, EventLog, jsonable
from mlsd.monitoring import alerts as alerting
from mlsd.monitoring import performance, quality
from mlsd.monitoring.alerts import Alert
from mlsd.predlog.reader import input_column, to_arrow
from mlsd.spec import MonitoringSpec, SystemSpec, parse_duration
from mlsd.workspace import Workspace, write_json

if TYPE_CHECKING:
    pass

PREDICTION = "prediction"  # the name prediction drift reports its column under
_ROWS_RE = re.compile(r"^\s*(?:rows\s*[:=]\s*)?(\d+)\s*(?:rows?)?\s*$", re.IGNORECASE)


class MonitorError(MlsdError):
    """Monitoring cannot run: nothing logged yet, an unknown model, a bad window."""

    headline = "cannot monitor"


# --------------------------------------------------------------------------- the reference


@dataclass
class Reference:
    """What monitoring needs from a model package, read as plain files (no model load)."""

    version: str
    folder: Path
    manifest: dict[str, Any]
    signature: dict[str, Any]
    metrics: dict[str, Any]
    profile: dict[str, Any]
    predictions: dict[str, Any] | None = None  # a profile column of the recorded outputs
    predictions_source: str | None = None
    target: dict[str, Any] | None = None  # a profile column of the training labels
    target_source: str | None = None

    @property
    def meta(self) -> dict[str, Any]:
        return self.manifest.get("meta", {})

    @property
    def task(self) -> str:
        return self.meta.get("task") or self.signature["output"]["task"]

    @property
    def classes(self) -> list | None:
        return self.signature["output"].get("classes") or self.meta.get("classes")

    @property
    def threshold(self) -> float:
        return float(self.signature["output"].get("threshold", self.meta.get("threshold", 0.5)))

    @property
    def created_at(self) -> float | None:
        text = self.manifest.get("created_at")
        try:
            moment = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()

    def offline(self, metric: str) -> float | None:
        """The package's offline test score for ``metric``."""
        value = (self.metrics.get("test") or {}).get(metric)
        return float(value) if isinstance(value, int | float) else None


def _profile_column(values: np.ndarray, kind: str) -> dict[str, Any]:
    import pandas as pd

    from mlsd.data.profile import profile

    return profile(pd.DataFrame({PREDICTION: values}), {PREDICTION: kind})["columns"][PREDICTION]


def _recorded_outputs(folder: Path, task: str, classes: list | None) -> np.ndarray | None:
    """The outputs the package recorded for its holdout (test rows): the prediction
    reference when the profile holds none."""
    import pyarrow.parquet as pq

    from mlsd.models.package import EXPECTED, EXPECTED_PREFIX, HOLDOUT

    path = folder / HOLDOUT
    if not path.exists():
        return None
    table = pq.read_table(path)
    if EXPECTED in table.column_names:
        return table.column(EXPECTED).to_numpy()
    names = sorted(
        (c for c in table.column_names if c.startswith(EXPECTED_PREFIX)),
        key=lambda c: int(re.sub(r"\D", "", c) or 0),
    )
    if not names or not classes:
        return None
    matrix = np.column_stack([table.column(c).to_numpy() for c in names])
    return np.array([classes[i] for i in matrix.argmax(axis=1)], dtype=object)


def _single_column(entry: Any, name: str | None = None) -> dict | None:
    """A column profile from a profile entry that is one (``{"type": ...}``) or a profile
    (``{"columns": {name: {...}}}``: the column ``name``, else the first)."""
    if not isinstance(entry, dict):
        return None
    if "type" in entry:
        return entry
    columns = entry.get("columns")
    if isinstance(columns, dict) and columns:
        return columns.get(name) if name in columns else next(iter(columns.values()))
    return None


def load_reference(workspace: Workspace, system: str, version: str) -> Reference | None:
    """The package behind a logged ``model_version`` (a registered version number, or the
    name of a package folder served directly); None when it cannot be found."""
    from mlsd.models import aliases
    from mlsd.models.package import MANIFEST, METRICS, PROFILE, SIGNATURE

    published = aliases.read(workspace.root, system)
    folder = published["versions"].get(str(version))
    path = Path(folder) if folder else workspace.root / "packages" / str(version)
    if not (path / MANIFEST).is_file():
        return None

    def read(name: str) -> dict:
        file = path / name
        return json.loads(file.read_text()) if file.exists() else {}

    ref = Reference(
        version=str(version),
        folder=path,
        manifest=read(MANIFEST),
        signature=read(SIGNATURE),
        metrics=read(METRICS),
        profile=read(PROFILE),
    )
    kind = "categorical" if ref.task == "multiclass" else "numeric"
    output = {"regression": "value", "binary": "score"}.get(ref.task, "label")
    recorded_profile = _single_column(ref.profile.get("predictions"), output)
    if recorded_profile is not None:
        ref.predictions, ref.predictions_source = recorded_profile, "package profile"
    else:
        recorded = _recorded_outputs(path, ref.task, ref.classes)
        if recorded is not None and len(recorded):
            ref.predictions = _profile_column(recorded, kind)
            ref.predictions_source = "holdout outputs"
    target = ref.meta.get("target")
    target_profile = _single_column(ref.profile.get("target"))
    if target_profile is not None:
        ref.target, ref.target_source = target_profile, "package profile"
    elif target and ref.meta.get("snapshot"):
        snapshot = workspace.root / "snapshots" / str(ref.meta["snapshot"]) / "profile.json"
        if snapshot.exists():
            column = json.loads(snapshot.read_text()).get("columns", {}).get(target)
            if column and column.get("type") in ("numeric", "categorical", "boolean"):
                ref.target, ref.target_source = column, "training snapshot"
    return ref


# --------------------------------------------------------------------------- windows


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


@dataclass
class Window:
    """Rows ``lo:hi`` of one model version's time-ordered predictions."""

    index: int
    lo: int
    hi: int
    start: float  # epoch seconds: window bounds (time) or first/last row (rows)
    end: float
    partial: bool = False

    @property
    def n(self) -> int:
        return self.hi - self.lo

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "start_ts": self.start,
            "end_ts": self.end,
            "n": self.n,
            "partial": self.partial,
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def cut_windows(
    ts: np.ndarray, *, seconds: float | None = None, rows: int | None = None
) -> list[Window]:
    """Windows over time-ordered timestamps ``ts``.

    Time windows are aligned to the epoch (the same rows give the same windows on every
    run) and empty ones are left out. Row windows are counted back from the latest row: the
    latest is full and the oldest may be partial.
    """
    n = len(ts)
    if n == 0:
        return []
    if rows is not None:
        ends = list(range(n, 0, -rows))[::-1]
        out = []
        for i, hi in enumerate(ends):
            lo = max(0, hi - rows)
            out.append(Window(i, lo, hi, float(ts[lo]), float(ts[hi - 1]), hi - lo < rows))
        return out
    assert seconds is not None
    keys = np.floor(ts / seconds).astype(np.int64)
    cuts = np.flatnonzero(np.diff(keys)) + 1
    bounds = [0, *cuts.tolist(), n]
    return [
        Window(i, lo, hi, float(keys[lo] * seconds), float((keys[lo] + 1) * seconds))
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]


# --------------------------------------------------------------------------- reading


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _output_columns(task: str, available: set[str]) -> dict[str, str]:
    """Logged output key -> column name in the flattened view (``output_`` prefixed when an
    input field already had the name)."""
    keys = {"regression": ["value"], "binary": ["score", "label"], "multiclass": ["label"]}
    out = {}
    for key in keys.get(task, []):
        for name in (f"output_{key}", key):
            if name in available:
                out[key] = name
                break
    return out


def _numbers(column: Any) -> np.ndarray:
    """A pyarrow column as float64 (nulls and unreadable values as NaN)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    # decimals too: a log read without its signature's types has them for integers
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(kind):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return quality._as_float(column.to_pylist())


def _values(column: Any, kind: str) -> Any:
    """A pyarrow column as the drift tests take it: float64 for numbers, else the Arrow
    column itself (categories are counted on its distinct values)."""
    if kind == "numeric":
        return _numbers(column)
    return column


# --------------------------------------------------------------------------- the monitor


@dataclass
class MonitorResult:
    """What one ``mlsd monitor`` found: the report, every alert, those of the latest
    window, and what was recorded and sent."""

    report: dict[str, Any]
    alerts: list[Alert] = field(default_factory=list)
    latest_alerts: list[Alert] = field(default_factory=list)
    published: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None

    @property
    def exit_code(self) -> int:
        """1 when the latest window alerts, else 0."""
        return 1 if self.latest_alerts else 0

    def to_dict(self) -> dict[str, Any]:
        return self.report

    def summary_lines(self) -> list[str]:
        """What a person reads after ``mlsd monitor``."""
        r = self.report
        window = r["window"]
        lines = [
            f"monitored {r['system']}: {r['n_predictions']:,} predictions, "
            f"{r['n_labelled']:,} with labels, windows of {window['text']}"
        ]
        for model in r["models"]:
            lines.append(_model_line(model))
            for w in model["windows"]:
                lines.append("  " + _window_line(model, w))
        latest = self.latest_alerts
        if latest:
            lines.append(f"ALERTS in the latest window ({len(latest)}):")
            lines += [f"  [{a.kind}] {a.message}" for a in latest]
        else:
            lines.append("no alert in the latest window")
        older = len(self.alerts) - len(latest)
        if older:
            lines.append(f"{older} alert(s) in earlier windows (see the report)")
        pub = self.published
        if pub:
            lines.append(
                f"event log: {pub['recorded']} new alert(s) recorded, "
                f"{pub['already_recorded']} already there"
            )
            hook = pub.get("webhook")
            if hook:
                state = f"sent {hook['sent']}" + (
                    f", FAILED {hook['failed']} ({hook['error']})" if hook["failed"] else ""
                )
                lines.append(f"webhook {hook['url']}: {state}")
        for kind, path in self.paths.items():
            lines.append(f"{kind}: {path}")
        if self.run_id:
            lines.append(f"MLflow run {self.run_id}")
        return lines


def _model_line(model: dict) -> str:
    age = model.get("age_days")
    stale = " STALE" if model.get("stale") else ""
    shown = (
        f", age {age:.1f} d of max {model['max_age_days']:g} d{stale}" if age is not None else ""
    )
    return (
        f"model version {model['model_version']} ({model['task']}): {model['n']:,} predictions "
        f"in {len(model['windows'])} window(s){shown}"
    )


def _window_line(model: dict, w: dict) -> str:
    drift = w.get("drift") or {}
    drifted = drift.get("drifted") or []
    pred = w.get("prediction_drift") or {}
    perf = (w.get("performance") or {}).get("realised") or {}
    primary = perf.get("primary") or {}
    parts = [f"#{w['index']} {w['start'][:19]} to {w['end'][:19]} n={w['n']:,}"]
    if not w.get("tested"):
        parts.append("(too few rows to test)")
    else:
        parts.append(f"drift: {', '.join(drifted) if drifted else 'none'}")
        if pred:
            parts.append(f"predictions {'DRIFT' if pred.get('drifted') else 'ok'}")
    if primary.get("value") is not None:
        parts.append(f"{primary['metric']} {primary['value']:.4g} on {perf['n']:,} labelled")
    estimated = ((w.get("performance") or {}).get("estimated") or {}).get("metrics") or {}
    if estimated:
        parts.append(f"est. accuracy {estimated['accuracy']:.3f}")
    latency = w.get("latency") or {}
    if latency.get("p99_ms") is not None:
        parts.append(f"p99 {latency['p99_ms']:.1f} ms")
    if w.get("alerts"):
        parts.append(f"{len(w['alerts'])} alert(s)")
    return " · ".join(parts)


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
            c: _values(part.column(input_column(c)), ref.profile["columns"][c]["type"])
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
        pred_col = outputs.get(
            "label" if task == "multiclass" else "score" if task == "binary" else "value"
        )
        pred = None
        if pred_col is not None:
            pred = (
                np.asarray(part.column(pred_col).to_pylist(), dtype=object)
                if task == "multiclass"
                else _numbers(part.column(pred_col))
            )
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
        numeric_out = pred
        if task == "multiclass":  # a row is non-finite when any class probability is
            probs = self._probabilities(part, ref)
            numeric_out = None if probs is None else probs.sum(axis=1)
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
        out["performance"] = self.performance(ref, part, pred, tested, alert, where)
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

    def performance(self, ref: Reference, part: Any, pred, tested: bool, alert, where) -> dict:
        task, m = ref.task, self.mspec
        result: dict[str, Any] = {"realised": None, "estimated": None, "label_drift": None}
        if task == "binary" and pred is not None:
            result["estimated"] = {
                **performance.cbpe(pred, ref.threshold),
                "threshold": ref.threshold,
                "note": "expected values with each score taken as the probability of the "
                "positive class: as good as the scores are calibrated (see the evaluation "
                "report's reliability curve)",
            }
        elif task == "regression":
            result["estimated"] = {
                "n": 0,
                "method": None,
                "note": "not estimated for "
                "regression: there is no calibrated score to estimate from",
            }
        if "true_label" not in part.column_names or pred is None:
            return result
        labels = part.column("true_label").to_pylist()
        has = np.array([v is not None for v in labels], dtype=bool)
        if not has.any():
            return result
        y = performance.truth(task, [labels[i] for i in np.flatnonzero(has)], ref.classes)
        known = ~np.isnan(y)
        rows = np.flatnonzero(has)[known]
        y = y[known]
        if task == "multiclass":
            probs = self._probabilities(part, ref)
            p = probs[rows] if probs is not None else None
        else:
            p = np.asarray(pred, dtype=np.float64)[rows]
        if p is None or len(y) == 0 or (p.ndim == 1 and not np.isfinite(p).all()):
            result["realised"] = {"n": len(y), "metrics": {}, "note": "outputs missing"}
            return result
        primary = self.spec.metrics.primary or ref.meta.get("primary_metric")
        if primary is None:
            from mlsd.evaluation.metrics import default_primary

            primary = default_primary(task)
        real = performance.realised(
            task,
            y,
            p,
            primary=primary,
            guardrails=self.spec.metrics.guardrails,
            threshold=ref.threshold,
            offline=ref.offline(primary),
            max_drop=m.max_metric_drop,
            extra=performance.ESTIMATED if task == "binary" else (),
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
            if ref.target is not None:
                # numbers as read by truth(); categories as sent (keys match the profile's)
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

    def _probabilities(self, part: Any, ref: Reference) -> np.ndarray | None:
        name = next(
            (c for c in ("output_probabilities", "probabilities") if c in part.column_names),
            None,
        )
        if name is None or not ref.classes:
            return None
        rows = part.column(name).to_pylist()
        keys = [str(c) for c in ref.classes]
        return np.array(
            [[np.nan if r is None or r.get(k) is None else r[k] for k in keys] for r in rows]
        )

    def latency(self, part: Any) -> dict[str, Any]:
        import pyarrow.compute as pc

        budget = self.spec.problem.latency_budget_ms
        if "latency_ms" not in part.column_names or part.num_rows == 0:
            return {"requests": 0, "p50_ms": None, "p99_ms": None, "budget_ms": budget}
        ids = part.column("request_id")
        first = pc.equal(ids.slice(1), ids.slice(0, part.num_rows - 1))
        # rows of a request are adjacent (sorted by ts, request_id): keep the first of each
        keep = np.concatenate([[True], ~first.to_numpy(zero_copy_only=False)])
        values = _numbers(part.column("latency_ms"))[keep]
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

    def model(
        self, con: Any, ref: Reference, available: set[str], rejects: list[dict]
    ) -> dict[str, Any]:
        columns = [
            name
            for name, col in ref.profile.get("columns", {}).items()
            if col.get("type") in ("numeric", "categorical", "boolean")
        ]
        outputs = _output_columns(ref.task, available)
        if ref.task == "multiclass":
            for name in ("output_probabilities", "probabilities"):
                if name in available:
                    outputs["probabilities"] = name
                    break
        wanted = ["ts", "request_id", "instance", "latency_ms"]
        wanted += [input_column(c) for c in columns if input_column(c) in available]
        wanted += [c for c in outputs.values() if c not in wanted]
        select = ", ".join(f"p.{_ident(c)}" for c in wanted)
        version = _literal(ref.version)
        table = to_arrow(
            con,
            f"SELECT {select}, l.true_label FROM predictions p LEFT JOIN ("
            f"  SELECT request_id, instance, true_label FROM labelled"
            f"  WHERE model_version = {version}) l USING (request_id, instance)"
            f" WHERE p.model_version = {version}"
            f" ORDER BY p.ts, p.request_id, p.instance",
        )
        ts = _numbers(table.column("ts"))
        windows = cut_windows(ts, seconds=self.mspec.window_seconds, rows=self.mspec.window_rows)
        reject_ts = np.array([r["ts"] for r in rejects], dtype=np.float64)
        # each reject goes to the window it falls in (rows windows: up to the window's end)
        ends = np.array([w.end for w in windows])
        if self.mspec.window_seconds is None:
            slot = np.minimum(np.searchsorted(ends, reject_ts, side="left"), len(windows) - 1)
        else:
            starts = np.array([w.start for w in windows])
            slot = np.searchsorted(starts, reject_ts, side="right") - 1
            slot = np.where((slot >= 0) & (reject_ts < ends[np.maximum(slot, 0)]), slot, -1)
        per_window: dict[int, list[dict]] = {}
        for s, row in zip(slot.tolist(), rejects, strict=True):
            if s >= 0:
                per_window.setdefault(s, []).append(row)
        created = ref.created_at
        age_days = None if created is None else (self.now - created) / 86400
        max_age_days = parse_duration(self.mspec.max_age) / 86400
        report = {
            "model_version": ref.version,
            "task": ref.task,
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


def _window_text(m: MonitoringSpec) -> str:
    return f"{m.window_rows:,} rows" if m.window_rows else str(m.window)


def monitor(
    spec: SystemSpec,
    workspace: Workspace | None = None,
    *,
    model: str | None = None,
    window: str | int | None = None,
    now: float | None = None,
    publish: bool = True,
    write: bool = True,
) -> MonitorResult:
    """Monitor the served traffic of ``spec``'s system (see the module docstring).

    ``model`` restricts to one model (an alias, a version number, or a package folder);
    ``window`` overrides ``monitoring.window``; ``now`` (epoch seconds) is the time model
    ages are measured at. ``publish`` records new alerts in the event log and sends them to
    the webhook; ``write`` writes ``monitoring.json`` and ``monitoring.html`` and logs them
    to MLflow (when ``monitoring.log_to_mlflow``).
    """
    import duckdb

    from mlsd.predlog.reader import duckdb_view, input_types, log_folder, read_rejects

    started = time.perf_counter()
    ws = workspace or Workspace.for_spec(spec)
    chosen_window = parse_window(window) if window is not None else spec.monitoring.window
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

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        duckdb_view(con, ws, pinned=True)  # fields as inferred: enough to list the versions
        versions = [
            (str(v), int(n))
            for v, n in con.execute(
                "SELECT model_version, count(*) FROM predictions WHERE model_version IS NOT NULL"
                " GROUP BY model_version ORDER BY max(ts)"
            ).fetchall()
        ]
        if wanted is not None:
            versions = [(v, n) for v, n in versions if v == wanted]
        if not versions:
            where = log_folder(ws) / "predictions"
            raise MonitorError(
                f"no predictions of {spec.name!r}"
                + (f" model {model!r}" if model is not None else "")
                + f" are logged in {where}",
                hint="serve the model (`mlsd serve`) and send it traffic first; the log is "
                "read from the workspace of this system.yaml",
            )
        rejects_table = read_rejects(ws)
        rejects = rejects_table.to_pylist()
        models, skipped = [], []
        for version, _count in versions:
            ref = load_reference(ws, spec.name, version)
            if ref is None:
                skipped.append(version)
                continue
            mine = [r for r in rejects if r.get("model_version") == version]
            # this version's inputs read with the types its signature declares (the
            # segments' inferred types are remembered: no second inference)
            duckdb_view(con, ws, pinned=True, inputs=input_types(ref.signature))
            available = {row[0] for row in con.execute("DESCRIBE predictions").fetchall()}
            models.append(run.model(con, ref, available, mine))
    finally:
        con.close()
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
        "now": _iso(run.now),
        "window": {
            "text": _window_text(run.mspec),
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
