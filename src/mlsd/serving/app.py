"""``mlsd serve``: the online prediction service.

Routes: ``POST /v1/predict``, ``POST /v1/rank`` (ranking models), ``POST /v1/feedback``,
``GET /v1/models``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus), ``POST /v1/admin/reload`` (bearer token from
``MLSD_ADMIN_TOKEN``), the Open Inference Protocol V2 routes, and OpenAPI at ``/docs``.

The server follows two files beside the registry: the aliases (which version is the
champion) and, while an experiment runs (step 8), the routing table (which versions share
the traffic, which shadow it; :mod:`mlsd.serving.router`). Each is loaded and verified
whole before it replaces what served; a table that fails leaves the previous state serving.

The hot path is lean on purpose: the body is read as bytes and parsed once, validation was
compiled from the signature at load time, and the model is one immutable object read once
per request, so a swap (one assignment) never mixes two models in one answer. Every error is
a 4xx JSON object ``{"error": {"code", "message", "details"}}``; no input gives a 5xx.
"""

from __future__ import annotations

import hmac
import importlib.metadata
import json
import logging
import math
import os
import random
import threading
import time
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from mlsd.errors import MlsdError
from mlsd.models import aliases, routing
from mlsd.predlog.writer import PredictionLog
from mlsd.serving import v2
from mlsd.serving.metrics import ServerMetrics
from mlsd.serving.model import (
    ServedModel,
    ServedRecommender,
    ServingError,
    identity,
    load_served,
    load_version,
)
from mlsd.serving.recommend import (
    RECOMMEND_REQUEST,
    RECOMMEND_RESPONSE,
    RecommendRequestError,
    recommend_request,
)
from mlsd.serving.router import Routing, ShadowProcess
from mlsd.serving.v2 import V2Error
from mlsd.serving.validation import MAX_REQUEST_ID, REQUEST_ID_SCHEMA, request_id_problem
from mlsd.spec import ServingSpec
from mlsd.workspace import Workspace

TOKEN_ENV = "MLSD_ADMIN_TOKEN"
INLINE_INSTANCES = 64  # larger requests are scored in a worker thread, off the event loop
logger = logging.getLogger("mlsd.serving")


class HTTPProblem(Exception):
    """An error answered as ``{"error": {...}}`` with a 4xx status."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or []


def _json(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _problem(exc: HTTPProblem) -> Response:
    return _json(
        {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}, exc.status
    )


def _is_v2(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def _v2_message(exc: HTTPProblem) -> str:
    """An error as the one string the V2 protocol answers, its details spelled out."""
    parts = []
    for d in exc.details[:20]:
        if isinstance(d, dict):
            where = ", ".join(f"{k} {d[k]}" for k in ("instance", "field") if d.get(k) is not None)
            parts.append(f"{where}: {d.get('problem')}" if where else str(d.get("problem")))
        else:
            parts.append(str(d))
    more = f" (and {len(exc.details) - 20} more)" if len(exc.details) > 20 else ""
    return exc.message + (": " + "; ".join(parts) + more if parts else "")


def _answer_problem(path: str, exc: HTTPProblem) -> Response:
    """The error in the route's shape: V2 routes answer ``{"error": "<message>"}`` (the
    Open Inference Protocol's), the others ``{"error": {"code", "message", "details"}}``."""
    if _is_v2(path):
        return _json({"error": _v2_message(exc)}, exc.status)
    return _problem(exc)


def _parse(body: bytes) -> Any:
    """JSON, fast; the standard parser is the fallback for NaN and Infinity, which orjson
    refuses but which validation should name per field."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return json.loads(body)
        except RecursionError:
            raise HTTPProblem(400, "invalid_json", "the body is nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPProblem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


class _Scored(NamedTuple):
    """One request's instances scored: the model that answered (and what the log records
    of the experiment's choice, if one chose it), the validation result and the outputs."""

    model: ServedModel
    routed: dict[str, Any] | None
    instances: Any
    checked: Any
    outputs: list


_NULL_LAST = math.inf
MAX_PROBLEMS = 100  # listed in an answer and logged, per request


def _order(scores: list) -> list[int]:
    """Indices of ``scores`` by score descending; equal scores keep their order, a null
    score (not finite) comes last."""
    return sorted(range(len(scores)), key=lambda j: _NULL_LAST if scores[j] is None else -scores[j])


def _group_key(group: Any) -> str:
    """A ranking request's group as text (how routing hashes it and the log keeps it):
    a string as it is, an integer (or an integral float: 7.0 is 7) as its digits."""
    if isinstance(group, float) and group.is_integer():
        return str(int(group))
    return str(group)


