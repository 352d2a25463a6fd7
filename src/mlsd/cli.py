"""The ``mlsd`` command. Thin: each command parses its arguments and calls one function.

Exit codes: 0 success, 1 the check it ran failed, 2 bad usage or bad input (a clean
message, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from mlsd import __version__
from mlsd.errors import MlsdError
from mlsd.tasks import NAMES


def _emit_json(obj: dict) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON schema of system.yaml."""
    from mlsd.spec import json_schema

    _emit_json(json_schema())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Infer a commented system.yaml from a data file."""
    from mlsd.scaffold import write_spec

    out = write_spec(
        Path(args.data),
        args.target,
        out=Path(args.output),
        force=args.force,
        task=args.task,
        time=args.time,
        entity=args.id,
        group=args.group,
        name=args.name,
    )
    if args.json:
        _emit_json({"spec": str(out)})
    else:
        print(f"wrote {out}\nnext: review it, then run `mlsd validate -c {out}`")
    return 0


def _print_validation(report, path: Path) -> None:
    counts = report.counts()
    print(
        f"validated {report.system}: {report.n_rows:,} rows × {report.n_columns} columns "
        f"(snapshot {report.snapshot})"
    )
    if report.split:
        rows = report.split.get("counts", {})
        parts = " · ".join(f"{k} {rows[k]:,}" for k in ("train", "valid", "test") if k in rows)
        print(f"split {report.split.get('method')}: {parts}")
    shown = ", ".join(report.features[:12])
    more = f" … and {len(report.features) - 12} more" if len(report.features) > 12 else ""
    print(f"features ({len(report.features)}): {shown}{more}")
    for a in report.anomalies:
        tag = "ACK" if a.acknowledged else a.severity.upper()
        print(f"  {tag:<8}{a.check:<20}{a.column or '-':<16}{a.message}")
        if not a.acknowledged and a.severity != "info":
            print(f"  {'':<44}fix: {a.fix}")
    verdict = "PASSED" if report.passed else "FAILED"
    print(
        f"{counts['error']} errors, {counts['warning']} warnings, {counts['acknowledged']} "
        f"acknowledged → {verdict}"
    )
    print(f"report: {path}")


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate the spec's data; exit 1 when a blocking anomaly is found."""
    from mlsd.data.validate import validate
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    spec = load_spec(args.config)
    workspace = Workspace.for_spec(spec)
    if spec.architecture.funnel:
        return _validate_funnel(spec, workspace, args.json)
    report = validate(spec, workspace)
    if args.json:
        _emit_json(report.to_dict())
    else:
        _print_validation(report, workspace.reports / "validation.json")
    return 0 if report.passed else 1


def _validate_funnel(spec, workspace, as_json: bool) -> int:
    """Validate a funnel's interactions (and item table): facts and findings."""
    from mlsd.recsys.train import validate_interactions_report

    report = validate_interactions_report(spec, workspace)
    if as_json:
        _emit_json(report)
    else:
        facts = report["facts"]
        print(
            f"{spec.name}: {facts['interactions']:,} interactions, {facts['users']:,} users, "
            f"{facts['items']:,} items (density {facts['density']:.4f})"
        )
        for a in report["anomalies"]:
            print(f"  {a['severity']:<7} {a['check']} on {a['column']}: {a['message']}")
            print(f"          fix: {a['fix']}")
        verdict = "passed" if report["passed"] else "FAILED"
        print(f"validation {verdict} → {workspace.reports / 'validation.json'}")
    return 0 if report["passed"] else 1


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def cmd_train(args: argparse.Namespace) -> int:
    """Train baselines and candidates; register the chosen model if it passes the gate."""
    from mlsd.engine import trial_pool
    from mlsd.models.train import train
    from mlsd.spec import load_spec

    spec = load_spec(args.config)
    if spec.architecture.funnel:
        from mlsd.recsys.train import train_funnel

        result = train_funnel(spec, progress=False if args.json else None)
    else:
        pool = trial_pool(spec, args.engine)
        result = train(spec, progress=False if args.json else None, pool=pool)
    if args.json:
        _emit_json(result.to_dict())
    else:
        print("\n".join(result.summary_lines()))
    return 0 if result.registered else 1


