"""``make demo``: mlsd end to end on the bundled real data, telling what it does.

Steps 1-6 on both examples: load each spec, snapshot and validate its data (bikeshare shows
leakage caught, then excluded), split it, fit the featurizer on the training split, train
baselines and candidates, pick one on validation, score it once on test and register it if
it beats the baselines. Then steps 7 and 9 as a closed loop on bikeshare: the model trained
on January-June serves July-September through the real server with each day's counts
arriving the next day, monitoring flags the drift, ``retrain --if-needed`` trains a
challenger on the rows now available, the gate compares both on the freshest labels and
promotes it, the server follows the champion alias, and October-December measures the
error of both champions on the same rows. Last, step 3 on MovieLens 100k: a recommender
funnel's stages measured on test, the gate's choice, and one user's top five.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from mlsd.columns import select_features
from mlsd.data import load_dataset, split_dataset, validate
from mlsd.data.validate import validate_dataset
from mlsd.features import Featurizer, frame_inputs, save
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
            frame_inputs(rows, columns)
        )
        matrix = fitted.transform(frame_inputs(dataset.frame, columns))
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


_LABELS = ("bikers", "casual", "registered")  # what a client does not know when it asks


class _Replay:
    """The second half of 2011 sent through a real server in time order, one request per
    day; each day's counts are fed back the next day (``data.label_delay: 24h``). Keeps
    every answer with the version that gave it, and counts failed requests."""

    def __init__(self, conn, rows: list[dict]):
        self.conn, self.rows = conn, rows  # conn: keep-alive, reopened when the server closed it
        from mlsd.serving.batch import csv_value  # a CSV cell as `mlsd predict` reads it

        self.inputs = [{k: csv_value(v) for k, v in r.items() if k not in _LABELS} for r in rows]
        self.outputs: dict[int, float] = {}
        self.versions: dict[int, str] = {}
        self.latencies: list[float] = []
        self.failed = 0
        self._pending: list[dict] = []  # yesterday's labels, sent with today's first request
        self._today: list[dict] = []

    def send(
        self, first_day: int, last_day: int, *, hourly: bool = False, after_day=None
    ) -> list[int]:
        """Serve days ``first_day``..``last_day``, one request per day (or per hour); call
        ``after_day(day)`` after each; return the indices of their rows."""
        by_day: dict[int, list[int]] = {}
        for i, row in enumerate(self.inputs):
            if first_day <= int(row["day"]) <= last_day:
                by_day.setdefault(int(row["day"]), []).append(i)
        for day, rows in sorted(by_day.items()):
            requests = [[i] for i in rows] if hourly else [rows]
            for k, batch in enumerate(requests):
                rid = f"day-{day}-{k}" if hourly else f"day-{day}"
                self._request(rid, batch)
                if k == 0 and self._pending:  # yesterday's counts are known today
                    fed, _ = self._call("/v1/feedback", self._pending)
                    self.failed += fed != 200
                    self._pending = []
            self._pending = self._today
            self._today = []
            if after_day is not None:
                after_day(day)
        return [i for rows in by_day.values() for i in rows]

    def _request(self, rid: str, rows: list[int]) -> None:
        start = time.perf_counter()
        status, reply = self._call(
            "/v1/predict", {"instances": [self.inputs[i] for i in rows]}, {"X-Request-ID": rid}
        )
        self.latencies.append((time.perf_counter() - start) * 1000)
        if status != 200:
            self.failed += 1
            return
        for i, answer in zip(rows, reply["predictions"], strict=True):
            self.outputs[i] = answer["value"]
            self.versions[i] = str(reply["model_version"])
        self._today += [
            {"request_id": rid, "instance": k, "label": float(self.rows[i]["bikers"])}
            for k, i in enumerate(rows)
        ]

    def _call(self, path: str, body=None, headers: dict | None = None) -> tuple[int, dict]:
        import http.client

        try:
            return _call(self.conn, path, body, headers)
        except (ConnectionError, http.client.HTTPException):  # idle keep-alive closed
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.conn.host, self.conn.port, timeout=30)
            return _call(self.conn, path, body, headers)

    def wait_version(self, version: str, timeout: float = 30) -> float:
        """Seconds until the server answers with ``version`` (it polls the alias)."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            _, payload = self._call("/readyz")
            if str(payload.get("model_version")) == version:
                return time.perf_counter() - start
            time.sleep(0.01)
        raise RuntimeError(f"the server did not load version {version} in {timeout:g} s")

    def wait_logged(self, ws: Workspace, timeout: float = 30) -> None:
        """Until every answer and every label sent so far is in the log's finished segments."""
        from mlsd.predlog.writer import FEEDBACK, PREDICTIONS, segment_files

        def lines(kind: str) -> int:
            files = segment_files(ws.log / kind)
            return sum(f.read_bytes().count(b"\n") for f in files)

        labels = len(self.outputs) - len(self._pending)
        deadline = time.time() + timeout
        while lines(PREDICTIONS) < len(self.outputs) or lines(FEEDBACK) < labels:
            if time.time() > deadline:
                raise RuntimeError(f"the prediction log did not catch up in {timeout:g} s")
            time.sleep(0.1)

    def mae(self, rows: list[int], outputs: dict[int, float] | None = None) -> float:
        import numpy as np

        got = outputs if outputs is not None else self.outputs
        return float(
            np.mean([abs(got[i] - float(self.rows[i]["bikers"])) for i in rows if i in got])
        )