class Server:
    """Holds the served model, swaps it safely, and answers requests."""

    def __init__(
        self,
        workspace_root: Path,
        system: str,
        serving: ServingSpec,
        ref: str = "champion",
        log: PredictionLog | None = None,
    ):
        self.root, self.system, self.serving, self.ref = Path(workspace_root), system, serving, ref
        self.metrics = ServerMetrics()
        self.log = log or PredictionLog(Workspace(self.root, system), flush_s=serving.log_flush_s)
        self.model: ServedModel | None = None
        self.last_error: str | None = None
        self.routing: Routing | None = None  # the experiment routing traffic, if any
        self.routing_error: str | None = None
        self.shadow = ShadowProcess(self.log, self.metrics, system, serving)
        self.log.tap(self.shadow.tap)  # shadows score copies of the logged instances
        self._swap_lock = threading.Lock()
        self.explore = np.random.default_rng()  # a recommender's exploration share: live only
        self._aliases_mtime = 0.0
        self._routing_seen: tuple | None = None  # the routing file's identity when last read
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # --- model lifecycle ----------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        """Load ``ref`` beside the current model, verify it, then switch (or keep the old)."""
        with self._swap_lock:
            try:
                candidate = self._reuse_or_load()
            except MlsdError as exc:
                self.last_error = exc.message
                self.metrics.swap_failures.inc()
                logger.warning("model %s not loaded: %s", self.ref, exc.message)
                raise
            previous = self.model
            if previous is not None and (candidate.version, candidate.package.folder) == (
                previous.version,
                previous.package.folder,
            ):
                return {"version": previous.label, "swapped": False}
            self.model = candidate  # one assignment: requests see the old or the new
            self.last_error = None
            self.metrics.swaps.inc()
            logger.info("serving %s version %s", self.system, candidate.label)
            return {
                "version": candidate.label,
                "swapped": True,
                "previous": previous.label if previous else None,
            }

    def _reuse_or_load(self) -> ServedModel:
        """The model ``ref`` names: the one already loaded when an arm of the routing table
        is that version and folder (a promoted challenger is not verified twice)."""
        if self.routing is None:
            return load_served(self.root, self.system, self.ref, self.serving)
        version, folder = aliases.resolve(self.root, self.system, self.ref)
        key = identity(version, folder)
        for model in self.routing.models():
            if identity(model.version, model.package.folder) == key:
                return model
        return load_version(self.system, version, folder, self.serving)

    @property
    def follows_routing(self) -> bool:
        """Whether the routing table applies: not when a version is pinned (``--model 3``)."""
        return not str(self.ref).isdigit()

    def _routing_identity(self) -> tuple | None:
        path = routing.routing_path(self.root, self.system)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_ino, stat.st_size)

    def load_routing(self) -> dict[str, Any]:
        """Follow the routing table: build the new :class:`Routing` whole (every package
        verified) and switch to it in one assignment; no table means the champion answers
        everything. A malformed table or a package that fails keeps the previous state,
        counts ``mlsd_routing_failures`` and shows the error in /readyz."""
        if not self.follows_routing:
            return {"routing": None}
        with self._swap_lock:
            self._routing_seen = self._routing_identity()
            try:
                table = routing.read(self.root, self.system)
                if table is None:
                    previous, self.routing_error = self.routing, None
                    self._route(None)
                    if previous is not None:
                        logger.info(
                            "experiment %s ended: the champion answers", previous.experiment
                        )
                    return {"routing": None}
                current = self.routing
                if current is not None and current.table == table:
                    return {"routing": table.experiment, "swapped": False}
                loaded = [self.model, *(current.models() if current else ())]
                candidate = Routing.build(table, self.system, self.serving, loaded)
            except MlsdError as exc:
                self.routing_error = exc.message
                self.metrics.routing_failures.inc()
                logger.warning("routing table not followed: %s", exc.message)
                raise
            self._route(candidate)
            self.routing_error = None
            logger.info(
                "experiment %s routes: %s",
                table.experiment,
                ", ".join(f"{r.arm.name}={r.model.label}@{r.arm.weight:g}" for r in candidate.arms),
            )
            return {"routing": table.experiment, "swapped": True}

    def _route(self, candidate: Routing | None) -> None:
        """Route with ``candidate`` (one assignment: requests see the old table or the new).
        The shadow process loads the new shadows now and reads the new table's rows from the
        first, and the old table's up to the last (a log flush hands them over)."""
        previous = self.routing
        self.shadow.follow(candidate, settled=False)
        self.routing = candidate
        if previous is not None and previous.shadows:
            self.log.flush(timeout=5)
        self.shadow.follow(candidate)

    def start_polling(self) -> None:
        """Follow the alias and the routing table: reload when either published file
        changes (appears, is rewritten, disappears)."""
        if self.serving.poll_s <= 0 or str(self.ref).isdigit():
            return
        path = aliases.aliases_path(self.root, self.system)
        self._aliases_mtime = path.stat().st_mtime if path.exists() else 0.0

        def poll() -> None:
            while not self._stop.wait(self.serving.poll_s):
                mtime = path.stat().st_mtime if path.exists() else 0.0
                if mtime != self._aliases_mtime:
                    self._aliases_mtime = mtime
                    # a failure is logged and counted by load(); the old model keeps serving
                    with suppress(MlsdError):
                        self.load()
                if self._routing_identity() != self._routing_seen:
                    # logged, counted and shown in /readyz by load_routing(); the old serves
                    with suppress(MlsdError):
                        self.load_routing()

        self._poller = threading.Thread(target=poll, name="mlsd-alias-poller", daemon=True)
        self._poller.start()

    def close(self) -> None:
        """Stop polling, score the shadow copies still queued, flush the prediction log."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.log.flush(timeout=10)  # the last lines reach the shadows' copies
        self.shadow.close()
        self.log.close()

    # --- requests -----------------------------------------------------------------------------

    def served(self) -> ServedModel:
        """The model answering now (the champion; the first arm while an experiment runs
        without a loaded champion), or 503 while none is loaded."""
        model = self.model
        if model is None:
            current = self.routing
            if current is not None:
                return current.arms[0].model
            raise HTTPProblem(503, "not_ready", f"no verified model is loaded: {self.last_error}")
        return model

    def model_for(self, label: str) -> ServedModel | None:
        """The loaded model answering as version ``label``: an arm or shadow of the routing
        table, or the champion."""
        current = self.routing
        if current is not None:
            found = current.by_label(label)
            if found is not None:
                return found.model
        model = self.model
        return model if model is not None and model.label == label else None

    def predict(
        self,
        instances: Any,
        request_id: str,
        started: float,
        model: ServedModel | None = None,
    ) -> dict[str, Any]:
        """Validate, score and log one request's instances. While an experiment routes
        traffic, the request's unit picks the arm that answers (unless ``model`` pins one:
        such a request is not part of the experiment); the shadows score the logged copy."""
        scored = self._score(instances, request_id, model)
        model, checked, outputs = scored.model, scored.checked, scored.outputs
        self._log(scored, request_id, started)
        if checked.problems:  # partial: a null in the place of each refused instance
            answers: list[Any] = [None] * len(instances)
            for index, output in zip(checked.accepted, outputs, strict=True):
                answers[index] = output
            return {
                "model_version": model.label,
                "request_id": request_id,
                "predictions": answers,
                "errors": checked.problems,
            }
        return {"model_version": model.label, "request_id": request_id, "predictions": outputs}

    def rank(
        self,
        group: Any,
        items: Any,
        request_id: str,
        started: float,
        k: int | None = None,
    ) -> dict[str, Any]:
        """Score a group's items with a ranking model and answer them ordered by score,
        highest first (equal scores keep the request's order), the top ``k`` when given.
        Validation, routing and the log are the predict path's: the request's unit is
        ``problem.id`` of the first item when the experiment names one, else the group;
        each item is logged as a prediction row with the group and its position."""
        key = _group_key(group)
        scored = self._score(items, request_id, None, unit=key, ranking=True)
        model, checked, outputs = scored.model, scored.checked, scored.outputs
        scores = [o["score"] for o in outputs]
        order = _order(scores)
        shown = order if k is None else order[:k]
        ranks: list[int | None] = [None] * len(order)
        for position, j in enumerate(shown, 1):
            ranks[j] = position
        accepted = checked.accepted
        self._log(scored, request_id, started, group=key, ranks=ranks)
        self.metrics.ranked(len(outputs))
        answer: dict[str, Any] = {
            "model_version": model.label,
            "request_id": request_id,
            "group": group,
            "ranking": [
                {"item": accepted[j], "score": scores[j], "position": position}
                for position, j in enumerate(shown, 1)
            ],
        }
        if checked.problems:  # partial: the valid items ranked, the others named
            answer["errors"] = checked.problems
        return answer

    def _score(
        self,
        instances: Any,
        request_id: str,
        model: ServedModel | None,
        unit: str | None = None,
        ranking: bool = False,
    ) -> _Scored:
        """Choose the model (the arm of ``unit``, default the request id, while an
        experiment routes), validate, and score the accepted instances. ``ranking``: a
        ``/v1/rank`` request, refused by a model of another task; its list is ``items``."""
        noun = "items" if ranking else "instances"
        current = self.routing
        routed = None
        if model is None:
            if current is not None:
                model, routed = current.choose(instances, unit or request_id)
            else:
                model = self.served()
        if isinstance(model, ServedRecommender):
            raise HTTPProblem(
                409,
                "a_recommender",
                f"version {model.label} of {self.system} recommends items to users: use "
                "/v1/recommend",
            )
        if ranking and not model.task.grouped:
            raise HTTPProblem(
                409,
                "not_a_ranking_model",
                f"/v1/rank orders items with a ranking model; version {model.label} of "
                f"{self.system} is a {model.task.name} model: use /v1/predict",
            )
        if isinstance(instances, list) and len(instances) > self.serving.max_instances:
            raise HTTPProblem(
                413,
                f"too_many_{noun}",
                f"{len(instances)} {noun}; at most {self.serving.max_instances} per request",
            )
        checked = model.validator.validate(instances)
        if ranking:
            for p in checked.problems:
                if p["field"] == "instances":
                    p["field"] = "items"  # the request's list is `items`
        if checked.problems or checked.unknown:  # (the hot path skips the call)
            self.metrics.rejected(checked.problems, checked.unknown, model.validator.checkers)
        if checked.problems:
            # a request's problems are bounded by its size, not by what a log or an answer
            # should carry: the first MAX_PROBLEMS are logged and listed
            listed = checked.problems[:MAX_PROBLEMS]
            self.log.rejected(  # queued like predictions: monitoring counts them by field
                request_id=request_id,
                model_version=model.label,
                problems=listed,
                instances=len(instances) if isinstance(instances, list) else 1,
            )
            if not (self.serving.partial and checked.accepted):
                more = len(checked.problems) - len(listed)
                raise HTTPProblem(
                    422,
                    f"invalid_{noun}",
                    f"{len(checked.problems)} problem(s) in the {noun}"
                    + (f"; the first {len(listed)} are listed" if more else ""),
                    listed,
                )
        if not checked.accepted:
            raise HTTPProblem(422, f"no_{noun}", f"the request holds no {noun}")
        outputs = model.predict(checked.columns)
        self.metrics.predicted(model.label, len(outputs))
        return _Scored(model, routed, instances, checked, outputs)

    def _log(
        self,
        scored: _Scored,
        request_id: str,
        started: float,
        group: str | None = None,
        ranks: list[int | None] | None = None,
    ) -> None:
        """Log the scored instances (the shadows' copy: :meth:`ShadowProcess.tap`) and count
        the arm."""
        model, checked, outputs, routed = (
            scored.model,
            scored.checked,
            scored.outputs,
            scored.routed,
        )
        latency_ms = (time.perf_counter() - started) * 1000
        instances = scored.instances
        inputs = [instances[i] for i in checked.accepted]
        positions = checked.accepted if checked.problems else None
        self.log.prediction(
            request_id=request_id,
            model_version=model.label,
            inputs=inputs,
            outputs=outputs,
            latency_ms=latency_ms,
            flags=checked.flags if any(checked.flags) else None,
            positions=positions,
            routed=routed,
            group=group,
            ranks=ranks,
        )
        if routed is not None:
            self.metrics.routed(
                routed["experiment"], routed["arm"], model.label, len(outputs), latency_ms / 1000
            )

    def recommend(self, payload: Any, request_id: str, started: float) -> dict[str, Any]:
        """Answer one user's recommendation request and log each recommended item (user,
        item, stage, score, position) so feedback on a position joins to it. While an
        experiment routes traffic, the user's arm answers and each shadow gets a copy of
        the request."""
        try:
            user, k, exclude, context = recommend_request(payload)
        except RecommendRequestError as exc:
            raise HTTPProblem(exc.status, "invalid_request", exc.message, exc.details) from None
        current, routed = self.routing, None
        if current is not None:  # the user is the unit: the same arm for the whole experiment
            field = current.table.unit_field
            model, routed = current.choose([{field: user}] if field else [], request_id)
        else:
            model = self.served()
        if not isinstance(model, ServedRecommender):
            raise HTTPProblem(
                409,
                "not_a_recommender",
                f"/v1/recommend answers with a recommender (architecture.kind: funnel); "
                f"version {model.label} of {self.system} is a {model.task.name} model: use "
                "/v1/predict",
            )
        answer = model.recommend(user, k, exclude, explore=self.explore)
        items = answer["items"]
        self.metrics.predicted(model.label, len(items))
        if routed is not None and current.shadows:  # leaves with this request's log rows
            self.shadow.submit(current, request_id, {"user": user, "k": k, "exclude": exclude})
        self.log.prediction(
            request_id=request_id,
            model_version=model.label,
            inputs=[  # the context nested: its keys are the caller's, any and many
                {
                    "user": user,
                    "item": i["item"],
                    "stage": i["stage"],
                    "cold_start": answer["cold_start"],
                    **({"context": context} if context else {}),
                }
                for i in items
            ],
            outputs=[{"score": i["score"]} for i in items],
            latency_ms=(time.perf_counter() - started) * 1000,
            routed=routed,
            group=str(user),
            ranks=list(range(1, len(items) + 1)),
        )
        if routed is not None:
            latency_s = time.perf_counter() - started
            self.metrics.routed(
                routed["experiment"], routed["arm"], model.label, len(items), latency_s
            )
        return {"model_version": model.label, "request_id": request_id, **answer}

    def feedback(self, payload: Any) -> dict[str, Any]:
        """Record true labels for earlier request ids; unknown ids are reported back."""
        items = payload if isinstance(payload, list) else [payload]
        problems, recorded, unknown = [], 0, []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
                problems.append(
                    {
                        "instance": index,
                        "field": "request_id/label",
                        "problem": "expected an object with request_id and label",
                    }
                )
                continue
            position = item.get("instance")
            if isinstance(position, float) and position.is_integer():
                position = int(position)  # JSON's 3.0 is the integer 3
            if not isinstance(item["request_id"], str):
                problems.append(
                    {"instance": index, "field": "request_id", "problem": "expected a string"}
                )
                continue
            if position is not None and (
                not isinstance(position, int) or isinstance(position, bool) or position < 0
            ):
                problems.append(
                    {
                        "instance": index,
                        "field": "instance",
                        "problem": "expected the instance's position, an integer from 0",
                    }
                )
                continue
            reward = item.get("reward")
            if reward is not None and not _finite_number(reward):
                problems.append(
                    {
                        "instance": index,
                        "field": "reward",
                        "problem": f"expected a finite number, got {reward!r}"[:200],
                    }
                )
                continue
            request_id = str(item["request_id"])
            if not self.log.known(request_id):
                unknown.append(request_id)
                continue
            self.log.feedback(
                request_id=request_id,
                label=item["label"],
                instance=position,
                reward=None if reward is None else float(reward),
            )
            recorded += 1
        if problems:
            raise HTTPProblem(422, "invalid_feedback", "malformed feedback items", problems)
        self.metrics.feedback.inc(recorded)
        return {"recorded": recorded, "unknown_request_ids": unknown}


def _require_admin(request: Request) -> None:
    """The one check every admin route makes: deny by default, compare in constant time.

    No token configured means 403 for every admin route; a missing, empty or wrong
    bearer token means 401. The comparison is ``hmac.compare_digest`` on bytes.
    """
    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise HTTPProblem(403, "admin_disabled", f"set {TOKEN_ENV} to enable admin routes")
    given = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, f"Bearer {token}".encode("utf-8", "surrogateescape")):
        raise HTTPProblem(401, "unauthorized", "a valid bearer token is required")


def create_app(server: Server) -> Edge:
    """The ASGI app around ``server`` (loads the model at start-up, flushes the log at exit)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if server.model is None:
            with suppress(MlsdError):  # /readyz says why; /healthz stays up
                await run_in_threadpool(server.load)
        if server.routing is None and server.routing_error is None:
            with suppress(MlsdError):  # /readyz shows the routing error; the champion serves
                await run_in_threadpool(server.load_routing)
        server.start_polling()
        yield
        server.close()

    app = FastAPI(title=f"mlsd: {server.system}", version="1", lifespan=lifespan)
    # the document follows the served model (its inputs), so it is built on each request
    app.openapi = lambda: openapi_document(app, server)  # type: ignore[method-assign]

    async def body_of(request: Request) -> Any:
        headers = dict(request.scope["headers"])
        return _parse(await _read_body(headers, request.receive, server.serving.max_body_bytes))

    def request_id(request: Request) -> str:
        return _request_id(dict(request.scope["headers"]))

    async def score(
        request: Request, instances: Any, rid: str, model: ServedModel | None = None
    ) -> dict[str, Any]:
        return await _score(server, instances, rid, request.scope["mlsd.started"], model)

    @app.exception_handler(HTTPProblem)
    async def problem(request: Request, exc: HTTPProblem):
        return _answer_problem(request.url.path, exc)

    @app.exception_handler(V2Error)
    async def v2_problem(request: Request, exc: V2Error):
        return _json({"error": exc.message}, exc.status)

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return _answer_problem(
            request.url.path, HTTPProblem(404, "not_found", f"no route {request.url.path}")
        )

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc):
        allow = (getattr(exc, "headers", None) or {}).get("Allow", "")
        answer = _answer_problem(
            request.url.path,
            HTTPProblem(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed on {request.url.path}"
                + (f"; allowed: {allow}" if allow else ""),
            ),
        )
        if allow:
            answer.headers["allow"] = allow
        return answer

    @app.post("/v1/predict", summary="Score instances")
    async def predict(request: Request):
        """Documentation only: the Edge answers this route before FastAPI sees it."""
        payload = await body_of(request)
        rid = request_id(request)
        result = await score(request, _instances(payload), rid)
        return _json(result, headers={"x-request-id": rid})

    @app.post("/v1/rank", summary="Rank a group's items")
    async def rank(request: Request):
        """Documentation only: the Edge answers this route before FastAPI sees it."""
        payload = await body_of(request)
        rid = request_id(request)
        result = await _rank(server, payload, rid, request.scope["mlsd.started"])
        return _json(result, headers={"x-request-id": rid})

    @app.post("/v1/recommend", summary="Recommend items to a user")
    async def recommend(request: Request):
        """Documentation only: the Edge answers this route before FastAPI sees it."""
        payload = await body_of(request)
        rid = request_id(request)
        result = server.recommend(payload, rid, request.scope["mlsd.started"])
        return _json(result, headers={"x-request-id": rid})

    @app.post("/v1/feedback", summary="Record true labels")
    async def feedback(request: Request):
        return _json(server.feedback(await body_of(request)))

    @app.get("/v1/models", summary="What is serving")
    async def models():
        model = server.served()
        manifest = model.package.manifest
        if isinstance(model, ServedRecommender):
            return _json(
                {
                    "name": server.system,
                    "version": model.label,
                    "ref": server.ref,
                    "package": str(model.package.folder),
                    "task": "recommendation",
                    "chosen": model.package.recommender.chosen,
                    "created_at": manifest.get("created_at"),
                    "loaded_at": model.loaded_at,
                    "metrics": model.package.metrics,
                }
            )
        return _json(
            {
                "name": server.system,
                "version": model.label,  # a string, as /readyz and the V2 routes say it
                "ref": server.ref,
                "package": str(model.package.folder),
                "task": model.task.name,
                "created_at": manifest.get("created_at"),
                "loaded_at": model.loaded_at,
                "signature": model.package.signature,
                "metrics": model.package.metrics,
                "experiment": server.routing.describe() if server.routing else None,
            }
        )

    @app.get("/healthz", summary="The process is alive")
    async def healthz():
        return _json({"status": "alive"})

    @app.get("/readyz", summary="A verified model is loaded")
    async def readyz():
        model, current = server.model, server.routing
        extra: dict[str, Any] = {}
        if current is not None:
            extra["routing"] = current.describe()
        if server.routing_error is not None:
            extra["routing_error"] = server.routing_error
        # a log whose disk refuses rows degrades, and the server keeps answering
        extra["log"] = server.log.health
        if model is None and current is None:
            return _json({"status": "not_ready", "reason": server.last_error, **extra}, 503)
        return _json({"status": "ready", "model_version": server.served().label, **extra})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        body, content_type = server.metrics.render(server.log)
        return Response(body, media_type=content_type)

    @app.post("/v1/admin/reload", summary="Load the alias's current version now")
    async def reload(request: Request):
        _require_admin(request)
        try:
            loaded = await run_in_threadpool(server.load)
            with suppress(MlsdError):  # a failing table is counted and shown in /readyz
                await run_in_threadpool(server.load_routing)
            return _json({**loaded, "routing_error": server.routing_error})
        except ServingError as exc:
            raise HTTPProblem(409, "verification_failed", exc.message) from None
        except MlsdError as exc:
            raise HTTPProblem(409, "reload_failed", exc.message) from None

    _add_v2_routes(app, server, body_of, request_id, score)

    return Edge(app, server)