def _registry(args: argparse.Namespace, spec=None):
    from mlsd.events import EventLog
    from mlsd.models.registry import Registry
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    spec = spec or load_spec(args.config)
    workspace = Workspace.for_spec(spec)
    events = EventLog(workspace.root / "events.sqlite")
    return Registry(workspace, spec.name, spec.models.tracking_uri, events=events)


def _package_meta(folder: str | None) -> dict:
    """What a version's package recorded (family, primary metric…); {} when it cannot be read."""
    from mlsd.models.package import format_of, load
    from mlsd.recsys import package as recommenders

    if not folder:
        return {}
    opener = recommenders.load if format_of(folder) == recommenders.FORMAT else load
    try:
        return opener(folder, verify=False).meta
    except MlsdError:
        return {}


def _shown_path(path: str | None) -> str:
    if not path:
        return "-"
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def versions_table(rows: list[dict], primary: str) -> list[str]:
    """Registered versions as a table: version, alias, created, family, the primary metric
    on the test split, package. Each row may carry ``family`` and ``primary_metric`` (from
    its package); ``primary`` is the spec's metric, used when a row does not say."""
    from mlsd.models.registry import mlflow_key

    names = {r.get("primary_metric") or primary for r in rows}
    one = len(names) == 1  # one metric name: it goes in the header, not in every cell
    title = f"test {next(iter(names))}" if one else "test (primary metric)"
    table = [("version", "alias", "created (UTC)", "family", title, "package")]
    for row in rows:
        name = row.get("primary_metric") or primary
        value = row.get("metrics", {}).get(mlflow_key(f"test.{name}"))
        score = _fmt(value) if one else f"{name} {_fmt(value)}"
        created = str(row.get("created_at") or "-").replace("T", " ")[:16]
        table.append(
            (
                str(row["version"]),
                ", ".join(row.get("aliases") or []) or "-",
                created,
                row.get("family") or "-",
                score,
                _shown_path(row.get("package")),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)), r[-1]])
        for r in table
    ]


def cmd_models(args: argparse.Namespace) -> int:
    """List registered versions (or, with --history, who served when)."""
    from mlsd.spec import load_spec
    from mlsd.tasks import get_task

    spec = load_spec(args.config)
    primary = spec.metrics.primary or get_task(spec.problem.task).default_metric
    registry = _registry(args, spec)
    rows = registry.history() if args.history else registry.versions()
    if not args.history:
        for row in rows:
            meta = _package_meta(row.get("package"))
            row["family"] = meta.get("family")
            row["primary_metric"] = meta.get("primary_metric") or primary
    if args.json:
        _emit_json({"history" if args.history else "versions": rows})
        return 0
    if not rows:
        print("no registered versions yet: run `mlsd train`")
    elif args.history:
        for row in rows:
            print("  ".join(f"{k}={v}" for k, v in row.items() if v not in (None, "", [], {})))
    else:
        print("\n".join(versions_table(rows, primary)))
        print("every metric of each version: mlsd models --json (or the MLflow UI)")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Make VERSION the champion."""
    change = _registry(args).promote(args.version, reason=args.reason or "")
    if args.json:
        _emit_json(change)
    else:
        print(f"champion is now version {args.version} (was {change.get('previous')})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Give the champion alias back to the previous champion."""
    change = _registry(args).rollback(reason=args.reason or "")
    if args.json:
        _emit_json(change)
    else:
        print(f"rolled back: champion is version {change.get('version')} again")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a model on labelled data."""
    from mlsd.evaluation.evaluate import evaluate
    from mlsd.spec import load_spec

    out = evaluate(load_spec(args.config), args.model, args.data)
    if args.json:
        _emit_json(out)
        return 0
    print(f"{out['model']} ({out['package']}) on {out['data']}: {out['rows']:,} rows")
    for name, value in out["metrics"].items():
        star = " *" if name == out["primary_metric"] else ""
        print(f"  {name:<22}{_fmt(value):>12}{star}")
    if out.get("report"):
        print(f"evaluation report: {out['report']['html']} (JSON: {out['report']['json']})")
    return 0


def _json_value(value):
    """A holdout value as a request carries it: NaN is missing, datetimes are ISO text."""
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def example_request(served, url: str) -> str | None:
    """A curl line posting one row of the package's holdout to ``url``: the first row the
    server's own validator accepts without a flag (else the first it accepts), None if none."""
    import shlex

    from mlsd.models.package import holdout
    from mlsd.serving.model import ServedRecommender

    if isinstance(served, ServedRecommender):
        user = json.dumps({"user": served.package.recommender.users[0], "k": 10})
        return (
            f"curl -s {url}/v1/recommend -H 'Content-Type: application/json' -d {shlex.quote(user)}"
        )
    inputs, _ = holdout(served.package)
    names = list(inputs)
    n = len(inputs[names[0]]) if names else 0
    rows = [{k: _json_value(inputs[k][i]) for k in names} for i in range(min(n, 200))]
    if not rows:
        return None
    checked = served.validator.validate(rows)
    if not checked.accepted:
        return None
    clean = [i for i, flags in zip(checked.accepted, checked.flags, strict=True) if not flags]
    row = rows[(clean or checked.accepted)[0]]
    body = json.dumps({"instances": [row]}, separators=(",", ":"))
    return f"curl -s {url}/v1/predict -H 'Content-Type: application/json' -d {shlex.quote(body)}"


