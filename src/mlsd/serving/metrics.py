"""Prometheus metrics of the prediction server, in a registry of its own."""

from __future__ import annotations

import bisect
import itertools
import re
import threading
from collections.abc import Collection
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

# Latency buckets from 0.25 ms: single-row predictions take about a millisecond.
_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

_ITEM_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)

# Field names a model does not know come from clients: each new one would be a new time
# series held forever, so only the first few plain, short ones get a label of their own.
MAX_UNKNOWN_FIELD_LABELS = 32
OTHER_FIELD = "_other"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class ServerMetrics:
    """Requests by route and status, latency, predictions by model version, validation
    failures and unknown fields by field, items per ranking request, feedback, model swaps and the log's health; while
    an experiment routes traffic (step 8), requests, latency and predictions per arm,
    shadow predictions, drops and errors, and routing tables that failed to load."""

    def __init__(self) -> None:
        # label lookups cost more than the counting: keep the children
        self._by_route: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._by_version: dict[str, Any] = {}
        self._by_shadow: dict[str, Any] = {}
        self._unknown_labels: set[str] = set()
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlsd_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "mlsd_request_latency_seconds",
            "Request latency by route",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "mlsd_predictions", "Predictions by model version", ["model_version"], registry=r
        )
        self.validation_failures = Counter(
            "mlsd_validation_failures", "Rejected instance fields", ["field"], registry=r
        )
        self.unknown_fields = Counter(
            "mlsd_unknown_fields", "Fields the model does not know", ["field"], registry=r
        )
        self.feedback = Counter("mlsd_feedback", "Labels recorded by /v1/feedback", registry=r)
        self.swaps = Counter("mlsd_model_swaps", "Models loaded and switched to", registry=r)
        self.swap_failures = Counter(
            "mlsd_model_swap_failures", "Models that failed to load or verify", registry=r
        )
        self.arms = _ArmSeries()
        r.register(self.arms)
        self.shadow_predictions = Counter(
            "mlsd_shadow_predictions", "Predictions scored by each shadow", ["arm"], registry=r
        )
        self.shadow_dropped = Counter(
            "mlsd_shadow_dropped",
            "Instances (or recommendation requests) not copied to the shadows: their queue "
            "was full",
            registry=r,
        )
        self.shadow_errors = Counter(
            "mlsd_shadow_errors",
            "Shadow copies that failed (the answers were not affected)",
            registry=r,
        )
        self.routing_failures = Counter(
            "mlsd_routing_failures",
            "Routing tables that were malformed or named a package that failed verification",
            registry=r,
        )
        self.rank_items = Histogram(
            "mlsd_rank_items",
            "Items scored per /v1/rank request (the candidate lists' lengths)",
            buckets=_ITEM_BUCKETS,
            registry=r,
        )
        self.log_rows = Gauge(
            "mlsd_log_rows",
            "Prediction and feedback log rows by outcome (held: in memory while the disk "
            "refuses them)",
            ["log", "outcome"],
            registry=r,
        )
        self.log_degraded = Gauge(
            "mlsd_log_degraded",
            "1 while the log's disk refuses rows (full, read-only), else 0",
            ["log"],
            registry=r,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency."""
        children = self._by_route.get((route, status))
        if children is None:
            children = self._by_route[(route, status)] = (
                self.requests.labels(route=route, status=str(status)),
                self.latency.labels(route=route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def predicted(self, model_version: str, n: int) -> None:
        """Count ``n`` predictions of ``model_version``."""
        child = self._by_version.get(model_version)
        if child is None:
            child = self._by_version[model_version] = self.predictions.labels(
                model_version=model_version
            )
        child.inc(n)

    def field_label(self, name: Any, known: Collection[str]) -> str:
        """``name`` as a metric label: a field the model knows, ``instances``/``items`` or
        ``None`` keeps its name, as do the first ``MAX_UNKNOWN_FIELD_LABELS`` unknown names
        of at most 64 plain characters; any other is ``_other``."""
        name = str(name)
        if name in known or name in ("instances", "items", "None"):
            return name
        if name not in self._unknown_labels:
            full = len(self._unknown_labels) >= MAX_UNKNOWN_FIELD_LABELS
            if full or not _PLAIN_NAME.fullmatch(name):
                return OTHER_FIELD
            self._unknown_labels.add(name)
        return name

    def rejected(self, problems: list[dict], unknown: dict[str, int], known: Collection[str]):
        """Count a request's refused fields and the fields the model does not know."""
        for name, count in unknown.items():
            self.unknown_fields.labels(field=self.field_label(name, known)).inc(count)
        for p in problems:
            self.validation_failures.labels(field=self.field_label(p["field"], known)).inc()

    def ranked(self, n: int) -> None:
        """Count one ranking request of ``n`` scored items."""
        self.rank_items.observe(n)

    def routed(self, experiment: str, arm: str, model_version: str, n: int, seconds: float) -> None:
        """Count one request of ``arm`` (``n`` predictions) and its latency."""
        self.arms.count(experiment, arm, model_version, n, seconds)

    def shadowed(self, arm: str, n: int) -> None:
        """Count ``n`` predictions of the shadow ``arm``."""
        child = self._by_shadow.get(arm)
        if child is None:
            child = self._by_shadow[arm] = self.shadow_predictions.labels(arm=arm)
        child.inc(n)

    def render(self, log: Any = None) -> tuple[bytes, str]:
        """The text exposition format (and its content type)."""
        for name, counters in (getattr(log, "stats", None) or {}).items():
            for outcome in ("written", "dropped"):
                if outcome in counters:
                    self.log_rows.labels(log=name, outcome=outcome).set(counters[outcome])
        for name, state in (getattr(log, "health", None) or {}).get("writers", {}).items():
            self.log_degraded.labels(log=name).set(0 if state["ok"] else 1)
            self.log_rows.labels(log=name, outcome="held").set(state.get("held", 0))
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _ArmSeries:
    """The per-arm series of a running experiment (requests, predictions, latency), counted
    in plain numbers under one lock and turned into metric families when scraped: every
    routed request updates them, and prometheus_client's labelled children cost that path
    about 3 µs a request (a lock and a check per series)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (experiment, arm, model_version) -> [requests, predictions, seconds, per bucket]
        self._counts: dict[tuple[str, str, str], list] = {}

    def count(self, experiment: str, arm: str, model_version: str, n: int, seconds: float):
        """One request of ``arm`` with ``n`` predictions, answered in ``seconds``."""
        key = (experiment, arm, model_version)
        with self._lock:
            c = self._counts.get(key)
            if c is None:
                c = self._counts[key] = [0, 0, 0.0, [0] * (len(_BUCKETS) + 1)]
            c[0] += 1
            c[1] += n
            c[2] += seconds
            c[3][bisect.bisect_left(_BUCKETS, seconds)] += 1

    def collect(self):
        """The families ``mlsd_arm_requests`` (by experiment, arm and version),
        ``mlsd_arm_predictions`` and ``mlsd_arm_latency_seconds`` (by arm)."""
        with self._lock:
            counts = {k: [c[0], c[1], c[2], list(c[3])] for k, c in self._counts.items()}
        requests = CounterMetricFamily(
            "mlsd_arm_requests",
            "Requests answered by each arm of the running experiment",
            labels=["experiment", "arm", "model_version"],
        )
        by_arm: dict[str, list] = {}
        for (experiment, arm, version), (n, predicted, seconds, buckets) in counts.items():
            requests.add_metric([experiment, arm, version], n)
            total = by_arm.setdefault(arm, [0, 0.0, [0] * len(buckets)])
            total[0] += predicted
            total[1] += seconds
            total[2] = [a + b for a, b in zip(total[2], buckets, strict=True)]
        predictions = CounterMetricFamily(
            "mlsd_arm_predictions", "Predictions (instances) by arm", labels=["arm"]
        )
        latency = HistogramMetricFamily(
            "mlsd_arm_latency_seconds",
            "Server-side latency of the requests each arm answered",
            labels=["arm"],
        )
        bounds = [*map(floatToGoString, _BUCKETS), "+Inf"]
        for arm, (predicted, seconds, buckets) in by_arm.items():
            predictions.add_metric([arm], predicted)
            cumulative = list(itertools.accumulate(buckets))
            latency.add_metric([arm], list(zip(bounds, cumulative, strict=True)), seconds)
        return [requests, predictions, latency]