def _add_v2_routes(app: FastAPI, server: Server, body_of, request_id, score) -> None:
    """The Open Inference Protocol V2 routes (``mlsd.serving.v2`` does the encoding)."""
    # the installed distribution's version (importing the mlsd package itself would pull
    # its lazy API into the serving path's import graph)
    try:
        version = importlib.metadata.version("mlsd")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"

    @app.get("/v2", summary="V2: server metadata")
    async def v2_server():
        return _json(v2.server_metadata(version))

    @app.get("/v2/health/live", summary="V2: the server is live")
    async def v2_live():
        return _json({"live": True})

    @app.get("/v2/health/ready", summary="V2: the server is ready")
    async def v2_ready():
        ready = server.model is not None or server.routing is not None
        return _json({"ready": ready}, 200 if ready else 503)

    def v2_model(name: str, version: str | None = None) -> ServedModel:
        if name != server.system:
            raise V2Error(f"unknown model {name!r}; this server serves {server.system!r}", 404)
        model = server.served()
        if isinstance(model, ServedRecommender):
            raise V2Error(f"{name!r} is a recommender: use /v1/recommend", 404)
        if version is not None and version != model.label:
            other = server.model_for(version)  # an arm or shadow of the running experiment
            if other is not None:
                return other
            raise V2Error(
                f"model {name!r} has no version {version!r}; version {model.label!r} is served",
                404,
            )
        return model

    async def metadata(request: Request, name: str, version: str | None):
        model = v2_model(name, version)
        return _json(v2.model_metadata(name, model.label, model.package.signature, model.task))

    async def ready(request: Request, name: str, version: str | None):
        v2_model(name, version)
        return _json({"name": name, "ready": True})

    async def config(request: Request, name: str, version: str | None):
        model = v2_model(name, version)
        return _json(
            v2.model_config(
                name,
                model.label,
                model.package.signature,
                model.task,
                server.serving.max_instances,
            )
        )

    async def infer(request: Request, name: str, version: str | None):
        model = v2_model(name, version)
        headers = dict(request.scope["headers"])
        body = await _read_body(headers, request.receive, server.serving.max_body_bytes)
        header_length = headers.get(v2.HEADER_LENGTH.encode())
        payload, binary = v2.split_body(
            body, header_length.decode("latin-1") if header_length is not None else None
        )
        wanted = v2.requested_outputs(payload, model.task)
        given = payload.get("id", "")
        if not isinstance(given, str):
            raise V2Error("id must be a string")
        if given and (problem := request_id_problem(given)):
            raise V2Error(f"id {problem}")
        rid = given or request_id(request)
        # unversioned: routed like /v1/predict; a version: that model, outside the experiment
        pinned = model if version is not None else None
        result = await score(request, v2.instances(payload, binary), rid, pinned)
        model = server.model_for(result["model_version"]) or model
        tensors = v2.output_tensors(
            result["predictions"], model.task, model.package.signature["output"].get("classes")
        )
        answer = {"model_name": name, "model_version": result["model_version"], "id": rid}
        content, extra = v2.encode_answer(answer, tensors, wanted)
        return Response(content, media_type=extra.pop("content-type"), headers=extra)

    model_routes = [
        ("", "GET", metadata, "V2: model metadata"),
        ("/ready", "GET", ready, "V2: the model is ready"),
        ("/config", "GET", config, "V2: model configuration"),
        ("/infer", "POST", infer, "V2: score input tensors"),
    ]
    for suffix, method, endpoint, summary in model_routes:
        app.add_api_route(
            "/v2/models/{name}" + suffix,
            _unversioned(endpoint),
            methods=[method],
            summary=summary,
        )
        app.add_api_route(
            "/v2/models/{name}/versions/{version}" + suffix,
            _versioned(endpoint),
            methods=[method],
            summary=summary + " (one version)",
        )


