"""MLflow tracking and Model Registry for one system, plus who serves: champion and challenger.

Runs (parameters, metrics, tags, reports) go to MLflow tracking and each registered version
points at a model package folder, so the MLflow UI works on an mlsd workspace unchanged. The
aliases ``champion`` and ``challenger`` say which version serves; every change of them is an
event in the workspace's event log, which is what :meth:`Registry.rollback` and
:meth:`Registry.history` read.

MLflow is imported inside the methods (``mlsd --help`` must not pay for it) and kept quiet:
no migration INFO lines on first use of a SQLite store, no usage telemetry unless the user
opts in with ``MLFLOW_DISABLE_TELEMETRY=false``.

Several processes share a workspace's registry (``mlsd train``, ``promote``, ``rollout``,
``loop``): opening the store and every change of versions and aliases take the workspace's
registry lock (:func:`exclusive`), so two first uses do not race to create MLflow's tables
and a published aliases file is never older than the change it follows. A database held by
another process past SQLite's wait is a :class:`RegistryError` that says so.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlsd.errors import MlsdError
from mlsd.events import FILE_NAME, PROMOTED, REGISTERED, ROLLED_BACK, EventLog, jsonable
from mlsd.models import aliases as published
from mlsd.workspace import Workspace, write_json

CHAMPION = "champion"
CHALLENGER = "challenger"
PACKAGE_TAG = "mlsd.package"  # model version tag: the package folder (the source, readable)
_MAX_KEY = 250  # MLflow's limit on param, metric and tag names
_MAX_PARAM = 6000  # MLflow's limit on param values
_MAX_TAG = 8000  # and on run tag values
_BAD_NAME = re.compile(r"[^\w.\- /]")  # MLflow allows these (and ':' except on Windows)


class RegistryError(MlsdError):
    """A model version or alias does not exist, or the registry cannot do what was asked."""

    headline = "model registry error"


_log = logging.getLogger(__name__)
_MISSING = "RESOURCE_DOES_NOT_EXIST"  # MLflow's error code for an absent model or version


def exclusive(path: Path, *, wait: bool = True) -> int | None:
    """Open ``path`` and lock it exclusively (``flock``); returns the open descriptor, whose
    closing releases the lock, or None when ``wait`` is False and another process holds it.
    The kernel drops the lock when its process dies, so a killed run never leaves it held."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def name_holder(fd: int) -> None:
    """Write who holds the lock ``fd`` (pid, host, start) into its file, for a refusal."""
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, _text(holder).encode(), 0)


def _locked(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is SQLite giving up on a database another process
    holds."""
    while exc is not None:
        if "database is locked" in str(exc) or "database table is locked" in str(exc):
            return True
        exc = exc.__cause__
    return False


def _wait_while_locked(path: Path, timeout_s: float = 20.0) -> None:
    """Wait, as long as MLflow's own statements do, while another process holds the SQLite
    database ``path``: opening MLflow's store gives up after SQLite's default 5 s."""
    import sqlite3

    if not path.is_file():
        return
    with suppress(sqlite3.Error):  # still locked: opening the store says so
        conn = sqlite3.connect(path, timeout=timeout_s)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()


def _quiet_import() -> Any:
    """``mlflow`` imported with its logging at WARNING and telemetry off (unless the user
    configured either), so the CLI's output stays clean."""
    # Usage telemetry would phone home (and wait on exit) from a laptop tool that promises
    # no server: off unless the user sets it.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow's SQL store uses a SQLAlchemy option that SQLAlchemy deprecates; not ours to fix.
    warnings.filterwarnings("ignore", message=r".*``noload`` loader strategy is deprecated")
    import mlflow

    if not os.environ.get("MLFLOW_LOGGING_LEVEL"):
        # mlflow sets its loggers to INFO on import; the first use of a SQLite store then logs
        # "Creating initial MLflow database tables..." and "Updating database tables".
        for name in ("mlflow", "alembic"):
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.level, logging.WARNING))
        # a locked database is logged there with a traceback (and each retry with the whole
        # error) before MLflow raises it; the RegistryError it becomes says it in one line
        logger = logging.getLogger("mlflow.store.db.utils")
        logger.setLevel(max(logger.level, logging.CRITICAL))
    return mlflow