def cmd_ui(args: argparse.Namespace) -> int:
    """The dashboard over a workspace, read-only, until interrupted."""
    from mlsd.ui.app import serve
    from mlsd.workspace import Workspace

    if args.workspace:
        root = Path(args.workspace)
    else:
        from mlsd.spec import load_spec

        root = Workspace.for_spec(load_spec(args.config)).root
    if not root.is_dir():
        raise MlsdError(
            f"no workspace at {root}",
            hint="pass --workspace DIR (a folder holding aliases/, reports/, events.sqlite) "
            "or -c system.yaml of a system that was trained",
        )
    print(f"mlsd ui: http://{args.host}:{args.port}/ (workspace {root}; Ctrl-C stops)")
    serve(root, args.host, args.port, args.mlflow_url)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the model over HTTP until interrupted."""
    import uvicorn

    from mlsd.engine import kind
    from mlsd.serving.app import Server, create_app
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    spec = load_spec(args.config)
    serving = spec.serving.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    )
    if kind(spec, args.engine) == "ray":
        return _serve_on_ray(spec, serving, args)
    server = Server(Workspace.for_spec(spec).root, spec.name, serving, ref=args.model)
    loaded = server.load()  # a model that cannot serve stops here, with the reason
    url = f"http://{serving.host}:{serving.port}"
    print(
        f"serving {spec.name} version {loaded['version']} ({args.model}) on {url} (docs at /docs)",
        flush=True,
    )
    if server.model is not None:
        curl = example_request(server.model, url)
        if curl:
            print(f"try it:\n{curl}", flush=True)
    uvicorn.run(
        create_app(server),
        host=serving.host,
        port=serving.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _serve_on_ray(spec, serving, args: argparse.Namespace) -> int:
    """``mlsd serve --engine ray``: replicas placed by Ray, sharing the port; until stopped."""
    from mlsd.engine.ray_serving import serve_replicas
    from mlsd.workspace import Workspace

    def on_ready(info: dict) -> None:
        print(
            f"replica {info['index']} (pid {info['pid']} on {info['node']}) serving {spec.name} "
            f"version {info['version']} on http://{serving.host}:{serving.port}; its own "
            f"/metrics on port {info['own_port']}",
            flush=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        serve_replicas(
            spec.engine, Workspace.for_spec(spec).root, spec.name, serving, args.model,
            args.replicas or spec.engine.replicas, on_ready,
        )  # fmt: skip
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C, so the command unwinds and removes
    its temporary files (the default action would kill it and leave them behind)."""

    exit_code = 128 + 15  # what a shell reports for a process ended by SIGTERM