def _unversioned(endpoint):
    async def route(request: Request, name: str):
        return await endpoint(request, name, None)

    return route


def _versioned(endpoint):
    async def route(request: Request, name: str, version: str):
        return await endpoint(request, name, version)

    return route


async def _score(
    server: Server,
    instances: Any,
    rid: str,
    started: float,
    model: ServedModel | None = None,
) -> dict[str, Any]:
    """Score inline when small; large requests go to a worker thread, off the event loop."""
    if isinstance(instances, list) and len(instances) > INLINE_INSTANCES:
        return await run_in_threadpool(server.predict, instances, rid, started, model)
    return server.predict(instances, rid, started, model)


async def _rank(server: Server, payload: Any, rid: str, started: float) -> dict[str, Any]:
    """Answer a ``/v1/rank`` body; large item lists are scored in a worker thread."""
    group, items, k = _ranking_request(payload)
    if isinstance(items, list) and len(items) > INLINE_INSTANCES:
        return await run_in_threadpool(server.rank, group, items, rid, started, k)
    return server.rank(group, items, rid, started, k)


def _ranking_request(payload: Any) -> tuple[Any, Any, int | None]:
    """``(group, items, k)`` of a ``/v1/rank`` body: 400 when it is not
    ``{"group", "items"}``, 422 naming ``group`` or ``k`` when either is not one."""
    if not isinstance(payload, dict) or "items" not in payload or "group" not in payload:
        raise HTTPProblem(
            400, "invalid_request", 'expected {"group": <id>, "items": [{...}, ...], "k": <n>}'
        )
    group, k = payload["group"], payload.get("k")
    problems = []
    if not (
        isinstance(group, str)
        or (isinstance(group, int) and not isinstance(group, bool))
        or (isinstance(group, float) and group.is_integer())
    ):
        problems.append(
            {
                "instance": None,
                "field": "group",
                "problem": f"expected a string or an integer, got {group!r}"[:200],
            }
        )
    if isinstance(k, float) and k.is_integer():
        k = int(k)  # JSON's 3.0 is the integer 3
    if k is not None and (not isinstance(k, int) or isinstance(k, bool) or k < 1):
        problem = f"expected an integer from 1 (how many items to return), got {k!r}"
        problems.append({"instance": None, "field": "k", "problem": problem[:200]})
    if problems:
        raise HTTPProblem(422, "invalid_request", "the ranking request is malformed", problems)
    return group, payload["items"], k