def serve_story() -> None:
    """The closed loop on the second half of 2011: the model trained on January-June is
    served July-September through the real server, monitoring flags the drift, a retrain on
    the rows now available is judged on the freshest labels and promoted, the server
    follows the champion alias, and October-December measures whether the error dropped."""
    import csv
    import shutil
    import signal
    import socket
    import subprocess

    import numpy as np

    from mlsd.events import EventLog
    from mlsd.models.registry import Registry

    folder = EXAMPLES / "bikeshare"
    spec = load_spec(folder / "first-half.yaml")
    ws = Workspace.for_spec(spec)
    _say(f"== {spec.name}: the model as of 1 July, served to the rest of the year")
    if ws.log.exists():  # a replay starts on 1 July: no earlier demo's traffic
        shutil.rmtree(ws.log)
    from mlsd.rollout import controller

    if controller.running(ws) is not None:  # nor an earlier demo's canary
        controller.abort(spec, ws, "a new demo replay")
    result = train(spec, ws, progress=False)
    chosen = result.entry(result.chosen).scores["test"]
    if not result.registered:
        _say(f"   step 6  not registered: {'; '.join(result.reasons)}")
        return
    old = int(result.model_version)
    registry = Registry(
        ws, spec.name, spec.models.tracking_uri, events=EventLog(ws.root / "events.sqlite")
    )
    registry.promote(old, reason="make demo: the model as of 1 July")  # a kept workspace
    _say(
        f"   step 6  trained on Jan-Jun ({spec.data.source.sql}): {result.chosen}, test MAE "
        f"{chosen['mae']:.1f} (June); version {old} is the champion"
    )

    with open(folder / "bikeshare.csv", newline="") as handle:
        later = [r for r in csv.DictReader(handle) if int(r["day"]) > 181]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "mlsd", "serve", "-c", str(spec.path), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        replay = _Replay(_wait_ready(server, port), later)
        _say(
            f"   step 7  `mlsd serve --model champion` on http://127.0.0.1:{port} follows the "
            f"champion alias (checked every {spec.serving.poll_s:g} s). Jul-Sep, one request "
            "per day in time order; each day's counts are fed back the next day:"
        )
        summer = replay.send(182, 273)
        _say(
            f"      {len(replay.latencies)} requests, {len(summer):,} predictions, median "
            f"request {np.median(replay.latencies):.1f} ms, {replay.failed} failed; MAE on "
            f"Jul-Sep {replay.mae(summer):.1f} against {chosen['mae']:.1f} on June"
        )
        replay.wait_logged(ws)  # the server makes rows durable every serving.log_flush_s
        monitored = _monitor(spec, ws, str(old))
        retrained = _retrain(spec, ws, monitored)
        handed = retrained.promoted or retrained.rollout
        new = retrained.challenger_version if handed else old

        if retrained.promoted:
            waited = replay.wait_version(str(new))
            _say(
                f"   step 7  the server followed the champion alias to version {new} by "
                f"itself, without a restart (answering with it {waited:.2f} s after the "
                "retrain returned)"
            )
        canary = _Canary(spec, ws, replay, str(new)) if retrained.rollout else None
        sent_before, failed_before = len(replay.latencies), replay.failed
        autumn = replay.send(274, 366, hourly=canary is not None, after_day=canary)
        served = {}
        for i in autumn:
            if i in replay.versions:
                served[replay.versions[i]] = served.get(replay.versions[i], 0) + 1
        _say(
            f"   step 7  Oct-Dec through the same server: {len(replay.latencies) - sent_before:,} "
            f"requests, {len(autumn):,} predictions, answered by "
            + ", ".join(f"version {v} ({n:,})" for v, n in sorted(served.items()))
            + f"; {replay.failed - failed_before} failed ({replay.failed} in the whole replay)"
        )
        if canary is not None:
            canary.report()
        replay.conn.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    _compare_after(spec, ws, replay, autumn, old, new)