@contextlib.contextmanager
def _sigterm_unwinds():
    """Within the block, SIGTERM raises :class:`Terminated` (main thread only: elsewhere a
    handler cannot be set); the previous handler is back afterwards, and for a second
    SIGTERM, which then acts at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler) or signal.SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_predict(args: argparse.Namespace) -> int:
    """Score a CSV or Parquet file in chunks with the served model; rejects go aside."""
    from mlsd.engine import batch_scorer
    from mlsd.serving.batch import predict_batch
    from mlsd.spec import load_spec

    spec = load_spec(args.config)
    with _sigterm_unwinds():  # the temporary files go with the run
        out = predict_batch(
            spec,
            Path(args.input),
            Path(args.output),
            ref=args.model,
            rejects_path=Path(args.rejects) if args.rejects else None,
            progress=False if args.json else None,
            engine=batch_scorer(spec, args.engine),
        )
    if args.json:
        _emit_json(out)
        return 0
    print(
        f"scored {out['scored']:,} of {out['rows']:,} rows with model {out['model_version']} "
        f"in {out['seconds']:.1f} s ({out['rows_per_s'] or 0:,.0f} rows/s) → {out['output']}"
    )
    if out["flagged"]:
        print(f"flagged {out['flagged']:,} rows outside the training range or domain (flags)")
    if out["rejected"]:
        print(f"rejected {out['rejected']:,} rows, with the reason of each → {out['rejects']}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """Every asked user's top k from a recommender package, one row per user and item."""
    from mlsd.engine import recommender
    from mlsd.serving.recommend import recommend_batch
    from mlsd.spec import load_spec

    spec = load_spec(args.config)
    out = recommend_batch(
        spec,
        args.users,
        Path(args.output),
        ref=args.model,
        k=args.k,
        include_seen=args.include_seen,
        progress=False if args.json else None,
        engine=recommender(spec, args.engine),
    )
    if args.json:
        _emit_json(out)
        return 0
    print(
        f"recommended to {out['users']:,} users ({out['cold_start']:,} without history: "
        f"popularity) with model {out['model_version']} ({out['chosen']}): {out['rows']:,} "
        f"rows in {out['seconds']:.1f} s ({out['users_per_s'] or 0:,.0f} users/s) → "
        f"{out['output']}"
    )
    return 0


def _engine_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--engine local|ray``: this command's override of the spec's ``engine.kind``."""
    parser.add_argument("--engine", choices=("local", "ray"), help=f"{what} (default: engine.kind)")


def _show(result, as_json: bool) -> int:
    """Print a result (its ``to_dict`` with --json, else its summary lines); its exit code."""
    if as_json:
        _emit_json(result.to_dict())
    else:
        print("\n".join(result.summary_lines()))
    return result.exit_code


def cmd_monitor(args: argparse.Namespace) -> int:
    """Drift, quality, performance, latency and staleness of the served traffic, per window
    and model version; exit 1 when the latest window alerts."""
    from mlsd.engine import log_reader
    from mlsd.monitoring.monitor import monitor
    from mlsd.spec import load_spec

    spec = load_spec(args.config)
    engine = log_reader(spec, args.engine)
    result = monitor(spec, model=args.model, window=args.window, engine=engine)
    return _show(result, args.json)


def cmd_retrain(args: argparse.Namespace) -> int:
    """Retrain on fresh data and promote the challenger only if it beats the champion;
    exit 0 promoted (or not needed), 1 the gate refused it."""
    from mlsd.loop.retrain import retrain
    from mlsd.spec import load_spec

    result = retrain(
        load_spec(args.config), if_needed=args.if_needed, progress=False if args.json else None
    )
    return _show(result, args.json)


def cmd_loop(args: argparse.Namespace) -> int:
    """Monitor, then retrain if needed, every --interval (or once); one line (or one JSON
    object) per iteration. Exit code: --once, that iteration's; otherwise 0 when stopped."""
    from mlsd.loop.run import run_loop
    from mlsd.spec import load_spec, parse_duration

    try:
        interval_s = parse_duration(args.interval)
    except ValueError as exc:
        raise MlsdError(
            str(exc), hint="e.g. --interval 1h, 15m or 30s", headline="bad loop interval"
        ) from None

    def show(iteration) -> None:
        if args.json:
            print(json.dumps(iteration.to_dict(), default=str), flush=True)
        else:
            print(iteration.line(), flush=True)

    spec = load_spec(args.config)
    if not args.json and not args.once:
        print(
            f"mlsd loop {spec.name}: monitor, then retrain if needed, every {args.interval} "
            "(Ctrl-C or SIGTERM stops after the current iteration)",
            flush=True,
        )
    done = run_loop(spec, interval_s=interval_s, once=args.once, on_iteration=show)
    return done[-1].exit_code if args.once and done else 0