def _finite_number(value: Any) -> bool:
    """A JSON number that is a finite float (not a boolean, not beyond float's range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _instances(payload: Any) -> Any:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise HTTPProblem(400, "invalid_request", 'expected {"instances": [{...}, ...]}')
    return payload["instances"]


_JSON_HEADERS = [(b"content-type", b"application/json")]
_FAST = frozenset({"/v1/predict", "/v1/rank", "/v1/recommend"})  # answered by the Edge
_INTERNAL = orjson.dumps(
    {"error": {"code": "internal", "message": "internal error", "details": []}}
)
_V2_INTERNAL = orjson.dumps({"error": "internal error"})


class Edge:
    """The outermost ASGI app: measures every request, turns a bug into a JSON 500 instead of
    a stack trace, and answers ``POST`` to ``/v1/predict``, ``/v1/rank`` and ``/v1/recommend`` itself, without
    FastAPI's routing and middleware stack (about four times the cost of scoring one row)."""

    def __init__(self, app: FastAPI, server: Server):
        self.app, self.server = app, server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # lifespan
            return
        started = scope["mlsd.started"] = time.perf_counter()
        status = 500
        started_response = False

        async def send_status(message: dict) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
            await send(message)

        fast = scope["path"] in _FAST and scope["method"] == "POST"
        try:
            if fast:
                status = await self._answer(scope, receive, send, scope["path"])
            else:
                await self.app(scope, receive, send_status)
        except Exception:  # a bug, never an input
            logger.exception("unhandled error on %s", scope["path"])
            if not started_response:
                status = 500
                await send({"type": "http.response.start", "status": 500, "headers": _JSON_HEADERS})
                body = _V2_INTERNAL if _is_v2(scope["path"]) else _INTERNAL
                await send({"type": "http.response.body", "body": body})
        route = scope["path"] if fast else getattr(scope.get("route"), "path", "unmatched")
        self.server.metrics.observe(route, status, time.perf_counter() - started)

    async def _answer(self, scope: dict, receive: Any, send: Any, path: str) -> int:
        """``POST`` to ``/v1/predict``, ``/v1/rank`` or ``/v1/recommend``, answered here."""
        headers = dict(scope["headers"])
        rid = ""
        try:
            rid = _request_id(headers)
            body = await _read_body(headers, receive, self.server.serving.max_body_bytes)
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:  # NaN or Infinity: the lenient parser
                payload = _parse(body)
            if path == "/v1/rank":
                result = await _rank(self.server, payload, rid, scope["mlsd.started"])
            elif path == "/v1/recommend":
                result = self.server.recommend(payload, rid, scope["mlsd.started"])
            else:
                result = await _score(self.server, _instances(payload), rid, scope["mlsd.started"])
            status, payload = 200, orjson.dumps(result)
        except HTTPProblem as exc:
            status, payload = (
                exc.status,
                orjson.dumps(
                    {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
                ),
            )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *_JSON_HEADERS,
                    (b"content-length", str(len(payload)).encode()),
                    *([(b"x-request-id", rid.encode())] if rid else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return status


def _request_id(headers: dict[bytes, bytes]) -> str:
    """The client's X-Request-ID, else a new random one."""
    given = headers.get(b"x-request-id", b"").strip()
    if not given:
        return f"{_ids.getrandbits(128):032x}"
    if problem := request_id_problem(given.decode("latin-1")):
        raise HTTPProblem(400, "invalid_request_id", f"the X-Request-ID header {problem}")
    return given.decode("ascii")


# Request ids need to be unique, not secret: a PRNG seeded from the OS once (and again in a
# forked child) instead of uuid4's os.urandom system call per request.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


async def _read_body(headers: dict, receive: Any, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPProblem(
            413,
            "body_too_large",
            f"the body has {int(declared)} bytes; at most {limit} are accepted",
        )
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPProblem(400, "disconnected", "the client went away mid-request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPProblem(
                413,
                "body_too_large",
                f"the body has over {limit} bytes; at most {limit} are accepted",
            )
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


# --- OpenAPI: what the server does, from the served model's signature ---------------------------

_V1_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array"},
            },
        }
    },
}
_V2_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}
_REASONS = {
    400: "The body is not the JSON the route expects, or the X-Request-ID is not valid",
    401: "A valid bearer token is required",
    403: f"Admin routes are disabled: set {TOKEN_ENV}",
    404: "No such model or version",
    405: "The method is not allowed on this route (see the Allow header)",
    409: "The model could not be loaded or failed verification; the old one keeps serving",
    413: "The body or the number of instances is over the server's limit",
    422: "Instances or feedback items fail validation (each problem names instance and field)",
    503: "No verified model is loaded yet",
}
_BOOL_PATTERN = r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|1|0)\s*$"