class _Canary:
    """Step 8 during the Oct-Dec replay: every few days, `mlsd rollout step` reads the log
    (answers and the labels that have arrived) and takes the canary's next decision."""

    EVERY = 3  # days between decisions

    def __init__(self, spec, ws: Workspace, replay: _Replay, version: str):
        from mlsd.rollout import controller

        self.spec, self.ws, self.replay, self.version = spec, ws, replay, version
        self.controller = controller
        self.experiment = controller.running(ws)
        self.decisions = 0
        steps = self.experiment.config["steps"]
        _say(
            f"   step 8  canary {self.experiment.id}: version {version} takes "
            f"{', then '.join(f'{s:g}%' for s in steps)} of requests (units: the request id, "
            "a salted hash keeps each on one version); one request per hour now, and every "
            f"{self.EVERY} days `mlsd rollout step` judges the step on what the log holds:"
        )

    def __call__(self, day: int) -> None:
        if self.experiment is None or not self.experiment.running or (day - 273) % self.EVERY:
            return
        self.replay.wait_logged(self.ws)
        self.experiment, decision = self.controller.step(self.spec, self.ws)
        self.decisions += 1
        if decision.action == "hold":
            return
        when = _date(day)
        share = self.experiment.weights.get("challenger", 0)
        arms = decision.evidence.get("arms", {}).get("challenger", {})
        ni = decision.evidence.get("non_inferiority")
        mae = (
            f"MAE difference {ni['difference']:+.1f} (champion − challenger), always-valid CI "
            f"[{ni['ci_low']:+.1f}, {ni['ci_high']:+.1f}] against the margin −{ni['margin']:.1f}"
            if ni
            else "no labelled units yet"
        )
        if decision.action == "advance":
            _say(
                f"      {when}  advance to {share:.0%}: {arms.get('requests', 0)} requests at "
                f"the step, p99 {arms.get('p99_ms') or 0:.1f} ms, no prediction drift; {mae}"
            )
        elif decision.action == "promote":
            waited = self.replay.wait_version(self.version)
            _say(
                f"      {when}  PROMOTED: {mae}; version {self.version} is the champion, the "
                f"routing table is gone and the server answers with it ({waited:.2f} s later)"
            )
        else:
            _say(f"      {when}  {decision.action.upper()}: {'; '.join(decision.reasons)}")

    def report(self) -> None:
        from mlsd.rollout.report import report_path

        state = self.experiment
        _say(
            f"      → {state.status} after {self.decisions} decisions; the experiment page: "
            f"{report_path(self.ws, state)}"
        )


