"""Alerts: a threshold crossed in a monitoring window, recorded once with its evidence.

Each :class:`Alert` becomes one row of the workspace's event log (kind ``drift_alert``,
``quality_alert``, ``performance_alert``, ``latency_alert`` or ``staleness_alert``) with
the statistic, the p-value or distance, the window and the sample sizes. An alert has a
key (system, model version, window, check, subject): running ``mlsd monitor`` again on the
same log finds its alerts already recorded and neither records nor sends them twice.
New alerts are POSTed as JSON to the spec's webhook, with a short timeout; a webhook that
fails is reported in the result, never raised.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mlsd.events import DRIFT_ALERT, EventLog, jsonable

QUALITY_ALERT = "quality_alert"
PERFORMANCE_ALERT = "performance_alert"
LATENCY_ALERT = "latency_alert"
STALENESS_ALERT = "staleness_alert"
KINDS = (DRIFT_ALERT, QUALITY_ALERT, PERFORMANCE_ALERT, LATENCY_ALERT, STALENESS_ALERT)


@dataclass
class Alert:
    """One threshold crossed: what (``check`` on ``subject``), where (model version and
    window), the sentence a person reads, and the figures behind it."""

    kind: str  # one of KINDS
    check: str  # feature_drift, prediction_drift, label_drift, missing_rate, guardrail, ...
    subject: str | None  # the column or metric concerned, if any
    message: str
    model_version: str
    window: dict[str, Any]  # {index, start, end, n}
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Identity of the alert across runs of ``mlsd monitor``."""
        parts = [
            self.kind,
            self.check,
            self.subject or "",
            self.model_version,
            repr(self.window.get("start_ts", self.window.get("start"))),
            repr(self.window.get("end_ts", self.window.get("end"))),
            str(self.window.get("n")),
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON, as stored in the event log and sent to the webhook."""
        return jsonable(
            {
                "key": self.key,
                "kind": self.kind,
                "check": self.check,
                "subject": self.subject,
                "message": self.message,
                "model_version": self.model_version,
                "window": self.window,
                "evidence": self.evidence,
            }
        )


def post_json(url: str, payload: Any, *, timeout: float = 2.0) -> int:
    """POST ``payload`` as JSON to ``url``; returns the HTTP status (raises on failure)."""
    data = json.dumps(jsonable(payload), allow_nan=False).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
        return int(response.status)


def publish(
    alerts: Iterable[Alert],
    *,
    events: EventLog,
    system: str,
    webhook: str | None = None,
    timeout: float = 2.0,
) -> dict[str, Any]:
    """Record each alert not yet in the event log, and POST the new ones to ``webhook``.

    Returns ``{recorded, already_recorded, webhook}`` where ``webhook`` is None without a
    URL, else ``{url, sent, failed, error}``. After the first failed POST the remaining
    alerts are not attempted (a dead receiver would otherwise cost a timeout each); they
    are counted in ``failed``.
    """
    alerts = list(alerts)
    seen = {
        e["evidence"].get("key")
        for e in events.read(kind=list(KINDS), system=system)
        if isinstance(e.get("evidence"), dict)
    }
    new = [a for a in alerts if a.key not in seen]
    for alert in new:
        events.append(
            alert.kind,
            alert.message,
            system=system,
            model_version=alert.model_version,
            evidence=alert.to_dict(),
        )
    result: dict[str, Any] = {
        "recorded": len(new),
        "already_recorded": len(alerts) - len(new),
        "webhook": None,
    }
    if webhook:
        sent, error = 0, None
        for alert in new:
            try:
                status = post_json(webhook, {"system": system, **alert.to_dict()}, timeout=timeout)
                if not 200 <= status < 300:
                    raise OSError(f"HTTP {status}")
            except urllib.error.HTTPError as exc:  # the receiver answered, with an error
                error = f"HTTP {exc.code} {exc.reason}"
                break
            except (OSError, ValueError) as exc:  # refused, unreachable, timed out, bad URL
                error = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
                break
            sent += 1
        result["webhook"] = {
            "url": webhook,
            "sent": sent,
            "failed": len(new) - sent,
            "error": error,
        }
    return result