def _errors(statuses: list[int], schema: dict) -> dict:
    out = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": _REASONS[status],
            "content": {"application/json": {"schema": schema}},
        }
        if status == 405:
            answer["headers"] = {
                "Allow": {
                    "description": "the methods this route allows",
                    "schema": {"type": "string"},
                }
            }
        out[str(status)] = answer
    return out


def _ok(schema: dict, description: str = "OK", media: str = "application/json") -> dict:
    return {"200": {"description": description, "content": {media: {"schema": schema}}}}


def _value_schema(field: dict, serving: ServingSpec) -> dict:
    """What one instance field takes: its signature type; null is a missing value (imputed).
    Out-of-range and unseen values are flagged under ``serving.on_invalid: flag`` (the
    default), refused under ``reject``."""
    kind = field["type"]
    strict = serving.on_invalid == "reject"
    if kind == "numeric":
        schema: dict[str, Any] = {"type": ["number", "null"]}
        if strict:
            for key, bound in (("min", "minimum"), ("max", "maximum")):
                if field.get(key) is not None:
                    schema[bound] = field[key]
    elif kind == "boolean":
        schema = {
            "anyOf": [
                {"type": "boolean"},
                {"enum": [0, 1]},
                {"type": "string", "pattern": _BOOL_PATTERN},
                {"type": "null"},
            ]
        }
    elif kind == "datetime":
        schema = {"type": ["string", "null"], "format": "date-time"}
    else:
        domain = field.get("domain")
        if strict and domain:
            schema = {"enum": [*dict.fromkeys([*domain, *map(str, domain)]), None]}
        else:
            schema = {"type": ["string", "number", "boolean", "null"]}
    described = {
        "numeric": "a number",
        "boolean": "true or false",
        "datetime": "an ISO 8601 date-time",
    }.get(kind, "a category")
    seen = field.get("domain") if kind == "categorical" else None
    span = (
        f"; training range [{field.get('min')}, {field.get('max')}]"
        if kind == "numeric"
        else (f"; known: {', '.join(map(str, seen[:20]))}" if seen else "")
    )
    nulls = "had missing values" if field.get("nullable") else "had no missing values"
    schema["description"] = f"{described}{span}; null is imputed (training data {nulls})"
    return schema