def _date(day: int) -> str:
    from datetime import date, timedelta

    return (date(2011, 1, 1) + timedelta(days=day - 1)).strftime("%d %b")


def _retrain(spec, ws: Workspace, monitored):
    """Step 9: `mlsd retrain --if-needed`, told in a few lines with its figures."""
    from mlsd.loop.retrain import retrain

    _say("   step 9  `mlsd retrain --if-needed`: the triggers, then the champion/challenger gate:")
    result = retrain(spec, ws, if_needed=True, progress=False, monitor_result=monitored)
    for t in result.triggers:
        evidence = t.get("evidence", {})
        alerts = len(evidence.get("alerts", []))
        total = evidence.get("alerts_in_window", alerts)
        if t["fired"] and "alerts" not in evidence:  # schedule, new_labels: their reason
            _say(f"      trigger {t['name']}: FIRED ({t['reason']})")
        elif t["fired"]:
            of = f" of {total} alerts" if total > alerts else ""
            _say(
                f"      trigger {t['name']}: FIRED ({alerts} {t['name']} alert(s){of} in the "
                "champion's latest window)"
            )
        else:
            _say(f"      trigger {t['name']}: quiet ({t['reason'].split(' (')[0]})")
    if not result.needed:
        _say("      → no trigger fired: the champion stays")
        return result
    c = result.data.get("counts", {})
    if c:
        _say(
            f"      data: {c['train_rows']:,} rows to learn from ({result.data['window']}: "
            f"{c['train_rows'] - c['train_rows_from_log']:,} of Jan-Jun, "
            f"{c['train_rows_from_log']:,} served and labelled); the freshest "
            f"{c['holdout_rows']:,} labelled rows held out"
        )
    cmp = result.comparison or {}
    if cmp.get("champion") is not None:
        _say(
            f"      on that fresh holdout: MAE champion (version {result.champion_version}) "
            f"{cmp['champion']:.1f}, challenger (version {result.challenger_version}, "
            f"{result.training.get('chosen')}) {cmp['challenger']:.1f}; difference "
            f"{cmp['difference']:+.1f}, {cmp['level']:.0%} CI [{cmp['ci_low']:+.1f}, "
            f"{cmp['ci_high']:+.1f}]"
        )
    if result.promoted:
        verdict = f"PROMOTED: version {result.challenger_version} is the champion"
    elif result.rollout:
        verdict = (
            f"PASSED the gate: version {result.challenger_version} is handed to the "
            f"{result.rollout['strategy']} rollout (retraining.promote: rollout)"
        )
    else:
        verdict = "REFUSED: " + "; ".join(result.reasons)
    _say(f"      → {verdict} ({result.seconds:.1f} s)")
    _say(f"   retrain report: {result.report.get('html')}")
    return result


