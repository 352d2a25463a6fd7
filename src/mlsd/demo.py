"""``make demo``: mlsd end to end on the bundled real data, telling what it does.

Today that is steps 1, 2, 4, 5 and 6 of the design: load each example's spec, snapshot and
validate its data (bikeshare shows leakage caught, then excluded), split it, fit the
featurizer on the training split, then train baselines and candidates, pick one on
validation, score it once on test and register it if it beats the baselines. Later steps
(serving, monitoring, retraining) extend this story.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mlsd.data import load_dataset, split_dataset, validate
from mlsd.data.validate import validate_dataset
from mlsd.features import Featurizer, save, select_features
from mlsd.models.train import train
from mlsd.spec import load_spec
from mlsd.workspace import Workspace, write_json

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _findings(report) -> None:
    for a in report.anomalies:
        tag = "ack" if a.acknowledged else a.severity
        _say(f"      {tag:<8}{a.check:<18}{a.column or '-':<12}{a.message[:90]}")


def bikeshare() -> None:
    """Leakage caught and excluded, a time split with seasonal drift, features fitted."""
    spec = load_spec(EXAMPLES / "bikeshare" / "system.yaml")
    ws = Workspace.for_spec(spec)
    _say(f"== {spec.name}: {spec.problem.objective}")
    _say(
        f"   step 1  {spec.problem.task} on '{spec.problem.target}', ordered by "
        f"{', '.join(spec.problem.time)}, latency budget {spec.problem.latency_budget_ms:g} ms"
    )

    naive = spec.model_copy(deep=True)
    naive.features.exclude = [c for c in spec.features.exclude if c not in ("casual", "registered")]
    dataset = load_dataset(naive, ws)
    report = validate_dataset(naive, dataset)
    path = write_json(ws.reports / "validation-without-exclusions.json", report.to_dict())
    _say(
        f"   step 4  snapshot {dataset.snapshot_id}: {len(dataset.frame):,} rows; "
        "validating WITHOUT excluding casual/registered:"
    )
    _findings(report)
    _say(f"      → {'passed' if report.passed else 'BLOCKED'} ({path})")

    report = validate(spec, ws)
    _say(f"   step 4  with the committed spec (features.exclude: {spec.features.exclude}):")
    _findings(report)
    counts = report.split["counts"]
    _say(
        f"      → {'passed' if report.passed else 'BLOCKED'}; time split train {counts['train']:,}"
        f" · valid {counts['valid']:,} · test {counts['test']:,} "
        f"({ws.reports / 'validation.json'})"
    )
    _fit_features(spec, ws)
    _train(spec, ws)


def caravan() -> None:
    """Class imbalance warned about, a stratified split that keeps the 6% positives."""
    spec = load_spec(EXAMPLES / "caravan" / "system.yaml")
    ws = Workspace.for_spec(spec)
    _say(f"== {spec.name}: {spec.problem.objective}")
    _say(
        f"   step 1  {spec.problem.task} on '{spec.problem.target}' (positive "
        f"{spec.problem.positive_class!r}); a false negative costs "
        f"{spec.problem.costs.false_negative:g}x a false positive"
    )
    report = validate(spec, ws)
    _say(
        f"   step 4  snapshot {report.snapshot}: {report.n_rows:,} rows x {report.n_columns} "
        "columns:"
    )
    _findings(report)
    shares = report.split["stratified"]["class_shares"]
    _say(
        f"      → {'passed' if report.passed else 'BLOCKED'}; stratified split, share of "
        "'Yes' " + " · ".join(f"{k} {shares[k]['Yes']:.1%}" for k in ("train", "valid", "test"))
    )
    _fit_features(spec, ws)
    _train(spec, ws)


def _fit_features(spec, ws: Workspace) -> None:
    dataset = load_dataset(spec, ws)
    labels, _ = split_dataset(dataset, spec)
    columns = select_features(spec, dataset.schema.types)
    rows = dataset.frame[labels == 0]
    start = time.perf_counter()
    for encoding in ("codes", "onehot"):
        fitted = Featurizer(columns, spec.features, encoding=encoding).fit(
            {c: rows[c].array for c in columns}
        )
        matrix = fitted.transform({c: dataset.frame[c].array for c in columns})
        path = save(fitted, ws.reports / f"featurizer-{encoding}.json")
        _say(
            f"   step 5  {encoding:<6} featurizer fitted on {len(rows):,} train rows: "
            f"{len(columns)} columns → {matrix.shape[1]} features ({path})"
        )
    _say(f"           ({time.perf_counter() - start:.2f} s for both)")


def _train(spec, ws: Workspace) -> None:
    _say("   step 6  baselines first, then candidates chosen on valid, test scored once:")
    result = train(spec, ws, progress=False)
    for line in result.summary_lines():
        _say(f"      {line}")


def serve_story() -> None:
    """Train on January-June, serve, send July-December through the real server in time
    order with each day's counts arriving the next day as feedback, then batch-score the
    same rows and check both paths agree."""
    import csv
    import signal
    import socket
    import subprocess
    import tempfile

    import numpy as np
    import pyarrow.parquet as pq

    from mlsd.serving.batch import predict_batch

    folder = EXAMPLES / "bikeshare"
    spec = load_spec(folder / "first-half.yaml")
    ws = Workspace.for_spec(spec)
    _say(f"== {spec.name}: the model as of 1 July, served to the rest of the year")
    result = train(spec, ws, progress=False)
    chosen = result.entry(result.chosen).scores["test"]
    _say(
        f"   step 6  trained on Jan-Jun ({spec.data.source.sql}): {result.chosen}, test MAE "
        f"{chosen['mae']:.1f} (June); registered version {result.model_version} as "
        f"{result.alias}"
    )
    if not result.registered:
        return

    with open(folder / "bikeshare.csv", newline="") as handle:
        later = [r for r in csv.DictReader(handle) if int(r["day"]) > 181]
    inputs = [
        {k: _number(v) for k, v in r.items() if k not in ("bikers", "casual", "registered")}
        for r in later
    ]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlsd",
            "serve",
            "-c",
            str(spec.path),
            "--model",
            str(result.model_version),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    served: list[dict] = []
    latencies: list[float] = []
    try:
        conn = _wait_ready(server, port)
        _say(
            f"   step 7  `mlsd serve` on http://127.0.0.1:{port}: sending Jul-Dec, one request "
            "per day, in time order; each day's counts are fed back the next day"
        )
        by_day: dict[int, list[int]] = {}
        for i, row in enumerate(inputs):
            by_day.setdefault(int(row["day"]), []).append(i)
        pending: list[tuple[str, float]] = []
        for day, rows in sorted(by_day.items()):
            start = time.perf_counter()
            reply = _post(
                conn,
                "/v1/predict",
                {"instances": [inputs[i] for i in rows]},
                {"X-Request-ID": f"day-{day}"},
            )
            latencies.append((time.perf_counter() - start) * 1000)
            served += reply["predictions"]
            feedback = [
                {"request_id": f"day-{day - 1}", "instance": k, "label": label}
                for k, label in pending
            ]
            if feedback:
                _post(conn, "/v1/feedback", feedback)
            pending = [(k, float(later[i]["bikers"])) for k, i in enumerate(rows)]
        conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    truth = np.array([float(r["bikers"]) for r in later])
    online = np.array([p["value"] for p in served])
    _say(
        f"      {len(by_day)} requests, {len(served):,} predictions, median request "
        f"{np.median(latencies):.1f} ms; MAE on Jul-Dec {np.abs(online - truth).mean():.1f} "
        f"against {chosen['mae']:.1f} on June: the world moved (monitoring will say why)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "jul-dec.csv"
        with open(source, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(later[0]))
            writer.writeheader()
            writer.writerows(later)
        out = ws.reports / "jul-dec-scored.parquet"
        summary = predict_batch(spec, source, out, ref=str(result.model_version), progress=False)
    batch = pq.read_table(out).column("value").to_numpy()
    same = np.array_equal(batch, online)
    _say(
        f"   step 7  `mlsd predict` batch-scored the same {summary['scored']:,} rows "
        f"({summary['rows_per_s']:,.0f} rows/s) into {out}; identical to the server's "
        f"answers: {same}"
    )
    _say(f"   log     every prediction and label is in {ws.root / 'log'} (JSON Lines segments)")
    _monitor(spec, ws, str(result.model_version))


def _monitor(spec, ws: Workspace, version: str) -> None:
    """Step 9: the served second half against the model's reference, window by window (the
    version just served: a workspace kept from earlier demos holds older versions' traffic)."""
    from mlsd.monitoring.monitor import monitor

    _say(
        f"   step 9  `mlsd monitor`: the log against the model's training profile, in windows "
        f"of {spec.monitoring.window_rows:,} predictions (about a month):"
    )
    result = monitor(spec, ws, model=version)
    latest = result.report["models"][0]["windows"][-1]
    for line in result.summary_lines()[1:]:
        if line.startswith(("report:", "html:", "MLflow")):
            continue
        _say(f"      {line}")
    drifted = latest["drift"]["drifted"]
    prediction = "drifted" if (latest.get("prediction_drift") or {}).get("drifted") else "held"
    _say(
        f"      → the latest window drifted on {', '.join(drifted) or 'nothing'}; the "
        f"predictions {prediction}; exit code {result.exit_code}"
    )
    _say(f"   drift report: {result.paths['html']} (and monitoring.json beside it)")


def _number(text: str):
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() else value


def _wait_ready(server, port: int):
    """A keep-alive connection to the server once /readyz answers 200."""
    import http.client

    deadline = time.time() + 60
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlsd serve exited: {server.communicate()[1]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/readyz")
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return conn
        except OSError:
            pass
        conn.close()
        time.sleep(0.1)
    raise RuntimeError("mlsd serve did not become ready in 60 s")


def _post(conn, path: str, body, headers: dict | None = None) -> dict:
    import json

    conn.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"content-type": "application/json", **(headers or {})},
    )
    response = conn.getresponse()
    payload = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {payload}")
    return payload


def main() -> int:
    """Run the demo on both examples."""
    start = time.perf_counter()
    bikeshare()
    _say()
    caravan()
    _say()
    serve_story()
    _say()
    _say(
        f"done in {time.perf_counter() - start:.1f} s. Reports: examples/<name>/.mlsd/reports/<system>/; "
        "runs and versions: `mlflow ui --backend-store-uri sqlite:///examples/<name>/.mlsd/"
        "mlflow.db`. Retraining lands in a later release."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