def openapi_document(app: FastAPI, server: Server) -> dict[str, Any]:
    """FastAPI's document with each operation's request body, every status it answers with
    its error body, and its content types; instances follow the served model's signature."""
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    model, serving = server.model, server.serving
    signature = model.package.signature if isinstance(model, ServedModel) else None
    inputs = signature["inputs"] if signature else []
    values = {i["name"]: _value_schema(i, serving) for i in inputs}
    instance: dict[str, Any] = {"type": "object"}
    if signature:
        instance |= {"required": [i["name"] for i in inputs], "properties": values}
        if serving.unknown_fields == "reject":
            instance["additionalProperties"] = False
    predict_body = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "items": instance,
                "minItems": 1,
                "maxItems": serving.max_instances,
            }
        },
    }
    feedback_item = {
        "type": "object",
        "required": ["request_id", "label"],
        "properties": {
            "request_id": {"type": "string", "description": "the id a prediction answered"},
            "label": {"description": "the true label (or value) of that prediction"},
            "instance": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "which instance of the request (default: all)",
            },
            "reward": {
                "type": ["number", "null"],
                "description": "a numeric reward for that prediction (a finite number), "
                "what a bandit or a declared online metric counts",
            },
        },
    }
    predictions = {
        "type": "object",
        "required": ["model_version", "request_id", "predictions"],
        "properties": {
            "model_version": {"type": "string"},
            "request_id": {"type": "string"},
            "predictions": {"type": "array", "items": {"type": ["object", "null"]}},
            "errors": {"type": "array"},
        },
    }
    v1_common = [405, 413]
    request_id_header = {
        "name": "X-Request-ID",
        "in": "header",
        "required": False,
        "schema": REQUEST_ID_SCHEMA,
        "description": "the request's id in the answer and the log, which feedback names: "
        f"at most {MAX_REQUEST_ID} printable ASCII characters (default: a new one)",
    }
    rank_body = {
        "type": "object",
        "required": ["group", "items"],
        "properties": {
            "group": {
                "anyOf": [{"type": "string"}, {"type": "integer"}],
                "description": "the group the items belong to (a query, a user's session): "
                "logged with each item, and the routing unit unless the experiment names one",
            },
            "items": {
                "type": "array",
                "items": instance,
                "minItems": 1,
                "maxItems": serving.max_instances,
                "description": "the candidates to order, each with the model's inputs",
            },
            "k": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "return only the top k items (default: all)",
            },
        },
    }
    ranking = {
        "type": "object",
        "required": ["model_version", "request_id", "group", "ranking"],
        "properties": {
            "model_version": {"type": "string"},
            "request_id": {"type": "string"},
            "group": {"type": ["string", "integer", "number"]},
            "ranking": {
                "type": "array",
                "description": "by score, highest first; equal scores keep the request's order",
                "items": {
                    "type": "object",
                    "required": ["item", "score", "position"],
                    "properties": {
                        "item": {"type": "integer", "description": "the item's index in items"},
                        "score": {"type": ["number", "null"]},
                        "position": {"type": "integer", "minimum": 1},
                    },
                },
            },
            "errors": {"type": "array"},
        },
    }
    rank_errors = _errors([400, *v1_common, 409, 422, 503], _V1_ERROR)
    recommend_errors = _errors([400, *v1_common, 409, 422, 503], _V1_ERROR)
    recommend_errors["409"]["description"] = "The served model is not a recommender"
    rank_errors["409"]["description"] = "The served model is not a ranking model"
    any_object = {"type": "object"}
    json_body = {"required": True, "content": {"application/json": {"schema": predict_body}}}
    name = {"type": "string"}
    version = {"type": "string"}
    if model is not None:
        name, version = (
            {"type": "string", "enum": [server.system]},
            {
                "type": "string",
                "enum": [
                    model.label,
                    *(
                        v
                        for v in (server.routing.describe()["versions"] if server.routing else ())
                        if v != model.label
                    ),
                ],
            },
        )
    operations: dict[tuple[str, str], dict[str, Any]] = {
        ("/v1/predict", "post"): {
            "requestBody": json_body,
            "parameters": [request_id_header],
            "responses": _ok(predictions) | _errors([400, *v1_common, 422, 503], _V1_ERROR),
        },
        ("/v1/rank", "post"): {
            "description": "Order a group's items by the ranking model's score. Answered "
            "by ranking models only (409 otherwise: /v1/predict scores any model's rows).",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": rank_body}},
            },
            "parameters": [request_id_header],
            "responses": _ok(ranking) | rank_errors,
        },
        ("/v1/recommend", "post"): {
            "description": "A user's top k items from a recommender (architecture.kind: "
            "funnel); 409 from any other model.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": RECOMMEND_REQUEST}},
            },
            "parameters": [request_id_header],
            "responses": _ok(RECOMMEND_RESPONSE) | recommend_errors,
        },
        ("/v1/feedback", "post"): {
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [feedback_item, {"type": "array", "items": feedback_item}]
                        }
                    }
                },
            },
            "responses": _ok(
                {
                    "type": "object",
                    "required": ["recorded", "unknown_request_ids"],
                    "properties": {
                        "recorded": {"type": "integer"},
                        "unknown_request_ids": {"type": "array", "items": {"type": "string"}},
                    },
                }
            )
            | _errors([400, *v1_common, 422], _V1_ERROR),
        },
        ("/v1/models", "get"): {"responses": _ok(any_object) | _errors([405, 503], _V1_ERROR)},
        ("/healthz", "get"): {"responses": _ok(any_object) | _errors([405], _V1_ERROR)},
        ("/readyz", "get"): {
            "responses": _ok(any_object)
            | {
                "503": {
                    "description": _REASONS[503],
                    "content": {"application/json": {"schema": any_object}},
                }
            }
            | _errors([405], _V1_ERROR)
        },
        ("/metrics", "get"): {
            "responses": _ok(
                {"type": "string"},
                "Prometheus text exposition format",
                "text/plain",
            )
            | _errors([405], _V1_ERROR)
        },
        ("/v1/admin/reload", "post"): {
            "security": [{"bearer": []}],
            "responses": _ok(any_object) | _errors([401, 403, 405, 409], _V1_ERROR),
        },
        ("/v2", "get"): {"responses": _ok(v2.SERVER_METADATA_SCHEMA) | _errors([405], _V2_ERROR)},
        ("/v2/health/live", "get"): {"responses": _ok(any_object) | _errors([405], _V2_ERROR)},
        ("/v2/health/ready", "get"): {
            "responses": _ok(any_object)
            | {
                "503": {
                    "description": _REASONS[503],
                    "content": {"application/json": {"schema": any_object}},
                }
            }
            | _errors([405], _V2_ERROR)
        },
    }
    infer_schema = (
        v2.infer_request_schema(inputs, values, model.task)
        if isinstance(model, ServedModel)
        else any_object
    )
    infer_doc = (
        "Open Inference Protocol V2. Besides this JSON form, the binary tensor data extension "
        "is accepted: the header Inference-Header-Content-Length gives the JSON part's size, "
        "inputs with parameters.binary_data_size take raw little-endian bytes from what "
        "follows (BYTES: 4-byte length, then the bytes), and outputs asked as binary_data "
        "come back the same way (application/octet-stream). Any number of rows per tensor."
    )
    for base, params in (
        ("/v2/models/{name}", [("name", name)]),
        ("/v2/models/{name}/versions/{version}", [("name", name), ("version", version)]),
    ):
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": schema} for p, schema in params
        ]
        common = _errors([404, 405, 503], _V2_ERROR)
        operations[(base, "get")] = {
            "parameters": parameters,
            "responses": _ok(v2.MODEL_METADATA_SCHEMA) | common,
        }
        operations[(base + "/ready", "get")] = {
            "parameters": parameters,
            "responses": _ok(any_object) | common,
        }
        operations[(base + "/config", "get")] = {
            "parameters": parameters,
            "responses": _ok(v2.MODEL_CONFIG_SCHEMA) | common,
        }
        operations[(base + "/infer", "post")] = {
            "parameters": parameters,
            "description": infer_doc,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": infer_schema}},
            },
            "responses": {
                "200": {
                    "description": "the output tensors",
                    "content": {
                        "application/json": {"schema": v2.INFER_RESPONSE_SCHEMA},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                }
            }
            | _errors([400, 404, 405, 413, 422, 503], _V2_ERROR),
        }
    for (path, method), spec in operations.items():
        operation = doc["paths"].get(path, {}).get(method)
        if operation is None:
            continue
        operation.update(spec)
    doc.setdefault("components", {}).pop("schemas", None)  # FastAPI's unused defaults
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