def _rollout_target(args: argparse.Namespace):
    from mlsd.spec import load_spec
    from mlsd.workspace import Workspace

    spec = load_spec(args.config)
    return spec, Workspace.for_spec(spec)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.4g}%"


def rollout_lines(state: dict) -> list[str]:
    """``mlsd rollout status`` for people: arms, figures, statistics, the decision now."""
    exp = state.get("experiment")
    if exp is None:
        return ["no experiment yet: `mlsd rollout start --strategy canary --model challenger`"]
    lines = [
        f"{exp['strategy']} {exp['id']}: {exp['status']}"
        + (f" ({exp['outcome']})" if exp.get("outcome") else "")
    ]
    now = state.get("now") or {}
    evidence = now.get("evidence") or {}
    figures = evidence.get("arms") or {}
    members = [exp["champion"], *exp["challengers"]]
    shares = exp.get("weights") or {}
    for m in members:
        f = figures.get(m["name"]) if isinstance(figures.get(m["name"]), dict) else {}
        share = (
            1.0
            if exp["strategy"] == "shadow" and m["name"] == "champion"
            else shares.get(m["name"])
        )
        extra = ""
        if f and "requests" in f:
            extra = (
                f"  requests {f['requests']:,}  units {f['units']:,}  labelled "
                f"{f['labelled_rows']:,}  error rate {_pct(f['error_rate'])}  p99 "
                f"{_fmt(f['p99_ms'])} ms"
            )
        role = " (shadow)" if exp["strategy"] == "shadow" and m["name"] != "champion" else ""
        lines.append(f"  {m['name']:<12} version {m['version']}{role}  share {_pct(share)}{extra}")
    for name, result in (evidence.get("metrics") or {}).items():
        if "difference" in result:
            lines.append(
                f"  {name}: difference {_fmt(result['difference'])} (always-valid "
                f"{1 - result['alpha']:.0%} CI [{_fmt(result['ci_low'])}, "
                f"{_fmt(result['ci_high'])}]), p = {_fmt(result['always_valid_p'])}, "
                f"units {result['n_control']:,} / {result['n_test']:,}"
            )
        else:
            lines.append(f"  {name}: too few labelled units ({result})")
    if "non_inferiority" in evidence:
        ni = evidence["non_inferiority"]
        lines.append(
            f"  {ni['metric']} non-inferiority: {ni['status']} (difference "
            f"{_fmt(ni['difference'])}, + favours the challenger; always-valid CI "
            f"[{_fmt(ni['ci_low'])}, {_fmt(ni['ci_high'])}] against the margin "
            f"-{_fmt(ni['margin'])})"
        )
    if "srm" in evidence:
        srm = evidence["srm"]
        lines.append(
            f"  sample ratio: p = {_fmt(srm['p_value'])}"
            + (" MISMATCH: decisions blocked" if srm["mismatch"] else " (ok)")
        )
    if "p_best" in evidence:
        lines.append(
            "  probability of being best: "
            + ", ".join(f"{k} {v:.3f}" for k, v in evidence["p_best"].items())
        )
    if "agreement" in evidence:
        lines.append(f"  agreement with the champion: {evidence['agreement']:.1%}")
    if now:
        lines.append(
            f"  now: {now['action']}" + (f": {'; '.join(now['reasons'])}" if now["reasons"] else "")
        )
        if now.get("waiting_for"):
            lines.append(f"  waiting for: {'; '.join(now['waiting_for'])}")
    if state.get("report"):
        lines.append(f"  report: {state['report']}")
    return lines