def mlflow_key(key: Any) -> str:
    """A name MLflow accepts: disallowed characters become '_', no empty or '..' segments."""
    parts = [p for p in _BAD_NAME.sub("_", str(key)).split("/") if p not in ("", ".", "..")]
    return "/".join(parts)[:_MAX_KEY] or "_"


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts as dotted names: {"test": {"auc": 0.9}} → ("test.auc", 0.9)."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    import json

    return json.dumps(jsonable(value), sort_keys=True)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _version_number(ref: Any) -> int | None:
    if isinstance(ref, bool):
        return None
    if isinstance(ref, int):
        return ref
    if isinstance(ref, str) and ref.strip().isdigit():
        return int(ref.strip())
    return None


class Registry:
    """The MLflow experiment and registered model of one system, in one workspace.

    The tracking URI defaults to ``sqlite:///<workspace>/mlflow.db`` with artifacts in
    ``<workspace>/mlruns``; the experiment and the registered model are both named after the
    system. Decisions are appended to ``events`` (default: the workspace's event log).
    """

    def __init__(
        self,
        workspace: Workspace,
        name: str,
        tracking_uri: str | None = None,
        events: EventLog | None = None,
    ):
        self.workspace = workspace
        self.name = name
        self.tracking_uri = tracking_uri or f"sqlite:///{workspace.root / 'mlflow.db'}"
        self.artifact_root = workspace.root / "mlruns"
        self.events = events if events is not None else EventLog(workspace.root / FILE_NAME)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._lock_fd: int | None = None  # the registry lock while this instance holds it

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {self.tracking_uri!r})"

    # --- MLflow plumbing ----------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """MLflow (and SQLAlchemy) exceptions as RegistryError saying what was being done."""
        from mlflow.exceptions import MlflowException
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except (MlflowException, SQLAlchemyError) as exc:
            if _locked(exc):
                raise RegistryError(
                    f"{action} gave up: the registry database {self.tracking_uri} is locked "
                    "by another process (SQLite waited for it and timed out)",
                    hint="let the process holding it finish (another mlsd command, an MLflow "
                    "UI, a sqlite3 shell), then run the same command again: it finishes "
                    "what this one left undone",
                ) from exc
            message = getattr(exc, "message", None) or str(exc).splitlines()[0]
            raise RegistryError(
                f"{action} failed in {self.tracking_uri}: {message}",
                hint="check models.tracking_uri and that the workspace is writable",
            ) from exc

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the workspace's registry lock (re-entrant within this instance): one process
        at a time opens the store or changes versions and aliases (see the module docstring)."""
        if self._lock_fd is not None:
            yield
            return
        self._lock_fd = exclusive(self.workspace.root / "locks" / "registry.lock")
        try:
            yield
        finally:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` for this registry (created, with its database, on first use)."""
        if self._client is None:
            _quiet_import()
            from mlflow.tracking import MlflowClient

            if self.tracking_uri.startswith("sqlite:///"):
                self.workspace.root.mkdir(parents=True, exist_ok=True)
                _wait_while_locked(Path(self.tracking_uri.removeprefix("sqlite:///")))
            # under the lock: two first uses at once both run MLflow's migrations and one of
            # them crashed ("table _alembic_tmp_experiments already exists")
            with self._writing(), self._errors("opening the MLflow store"):
                client = MlflowClient(
                    tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                )
                client.search_registered_models(max_results=1)  # opens the registry's store too
                self._client = client
        return self._client

    @property
    def experiment_id(self) -> str:
        """The system's experiment, created with its artifacts under the workspace."""
        if self._experiment_id is None:
            from mlflow.exceptions import MlflowException

            client = self.client
            with self._errors(f"creating the experiment {self.name!r}"):
                experiment = client.get_experiment_by_name(self.name)
                if experiment is None:
                    # explicit artifact location: nothing lands in the current folder;
                    # suppress: another process may have created it meanwhile
                    with suppress(MlflowException):
                        client.create_experiment(
                            self.name, artifact_location=self.artifact_root.as_uri()
                        )
                    experiment = client.get_experiment_by_name(self.name)
                elif experiment.lifecycle_stage == "deleted":
                    client.restore_experiment(experiment.experiment_id)
                self._experiment_id = experiment.experiment_id
        return self._experiment_id

    def _ensure_registered_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != _MISSING:
                raise
            try:
                self.client.create_registered_model(
                    self.name, description=f"Model packages of the mlsd system {self.name!r}."
                )
            except MlflowException:  # created meanwhile by another process
                self.client.get_registered_model(self.name)

    def _aliases(self) -> dict[str, int]:
        """alias → version of the registered model ({} before the first registration)."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code != _MISSING:  # a locked store is not an empty one
                raise
            return {}
        return {alias: int(version) for alias, version in model.aliases.items()}

    # --- tracking -----------------------------------------------------------------------------

    def log_run(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        artifacts: Mapping[str, str | Path] | None = None,
        text: Mapping[str, str] | None = None,
        run_name: str | None = None,
    ) -> str:
        """Record one finished run in the system's experiment; returns its run id.

        Nested dicts become dotted names (``test.roc_auc``); names are made MLflow-safe;
        metrics that are None, NaN or infinite are skipped. ``artifacts`` maps an artifact
        name to a file (stored under exactly that name) or a folder (its contents under it);
        ``text`` maps a file name to its content (a spec, a leaderboard).
        """
        from mlflow.entities import Metric, Param, RunTag

        flat_metrics = []
        for key, value in _flatten(metrics or {}):
            if value is None:
                continue
            try:
                if isinstance(value, str):  # "0.5" is a mistake upstream, not a metric
                    raise TypeError(value)
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise RegistryError(
                    f"metric {key!r} is {value!r}, not a number",
                    hint="pass metrics as numbers (nested dicts are fine)",
                ) from exc
            if math.isfinite(number):
                flat_metrics.append((mlflow_key(key), number))
        missing = [str(p) for p in (artifacts or {}).values() if not Path(p).exists()]
        if missing:
            raise RegistryError(
                f"artifact(s) to log do not exist: {', '.join(missing)}",
                hint="pass existing files or folders",
            )
        experiment_id = self.experiment_id
        client = self.client
        with self._errors("logging a run"):
            run = client.create_run(experiment_id, run_name=run_name)
            run_id = run.info.run_id
            try:
                now = int(datetime.now(UTC).timestamp() * 1000)
                param_list = [
                    Param(mlflow_key(k), _text(v)[:_MAX_PARAM])
                    for k, v in _flatten(params or {})
                    if v is not None
                ]
                tag_list = [
                    RunTag(mlflow_key(k), _text(v)[:_MAX_TAG])
                    for k, v in _flatten(tags or {})
                    if v is not None
                ]
                metric_list = [Metric(k, v, now, 0) for k, v in flat_metrics]
                for start in range(0, max(len(param_list), len(tag_list)), 100):  # batch limits
                    client.log_batch(
                        run_id,
                        params=param_list[start : start + 100],
                        tags=tag_list[start : start + 100],
                    )
                for start in range(0, len(metric_list), 1000):
                    client.log_batch(run_id, metrics=metric_list[start : start + 1000])
                for name, content in (text or {}).items():
                    client.log_text(run_id, content, name)
                for name, path in (artifacts or {}).items():
                    self._log_artifact(run_id, str(name), Path(path))
            except BaseException:
                client.set_terminated(run_id, status="FAILED")
                raise
            client.set_terminated(run_id)
        return run_id

    def _log_artifact(self, run_id: str, name: str, path: Path) -> None:
        name = name.strip("/")
        if path.is_dir():
            self.client.log_artifacts(run_id, str(path), name)
            return
        head, _, base = name.rpartition("/")
        if base == path.name:
            self.client.log_artifact(run_id, str(path), head or None)
            return
        with tempfile.TemporaryDirectory() as tmp:  # stored under exactly `name`
            copy = Path(tmp) / base
            shutil.copyfile(path, copy)
            self.client.log_artifact(run_id, str(copy), head or None)

    # --- registry -----------------------------------------------------------------------------

    def register(self, package: str | Path, run_id: str) -> dict[str, Any]:
        """Register the (built and verified) package folder as a new version of the system.

        The version's source is the package's absolute path; the package is also logged as
        the run's artifact ``package`` so the MLflow UI shows it. The first version becomes
        ``champion``, later ones ``challenger``. The alias is set last, so a crash never
        leaves an alias on an incomplete version, and a crash after the version was created
        is finished or undone by the next change. Returns ``{version, alias, package}``.
        """
        package = Path(package).resolve()
        if not (package / "manifest.json").is_file():
            raise RegistryError(
                f"{package} is not a model package (no manifest.json)",
                hint="register the folder written by mlsd.models.package.build",
            )
        with self._errors(f"registering {package}"):
            self.client.log_artifacts(run_id, str(package), "package")
            with self._changing():
                self._ensure_registered_model()
                aliases = self._aliases()
                alias = CHALLENGER if CHAMPION in aliases else CHAMPION
                evidence = {
                    "version": None,  # known once created
                    "alias": alias,
                    "package": str(package),
                    "run_id": run_id,
                    "replaced": aliases.get(alias),  # the version that held the alias before
                }
                message = f"version {{version}} registered as {alias}"
                with self._pending(REGISTERED, alias, message, evidence) as recorded:
                    created = self.client.create_model_version(
                        self.name,
                        source=str(package),
                        run_id=run_id,
                        tags={PACKAGE_TAG: str(package)},
                        description=f"mlsd model package {package.name}",
                    )
                    # from here a failure or a kill leaves a version without its alias,
                    # which _pending (or the next change) deletes
                    version = recorded["version"] = int(created.version)
                    self.client.set_registered_model_alias(self.name, alias, str(version))
                    self._publish()
        return {"version": version, "alias": alias, "package": str(package)}

    def versions(self) -> list[dict[str, Any]]:
        """Every version in version order: ``{version, aliases, run_id, created_at, package,
        status, metrics}`` (metrics: the run's final metric values)."""
        from mlflow.exceptions import MlflowException

        with self._errors("listing model versions"):
            try:
                found = self.client.search_model_versions(f"name = '{self.name}'")
            except MlflowException as exc:
                if exc.error_code != _MISSING:
                    raise
                return []
            by_version: dict[int, list[str]] = {}
            for alias, version in self._aliases().items():
                by_version.setdefault(version, []).append(alias)
            rows = []
            for mv in sorted(found, key=lambda mv: int(mv.version)):
                metrics: dict[str, float] = {}
                if mv.run_id:
                    try:
                        metrics = dict(sorted(self.client.get_run(mv.run_id).data.metrics.items()))
                    except MlflowException:  # the run was deleted; the version stays usable
                        metrics = {}
                version = int(mv.version)
                rows.append(
                    {
                        "version": version,
                        "aliases": sorted(by_version.get(version, [])),
                        "run_id": mv.run_id,
                        "created_at": _iso(mv.creation_timestamp),
                        "package": (mv.tags or {}).get(PACKAGE_TAG, mv.source),
                        "status": mv.status,
                        "metrics": metrics,
                    }
                )
        return rows

    def _package_of(self, version: int) -> Path:
        from mlflow.exceptions import MlflowException

        with self._errors(f"reading version {version}"):
            try:
                mv = self.client.get_model_version(self.name, str(version))
            except MlflowException as exc:
                if exc.error_code != _MISSING:
                    raise
                raise self._unknown(version) from None
        return Path((mv.tags or {}).get(PACKAGE_TAG, mv.source))

    def _unknown(self, ref: Any) -> RegistryError:
        versions = [row["version"] for row in self.versions()]
        aliases = self._aliases()
        shown_versions = ", ".join(map(str, versions)) or "none"
        shown_aliases = ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items())) or "none"
        return RegistryError(
            f"{self.name!r} has no model version or alias {ref!r} — versions: "
            f"{shown_versions}; aliases: {shown_aliases}",
            hint="pass champion, challenger, latest, a version number, or a package folder"
            if versions
            else "train and register a model first (mlsd train)",
        )

    def resolve(self, ref: str | int | Path) -> Path:
        """The package folder of ``ref``: an alias (champion, challenger), ``latest``, a
        version number (3 or "3"), or a package folder inside the workspace."""
        number = _version_number(ref)
        if number is None and not isinstance(ref, Path):
            text = str(ref).strip()
            aliases = self._aliases()
            if text in aliases:
                number = aliases[text]
            elif text == "latest":
                versions = self.versions()
                if versions:
                    number = versions[-1]["version"]
        if number is None:
            folder = published.package_folder(self.workspace.root, ref)
            if folder is None:
                raise self._unknown(ref)
            return folder
        package = self._package_of(number)
        if not package.is_dir():
            raise RegistryError(
                f"version {number} of {self.name!r} points at {package}, which no longer exists",
                hint="restore the package folder, or promote another version",
            )
        return package

    def promote(self, version: int | str, *, reason: str = "") -> dict[str, Any]:
        """Make ``version`` the champion; the previous champion is kept in the event's
        evidence (for rollback). Returns ``{version, previous, package, changed}``."""
        number = _version_number(version)
        if number is None:
            raise self._unknown(version)
        package = self._package_of(number)
        with self._errors(f"promoting version {number}"), self._changing():
            previous = self._aliases().get(CHAMPION)
            changed = previous != number
            if changed:
                message = f"version {number} promoted to champion (was {previous})"
                self._move_champion(PROMOTED, message, number, previous, package, reason)
        return {
            "version": number,
            "previous": previous,
            "package": str(package),
            "changed": changed,
        }

    def _move_champion(
        self,
        kind: str,
        message: str,
        version: int,
        previous: int | None,
        package: Path,
        reason: str,
        **evidence: Any,
    ) -> None:
        """Point the champion alias at ``version``, publish it, and record the event."""
        evidence = {
            "version": version,
            "previous": previous,
            **evidence,
            "package": str(package),
            "reason": reason,
        }
        with (
            self._errors(f"moving {CHAMPION} to version {version}"),
            self._changing(),
            self._pending(kind, CHAMPION, message + (f": {reason}" if reason else ""), evidence),
        ):
            self.client.set_registered_model_alias(self.name, CHAMPION, str(version))
            if self._aliases().get(CHALLENGER) == version:  # no longer a challenger
                self.client.delete_registered_model_alias(self.name, CHALLENGER)
            self._publish()

    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the registry lock, having first finished or undone what a killed process
        left pending (:meth:`_recover`)."""
        with self._writing():
            self._recover()
            yield

    def _pending_path(self) -> Path:
        return self.workspace.root / "pending" / f"{self.name}.json"

    @contextmanager
    def _pending(
        self, kind: str, alias: str, message: str, evidence: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Around one change of versions or aliases, made in the body under the lock: the
        event it will be (``message`` may hold ``{version}``) is written down before and
        recorded after. A process killed between the change and its event so leaves
        neither a lost event nor a half change: the next change finishes or undoes it."""
        change = {
            "kind": kind,
            "alias": alias,
            "message": message,
            "evidence": {**evidence, "change": uuid.uuid4().hex},
        }
        path = self._pending_path()
        write_json(path, change)
        try:
            yield change["evidence"]
        except BaseException:
            with suppress(Exception):  # the change failed: whatever it did is finished or undone
                self._recover()
            raise
        self._record(change)
        path.unlink()

    def _record(self, change: dict[str, Any]) -> None:
        evidence = change["evidence"]
        self.events.append(
            change["kind"],
            change["message"].format(version=evidence["version"]),
            system=self.name,
            model_version=evidence["version"],
            evidence=evidence,
        )

    def _recover(self) -> None:
        """Finish or undo the change a killed process left pending (under the lock). A change
        that was made gets its published aliases and its event (once); a version created but
        never given its alias is deleted; a change never made is forgotten."""
        path = self._pending_path()
        if not path.is_file():
            return
        try:  # written whole or not at all (write_json), unless edited by hand
            change = json.loads(path.read_text())
            evidence = change["evidence"]
        except (OSError, ValueError, KeyError, TypeError):
            _log.warning("%s is not a pending change mlsd wrote: set aside", path)
            path.replace(path.with_suffix(".unreadable"))
            return
        version = evidence.get("version")
        if version is None and change["kind"] == REGISTERED:
            version = self._version_of_run(evidence["run_id"], evidence["package"])
        aliases = self._aliases()
        if version is not None and aliases.get(change["alias"]) == version:
            if change["alias"] == CHAMPION and aliases.get(CHALLENGER) == version:
                self.client.delete_registered_model_alias(self.name, CHALLENGER)
            self._publish()
            if not any(
                e["evidence"].get("change") == evidence["change"]
                for e in self.events.read(kind=change["kind"], system=self.name, limit=50)
            ):
                evidence.update(version=version, recovered=True)
                self._record(change)
            _log.warning("finished the interrupted change: %s", change["kind"])
        elif version is not None and change["kind"] == REGISTERED:
            self.client.delete_model_version(self.name, str(version))
            self._publish()
            _log.warning("deleted version %s: its registration was interrupted", version)
        path.unlink()

    def _version_of_run(self, run_id: str, package: str) -> int | None:
        """The version registered from ``run_id`` with ``package``, if there is one."""
        found = [
            int(mv.version)
            for mv in self.client.search_model_versions(f"name='{self.name}' and run_id='{run_id}'")
            if (mv.tags or {}).get(PACKAGE_TAG, mv.source) == package
        ]
        return max(found, default=None)

    def _publish(self) -> None:
        """Write aliases and package folders where the server reads them without MLflow
        (unless the file says so already: the server reloads when it is rewritten)."""
        packages = {
            int(mv.version): (mv.tags or {}).get(PACKAGE_TAG, mv.source)
            for mv in self.client.search_model_versions(f"name='{self.name}'")
        }
        names = self._aliases()
        with suppress(OSError, ValueError):  # unreadable: written again below
            current = published.read(self.workspace.root, self.name)
            if current["aliases"] == names and current["versions"] == {
                str(v): str(p) for v, p in packages.items()
            }:
                return
        published.publish(self.workspace.root, self.name, names, packages)

    def _champion_events(self) -> list[dict[str, Any]]:
        """Events that changed the champion, oldest first."""
        events = self.events.read(kind=[REGISTERED, PROMOTED, ROLLED_BACK], system=self.name)
        return [
            e for e in events if e["kind"] != REGISTERED or e["evidence"].get("alias") == CHAMPION
        ]

    def rollback(self, *, reason: str = "") -> dict[str, Any]:
        """Give the champion back to the version that was champion before the last promotion
        not yet rolled back (from the event log). Returns ``{version, previous, package}``."""
        with self._errors("rolling back"), self._changing():  # recovered events count
            return self._rollback(reason)

    def _rollback(self, reason: str) -> dict[str, Any]:
        promotions: list[dict[str, Any]] = []
        for event in self._champion_events():
            if event["kind"] == PROMOTED:
                promotions.append(event)
            elif event["kind"] == ROLLED_BACK:
                if promotions:
                    promotions.pop()
            else:  # a first champion: nothing before it to return to
                promotions.clear()
        target = promotions[-1]["evidence"].get("previous") if promotions else None
        if target is None:
            raise RegistryError(
                f"{self.name!r} has no promotion to roll back",
                hint="use `mlsd promote VERSION` to choose a champion explicitly",
            )
        target = int(target)
        package = self._package_of(target)
        current = self._aliases().get(CHAMPION)
        message = f"champion rolled back to version {target} (was {current})"
        self._move_champion(
            ROLLED_BACK,
            message,
            target,
            current,
            package,
            reason,
            undoes_event=promotions[-1]["id"],
        )
        return {"version": target, "previous": current, "package": str(package)}

    def history(self) -> list[dict[str, Any]]:
        """Champion changes, oldest first: ``{version, since, until, kind, previous, reason,
        message, event_id}`` — which version served from when, and why."""
        rows: list[dict[str, Any]] = []
        for event in self._champion_events():
            evidence = event["evidence"]
            if rows:
                rows[-1]["until"] = event["ts"]
            rows.append(
                {
                    "version": evidence.get("version"),
                    "since": event["ts"],
                    "until": None,
                    "kind": event["kind"],
                    "previous": evidence.get("previous", evidence.get("replaced")),
                    "reason": evidence.get("reason", ""),
                    "message": event["message"],
                    "event_id": event["id"],
                }
            )
        return rows
