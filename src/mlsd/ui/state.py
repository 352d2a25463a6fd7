"""What the dashboard shows, read from a workspace and never written to it.

Every fact here already lives in the workspace: the published aliases and versions
(``aliases/<system>.json``), each package's manifest and metrics, the reports of the last
validation, training, monitoring and retraining (``reports/<system>/*.json``), the rollout
experiments (``rollout/<system>/*.json``) and the event log (``events.sqlite``, opened
read-only). A missing or unreadable file is a section without data, never an error page.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from mlsd.events import FILE_NAME, PROMOTED, REGISTERED, ROLLED_BACK
from mlsd.models import aliases
from mlsd.monitoring import alerts as alerting

ALERT_KINDS = alerting.KINDS
# what moved a champion or tried to: the history of the versions, with each reason
MODEL_KINDS = (REGISTERED, PROMOTED, ROLLED_BACK, "retrain_promoted", "retrain_refused",
               "retrain_rolled_out", "rollout_started", "rollout_advanced",
               "rollout_reweighted", "rollout_ended")  # fmt: skip


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def systems(root: Path) -> list[str]:
    """The systems of the workspace ``root``: those with published aliases or reports."""
    names = {p.stem for p in (root / "aliases").glob("*.json") if not p.stem.endswith(".routing")}
    names |= {p.name for p in (root / "reports").glob("*") if p.is_dir()}
    return sorted(names)


def events(root: Path, system: str, kinds: tuple[str, ...] | None = None, limit: int = 200):
    """The system's events, newest first (the event log opened read-only; [] without one)."""
    path = root / FILE_NAME
    if not path.exists():
        return []
    sql, args = "SELECT * FROM events WHERE system = ?", [system]
    if kinds:
        sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
        args += list(kinds)
    sql += " ORDER BY id DESC LIMIT ?"
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(sql, [*args, limit]).fetchall()
    except sqlite3.Error:
        return []
    out = []
    for row in rows:
        event = dict(row)
        try:
            event["evidence"] = json.loads(event["evidence"])
        except ValueError:
            event["evidence"] = {}
        out.append(event)
    return out


def age_days(created_at: str | None, now: datetime | None = None) -> float | None:
    if not created_at:
        return None
    try:
        then = datetime.fromisoformat(created_at)
    except ValueError:
        return None
    return ((now or datetime.now(UTC)) - then).total_seconds() / 86400


def versions(root: Path, system: str) -> list[dict[str, Any]]:
    """Every registered version, newest first: its aliases, family, creation time and the
    test figures its package recorded."""
    published = aliases.read(root, system)
    names: dict[int, list[str]] = {}
    for alias, version in published.get("aliases", {}).items():
        names.setdefault(int(version), []).append(alias)
    out = []
    for version, folder in published.get("versions", {}).items():
        manifest = _json(Path(folder) / "manifest.json") or {}
        metrics = _json(Path(folder) / "metrics.json") or {}
        primary = metrics.get("primary") or (manifest.get("meta") or {}).get("primary_metric")
        out.append(
            {
                "version": int(version),
                "aliases": sorted(names.get(int(version), [])),
                "family": (manifest.get("meta") or {}).get("family"),
                "created_at": manifest.get("created_at"),
                "primary": primary,
                "test": (metrics.get("test") or {}).get(primary) if primary else None,
                "folder": folder,
            }
        )
    return sorted(out, key=lambda v: -v["version"])


def runs(root: Path, system: str) -> dict[int, dict[str, Any]]:
    """Version -> its training run in the workspace's MLflow database (read-only, without
    importing MLflow): ``run_id``, ``experiment_id`` and ``artifacts`` (the folder, when it
    is local); {} when the registry lives elsewhere."""
    path = root / "mlflow.db"
    if not path.exists():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT v.version, r.run_uuid, r.experiment_id, r.artifact_uri"
                " FROM model_versions v JOIN runs r ON r.run_uuid = v.run_id WHERE v.name = ?",
                (system,),
            ).fetchall()
    except sqlite3.Error:
        return {}
    out = {}
    for version, run_id, experiment_id, uri in rows:
        local = uri.removeprefix("file://") if uri and uri.startswith("file://") else None
        out[int(version)] = {
            "run_id": run_id,
            "experiment_id": experiment_id,
            "artifacts": Path(local) if local else None,
        }
    return out


def run_file(run: dict[str, Any] | None, name: str) -> Path | None:
    """A file a training run (of :func:`runs`) logged: ``system.yaml``, ``evaluation.html``."""
    folder = (run or {}).get("artifacts")
    path = folder / name if folder else None
    return path if path is not None and path.is_file() else None


def rollout(root: Path, system: str) -> dict[str, Any] | None:
    """The latest rollout experiment of the system (running or ended), or None."""
    found = sorted((root / "rollout" / system).glob("*.json"), key=lambda p: p.stat().st_mtime)
    return _json(found[-1]) if found else None


def report(root: Path, system: str, name: str) -> Any:
    """``reports/<system>/<name>.json``, or None."""
    return _json(root / "reports" / system / f"{name}.json")


def html_reports(root: Path, system: str) -> list[str]:
    """The file names of the system's HTML reports."""
    return sorted(p.name for p in (root / "reports" / system).glob("*.html"))


def champion_of(known: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The champion among the :func:`versions` ``known``, or None."""
    return next((v for v in known if "champion" in v["aliases"]), None)


def status(root: Path, system: str, known: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The status line of a system: its champion, the champion's age, the latest alert
    and the rollout in progress. ``known``: its :func:`versions`, when already read."""
    known = versions(root, system) if known is None else known
    champion = champion_of(known)
    alerts = events(root, system, ALERT_KINDS, limit=1)
    experiment = rollout(root, system)
    return {
        "system": system,
        "champion": champion,
        "age_days": age_days(champion["created_at"]) if champion else None,
        "versions": len(known),
        "latest_alert": alerts[0] if alerts else None,
        "rollout": experiment,
    }


def is_recommender(champion: dict[str, Any] | None) -> bool:
    """Whether the champion (of :func:`versions`) is a recommender's package."""
    from mlsd.models.package import format_of  # numpy's import: not on the start-up path
    from mlsd.recsys.package import FORMAT

    return champion is not None and format_of(champion["folder"]) == FORMAT


class Explorer(NamedTuple):
    """The champion's recommender of a system, and its user ids by their text (a query
    string's user is text; the package's ids may be numbers)."""

    version: int
    recommender: Any  # mlsd.recsys.runtime.Recommender
    ids: dict[str, Any]

    def user(self, text: str) -> Any:
        """The known user whose id reads ``text``, else ``text`` itself (a cold start)."""
        return self.ids.get(text, text)


def explorer(root: Path, system: str) -> Explorer | None:
    """The champion's recommender, loaded as the server loads it (every hash checked, the
    holdout replayed), once per version; None when the champion is not a recommender.
    Raises ``PackageError`` when the package fails verification."""
    champion = champion_of(versions(root, system))
    if not is_recommender(champion):
        return None
    return _explorer(system, champion["version"], str(champion["folder"]))


@lru_cache(maxsize=8)  # keyed by (system, version, folder): a new champion loads anew
def _explorer(system: str, version: int, folder: str) -> Explorer:
    from mlsd.recsys.package import load

    recommender = load(folder).recommender
    return Explorer(version, recommender, {str(u): u for u in recommender.users})