def cmd_rollout(args: argparse.Namespace) -> int:
    """Start, judge, promote or abort a rollout (shadow, canary, A/B, bandit)."""
    from mlsd.rollout import controller
    from mlsd.rollout.report import report_path

    spec, ws = _rollout_target(args)
    action = args.action
    if action == "plan":
        result = controller.plan(spec, ws, mean=args.baseline, sd=args.sd, mde=args.mde)
        if args.json:
            _emit_json(result)
        else:
            print(
                f"A/B test on {result['metric']} (baseline {_fmt(result['baseline']['mean'])}, "
                f"sd {_fmt(result['baseline']['sd'])}, from {result['baseline']['from']}): "
                f"to detect a {result['mde_relative']:.1%} change with {result['power']:.0%} "
                f"power at alpha {result['alpha']:g}, peeking as often as you like: "
                f"{result['n_total']:,} units ({', '.join(f'{n:,}' for n in result['n_per_arm'])} "
                f"per arm); a fixed-horizon test read once would need {result['fixed_horizon_n_total']:,}"
            )
        return 0
    if action == "start":
        experiment = controller.start(spec, ws, args.model or [], args.strategy, salt=args.salt)
        state = {"experiment": experiment.to_dict()}
    elif action == "step":
        experiment, decision = controller.step(spec, ws)
        state = (
            controller.status(spec, ws)
            if experiment.running
            else {"experiment": experiment.to_dict()}
        )
        state["decision"] = decision.to_dict()
    elif action == "promote":
        experiment = controller.promote(spec, ws, args.arm)
        state = {"experiment": experiment.to_dict()}
    elif action == "abort":
        experiment = controller.abort(spec, ws, args.reason or "")
        state = {"experiment": experiment.to_dict()}
    else:
        state = controller.status(spec, ws)
        experiment = None
    exp = state.get("experiment")
    if exp is not None:
        from mlsd.rollout.experiment import Experiment

        state["report"] = str(report_path(ws, Experiment.from_dict(exp)))
    if args.json:
        _emit_json(state)
        return 0
    if action == "start":
        shares = ", ".join(f"{k} {_pct(v)}" for k, v in exp["weights"].items()) or (
            "champion answers, the challenger scores a copy"
        )
        print(
            f"{exp['strategy']} {exp['id']} started: {shares}. `mlsd rollout step` (or each "
            "`mlsd loop` iteration) takes the next decision; `mlsd rollout status` shows it."
        )
        return 0
    if action == "step":
        d = state["decision"]
        print(f"decision: {d['action']}" + (f": {'; '.join(d['reasons'])}" if d["reasons"] else ""))
    print("\n".join(rollout_lines(state)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every mlsd command."""
    parser = argparse.ArgumentParser(
        prog="mlsd", description="ML system design, as one running system."
    )
    parser.add_argument("--version", action="version", version=f"mlsd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", default="system.yaml", help="path to system.yaml (default: ./system.yaml)"
    )
    common.add_argument("--json", action="store_true", help="print one JSON object")

    p = sub.add_parser("schema", help="print the JSON schema of system.yaml")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("init", help="write a system.yaml inferred from a data file")
    p.add_argument("data", help="CSV or Parquet file, or a folder of Parquet files")
    p.add_argument("--target", required=True, help="column to predict")
    p.add_argument(
        "--task",
        choices=list(NAMES),
        help="default: inferred from the target column",
    )
    p.add_argument("--time", nargs="+", help="event-time column(s), most significant first")
    p.add_argument("--id", help="entity id column")
    p.add_argument(
        "--group",
        help="ranking: the column grouping the rows ranked together (a query, session or user)",
    )
    p.add_argument("--name", help="system name (default: the data file's name)")
    p.add_argument("-o", "--output", default="system.yaml", help="where to write the spec")
    p.add_argument("--force", action="store_true", help="overwrite an existing spec")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("validate", parents=[common], help="validate the data of a system")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "train",
        parents=[common],
        help="train baselines and candidates, register the best if it wins",
    )
    _engine_option(p, "tuning trials fitted here one at a time, or several at once on Ray")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", parents=[common], help="list registered model versions")
    p.add_argument("--history", action="store_true", help="which version served when, and why")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("promote", parents=[common], help="make a version the champion")
    p.add_argument("version", type=int, help="model version number")
    p.add_argument("--reason", help="why, for the event log")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("rollback", parents=[common], help="restore the previous champion")
    p.add_argument("--reason", help="why, for the event log")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("serve", parents=[common], help="serve predictions over HTTP")
    p.add_argument("--host", help="address to bind (default: serving.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: serving.port, 8000)")
    p.add_argument(
        "--model",
        default="champion",
        help="champion (followed as it moves), challenger, a version or a package",
    )
    _engine_option(p, "one server here, or replicas placed by Ray sharing the port")
    p.add_argument("--replicas", type=int, help="servers on Ray (default: engine.replicas)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("ui", parents=[common], help="the dashboard: every system of a workspace")
    p.add_argument("--workspace", help="the workspace folder (default: the spec's)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument(
        "--mlflow-url",
        default="http://127.0.0.1:5000",
        help="where `mlflow ui` answers, for the links to runs (default http://127.0.0.1:5000)",
    )
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("evaluate", parents=[common], help="score a model on labelled data")
    p.add_argument(
        "--model",
        default="champion",
        help="champion, challenger, a version number or a package folder in the workspace",
    )
    p.add_argument("--data", help="labelled CSV/Parquet (default: the spec's test split)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", parents=[common], help="score a CSV/Parquet file in chunks (batch scoring)"
    )
    p.add_argument(
        "--input", required=True, help="CSV or Parquet file (or a folder of Parquet) to score"
    )
    p.add_argument("--output", required=True, help="where to write scores (.parquet or .csv)")
    p.add_argument(
        "--model",
        default="champion",
        help="champion, challenger, a version number or a package folder in the workspace",
    )
    p.add_argument(
        "--rejects", help="where rejected rows go (default: <output stem>.rejects.<ext>)"
    )
    _engine_option(p, "rows scored in this process, or by actors on Ray")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "recommend", parents=[common], help="every user's top k from a recommender (batch)"
    )
    p.add_argument("--users", default="all", help="all (default), or a CSV/Parquet of user ids")
    p.add_argument("--k", type=int, help="items per user (default: architecture.k)")
    p.add_argument("--output", required=True, help="where to write them (.parquet or .csv)")
    p.add_argument(
        "--model",
        default="champion",
        help="champion, challenger, a version number or a package folder in the workspace",
    )
    p.add_argument(
        "--include-seen", action="store_true", help="let items a user already has through"
    )
    _engine_option(p, "users answered in this process, or by actors on Ray")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser(
        "rollout",
        parents=[common],
        help="step 8: shadow, canary, A/B or bandit rollout of a new version",
    )
    p.add_argument(
        "action",
        choices=["start", "status", "step", "promote", "abort", "plan"],
        help="start an experiment, show it, take one decision, end it, or size an A/B test",
    )
    p.add_argument(
        "--strategy",
        choices=["shadow", "canary", "ab", "bandit"],
        help="start: the strategy (default: rollout.strategy)",
    )
    p.add_argument(
        "--model",
        action="append",
        help="start: the version (or alias) to roll out; repeat for a bandit's arms",
    )
    p.add_argument(
        "--salt",
        help="start: the assignment's hash salt (default: the experiment's key, so starting "
        "the same experiment again splits units the same way)",
    )
    p.add_argument("--arm", help="promote: the arm to promote (default: the challenger)")
    p.add_argument("--reason", help="abort: why, for the event log")
    p.add_argument("--baseline", type=float, help="plan: the online metric's mean now")
    p.add_argument("--sd", type=float, help="plan: its standard deviation per unit")
    p.add_argument(
        "--mde", type=float, help="plan: relative effect to detect (default: rollout.ab.mde)"
    )
    p.set_defaults(func=cmd_rollout)

    p = sub.add_parser(
        "monitor",
        parents=[common],
        help="drift, data quality, performance and latency of the served traffic",
    )
    p.add_argument(
        "--model", help="one model: champion, a version number or a package (default: all)"
    )
    p.add_argument(
        "--window",
        help="window of serving time (1d, 6h) or of rows (1000, rows:1000); "
        "default: monitoring.window",
    )
    _engine_option(p, "the log read here, or in parallel blocks by actors on Ray")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser(
        "retrain",
        parents=[common],
        help="retrain on fresh data; promote the challenger if it beats the champion",
    )
    p.add_argument(
        "--if-needed",
        action="store_true",
        help="only when a retraining trigger fires (says which and why)",
    )
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser(
        "loop",
        parents=[common],
        help="monitor, then retrain if needed, on an interval (or --once, for cron)",
    )
    p.add_argument("--interval", default="1h", help="time between iteration starts (default: 1h)")
    p.add_argument("--once", action="store_true", help="one iteration, then exit")
    p.set_defaults(func=cmd_loop)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlsd`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MlsdError as exc:
        if getattr(args, "json", False):
            _emit_json(
                {
                    "error": {
                        "type": type(exc).__name__,
                        "message": exc.message,
                        "hint": exc.hint,
                        "problems": getattr(exc, "problems", []),
                    }
                }
            )
        else:
            print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        return getattr(exc, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