def _compare_after(spec, ws: Workspace, replay: _Replay, rows: list[int], old: int, new) -> None:
    """Step 9, the proof: both champions batch-scored on the same Oct-Dec rows."""
    import csv
    import tempfile

    import pyarrow.parquet as pq

    from mlsd.serving.batch import predict_batch

    scored: dict[int, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "oct-dec.csv"
        with open(source, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(replay.rows[0]))
            writer.writeheader()
            writer.writerows(replay.rows[i] for i in rows)
        for version in dict.fromkeys((old, new)):
            out = ws.reports / f"oct-dec-v{version}.parquet"
            predict_batch(spec, source, out, ref=str(version), progress=False)
            values = pq.read_table(out).column("value").to_numpy()
            scored[version] = dict(zip(rows, values.tolist(), strict=True))
    before, after = replay.mae(rows, scored[old]), replay.mae(rows, scored[new])
    _say(
        f"   step 9  the error on Oct-Dec ({len(rows):,} rows, `mlsd predict` with each "
        f"version): the old champion (version {old}) MAE {before:.1f}, the new (version "
        f"{new}) {after:.1f}: "
        + (f"{(before - after) / before:.0%} lower" if after < before else "HIGHER")
    )
    served = [i for i in rows if replay.versions.get(i) == str(new)]
    same = bool(served) and all(replay.outputs[i] == scored[new][i] for i in served)
    _say(
        f"      the batch scores of version {new} are identical to the server's answers: "
        f"{same} ({len(served):,} rows)"
    )
    _say(
        f"   log     every prediction and label is in {ws.log}; every decision in "
        f"`mlsd models --history -c {spec.path}`"
    )


def _monitor(spec, ws: Workspace, version: str):
    """Step 9: the served traffic against the model's reference, window by window (the
    version just served); returns the result (the retrain's triggers reuse it)."""
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
    return result


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


def _call(conn, path: str, body=None, headers: dict | None = None) -> tuple[int, dict]:
    """POST ``body`` as JSON (GET when None) on a keep-alive connection: (status, payload)."""
    conn.request(
        "GET" if body is None else "POST",
        path,
        body=None if body is None else json.dumps(body),
        headers={"content-type": "application/json", **(headers or {})},
    )
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def recommender():
    """Step 3 on MovieLens 100k (read from the recbole wheel when it is installed): the
    funnel's stages measured, the gate's choice, and one user's recommendations. Returns
    its spec, or None when the data is not there."""
    import pandas as pd

    from mlsd.datasets.movielens import find_ml100k, write_interactions
    from mlsd.errors import DataError
    from mlsd.recsys import package as recommenders
    from mlsd.recsys.train import train_funnel

    _say("MovieLens 100k as a recommender (step 3: candidate generators → ranker → filters)")
    try:
        find_ml100k()
    except DataError as exc:
        _say(f"   skipped: {exc.message} ({exc.hint})")
        return None
    folder = EXAMPLES / "movielens-recs"
    write_interactions(folder)
    _say("   wrote interactions.csv, users.csv and items.csv from the recbole wheel")
    spec = load_spec(folder / "system.yaml")
    result = train_funnel(spec, progress=False)
    for line in result.summary_lines():
        _say("   " + line)
    titles = pd.read_csv(folder / "items.csv", index_col="item_id")["title"]
    [answer] = recommenders.load(result.package).recommender.recommend([196], 5)
    picks = "; ".join(f"{titles[i['item']]} ({i['stage']})" for i in answer["items"])
    _say(f"   user 196's top 5: {picks}")
    return spec


def main() -> int:
    """Run the demo on the examples."""
    start = time.perf_counter()
    bikeshare()
    _say()
    caravan()
    _say()
    serve_story()
    _say()
    recs = recommender()
    _say()
    _say(
        f"done in {time.perf_counter() - start:.1f} s. Reports: examples/<name>/.mlsd/reports/<system>/; "
        "runs and versions: `mlflow ui --backend-store-uri sqlite:///examples/<name>/.mlsd/"
        "mlflow.db`."
    )
    shown = _ui_command(load_spec(EXAMPLES / "bikeshare" / "system.yaml"))
    _say(
        f"see what it just did, the bikeshare systems on one page: `{shown}`, then open "
        "http://127.0.0.1:8080/"
    )
    if recs is not None:
        explore = f"http://127.0.0.1:8080/systems/{recs.name}/explore?user=196"
        other = _ui_command(recs)
        _say(
            "and how the recommender made user 196's list: "
            + (explore if other == shown else f"`{other}`, then open {explore}")
        )
    return 0


def _ui_command(spec) -> str:
    """`mlsd ui` over the workspace of ``spec``, relative to here when it is under here."""
    root = Workspace.for_spec(spec).root
    with contextlib.suppress(ValueError):
        root = root.relative_to(Path.cwd())
    return f".venv/bin/mlsd ui --workspace {root}"


if __name__ == "__main__":
    sys.exit(main())
