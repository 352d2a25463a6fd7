"""The registry on a real MLflow SQLite store: runs, versions, aliases, promote, rollback.

One workspace (and so one MLflow database, whose first migration takes seconds) serves the
whole module; tests that change aliases use their own system name in it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlsd.events import EventLog
from mlsd.models import aliases
from mlsd.models.registry import Registry, RegistryError
from mlsd.workspace import Workspace

SRC = Path(__file__).resolve().parents[2] / "src"


def fake_package(root: Path, name: str) -> Path:
    """A package-shaped folder: the registry records folders, it does not load them."""
    folder = root / "packages" / name
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "model.json").write_text('{"family": "test"}')
    (folder / "manifest.json").write_text(json.dumps({"format": "mlsd.package", "version": 1}))
    return folder


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("ws"))


@pytest.fixture(scope="module")
def churn(ws, tmp_path_factory):
    """System 'churn' with two logged runs and two registered versions."""
    elsewhere = tmp_path_factory.mktemp("cwd")
    report = elsewhere / "validation.json"
    report.write_text('{"ok": true}')
    folder = elsewhere / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "roc.txt").write_text("roc")
    cwd = Path.cwd()
    os.chdir(elsewhere)  # MLflow must not write into the current folder
    try:
        registry = Registry(ws, "churn")
        runs, registered = [], []
        for i in (1, 2):
            run_id = registry.log_run(
                params={"chosen": "linear", "model": {"C": 0.1 * i, "penalty": None}},
                metrics={
                    "test": {"roc_auc": 0.8 + i / 100, "brier": float("nan")},
                    "valid.log loss": 0.4,
                    "skipped": None,
                },
                tags={"snapshot": f"snap{i}", "spec_hash": "abc"},
                artifacts={"validation.json": report, "plots": folder, "reports/v.json": report},
                text={"system.yaml": "name: churn\n", "leaderboard.json": "[]"},
            )
            runs.append(run_id)
            registered.append(registry.register(fake_package(ws.root, f"churn-{i}"), run_id))
    finally:
        os.chdir(cwd)
    return registry, runs, registered, elsewhere


def test_first_is_champion_then_challenger(churn, ws):
    registry, _, registered, _ = churn
    assert [(r["version"], r["alias"]) for r in registered] == [(1, "champion"), (2, "challenger")]
    assert registered[0]["package"] == str((ws.root / "packages" / "churn-1").resolve())
    events = registry.events.read(kind="registered", system="churn")
    assert [e["evidence"]["alias"] for e in events] == ["champion", "challenger"]
    assert events[1]["model_version"] == "2" and events[1]["evidence"]["run_id"]


def test_versions_lists_both(churn, ws):
    registry, runs, _, _ = churn
    rows = registry.versions()
    assert [(r["version"], r["aliases"], r["run_id"]) for r in rows] == [
        (1, ["champion"], runs[0]),
        (2, ["challenger"], runs[1]),
    ]
    assert rows[1]["package"] == str((ws.root / "packages" / "churn-2").resolve())
    assert rows[1]["metrics"]["test.roc_auc"] == pytest.approx(0.82)
    assert rows[0]["created_at"].endswith("+00:00") and rows[0]["status"] == "READY"


def test_resolve(churn, ws):
    registry, *_ = churn
    first, second = (ws.root / "packages" / f"churn-{i}" for i in (1, 2))
    assert registry.resolve("champion") == first.resolve()
    assert registry.resolve("challenger") == second.resolve()
    assert registry.resolve(2) == registry.resolve("2") == registry.resolve("latest")
    assert registry.resolve(str(first)) == first.resolve()
    assert registry.resolve(second) == second.resolve()


def test_package_folders_outside_the_workspace_are_refused(churn, ws, tmp_path):
    """However a folder outside is spelled (absolute, ``../``, a link from inside), neither
    the registry nor the published aliases resolve to it."""
    from mlsd.errors import MlsdError
    from mlsd.models import aliases

    registry, *_ = churn
    outside = fake_package(tmp_path, "stranger")
    link = ws.root / "packages" / "link-out"
    link.symlink_to(outside, target_is_directory=True)
    climbing = os.path.relpath(outside, Path.cwd())
    assert climbing.startswith("..")
    try:
        for ref in (str(outside), outside, climbing, str(link)):
            for resolve in (registry.resolve, lambda r: aliases.resolve(ws.root, "churn", r)):
                with pytest.raises(MlsdError, match="outside the workspace"):
                    resolve(ref)
    finally:
        link.unlink()
    inside = ws.root / "packages" / "churn-1"
    assert aliases.resolve(ws.root, "churn", str(inside)) == (None, inside.resolve())


def test_unknown_refs_list_what_exists(churn):
    registry, *_ = churn
    for ref in ("staging", 7, "/no/such/package"):
        with pytest.raises(RegistryError) as info:
            registry.resolve(ref)
        text = str(info.value)
        assert "versions: 1, 2" in text and "champion → 1" in text and "challenger → 2" in text
    with pytest.raises(RegistryError, match="no model version or alias 9"):
        registry.promote(9)


def test_log_run_records_everything(churn, ws):
    from mlflow.tracking import MlflowClient

    registry, runs, _, elsewhere = churn
    client = MlflowClient(tracking_uri=registry.tracking_uri)
    run = client.get_run(runs[0])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name("churn").experiment_id
    assert run.data.params == {"chosen": "linear", "model.C": "0.1"}  # None skipped
    assert run.data.metrics == {"test.roc_auc": pytest.approx(0.81), "valid.log loss": 0.4}
    assert run.data.tags["snapshot"] == "snap1" and run.data.tags["spec_hash"] == "abc"
    top = {a.path for a in client.list_artifacts(runs[0])}
    assert top == {
        "validation.json",
        "plots",
        "reports",
        "system.yaml",
        "leaderboard.json",
        "package",
    }
    assert {a.path for a in client.list_artifacts(runs[0], "plots/sub")} == {"plots/sub/roc.txt"}
    assert {a.path for a in client.list_artifacts(runs[0], "reports")} == {"reports/v.json"}
    assert {a.path for a in client.list_artifacts(runs[0], "package")} >= {"package/manifest.json"}
    location = client.get_experiment_by_name("churn").artifact_location
    assert location == (ws.root / "mlruns").as_uri()
    assert (ws.root / "mlflow.db").is_file()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["plots", "validation.json"]
    model = client.get_registered_model("churn")
    assert model.aliases == {"champion": 1, "challenger": 2}


def test_log_run_refuses_bad_input(churn, tmp_path):
    registry, *_ = churn
    with pytest.raises(RegistryError, match="not a number"):
        registry.log_run(metrics={"auc": "high"})
    with pytest.raises(RegistryError, match="do not exist"):
        registry.log_run(artifacts={"x": tmp_path / "missing.json"})
    with pytest.raises(RegistryError, match="not a model package"):
        registry.register(tmp_path, "run")


def test_promote_rollback_and_history(ws):
    registry = Registry(ws, "flow")
    run_id = registry.log_run(params={"i": 1})
    for i in (1, 2, 3):
        registry.register(fake_package(ws.root, f"flow-{i}"), run_id)
    assert registry._aliases() == {"champion": 1, "challenger": 3}
    with pytest.raises(RegistryError, match="no promotion to roll back"):
        registry.rollback()

    change = registry.promote(2, reason="better AUC")
    assert change["changed"] and change["previous"] == 1 and change["version"] == 2
    assert change["package"].endswith("flow-2")
    assert registry.promote(2)["changed"] is False  # already champion: no event
    change = registry.promote("3", reason="canary passed")
    assert change["previous"] == 2
    assert registry._aliases() == {"champion": 3}  # the challenger became champion
    promoted = registry.events.read(kind="promoted", system="flow")
    assert [(e["evidence"]["version"], e["evidence"]["previous"]) for e in promoted] == [
        (2, 1),
        (3, 2),
    ]
    assert promoted[0]["evidence"]["reason"] == "better AUC"
    assert "better AUC" in promoted[0]["message"]

    back = registry.rollback(reason="error rate up")
    assert (back["version"], back["previous"]) == (2, 3)
    assert registry.resolve("champion").name == "flow-2"
    assert registry.rollback()["version"] == 1  # the promotion before that one
    with pytest.raises(RegistryError, match="no promotion to roll back"):
        registry.rollback()
    assert registry.resolve("champion").name == "flow-1"

    history = registry.history()
    assert [(h["version"], h["kind"]) for h in history] == [
        (1, "registered"),
        (2, "promoted"),
        (3, "promoted"),
        (2, "rolled_back"),
        (1, "rolled_back"),
    ]
    assert [h["reason"] for h in history][1:4] == ["better AUC", "canary passed", "error rate up"]
    assert all(a["until"] == b["since"] for a, b in itertools.pairwise(history))
    assert history[-1]["until"] is None
    # the other system in the same workspace is untouched
    assert (
        Registry(ws, "churn", events=EventLog(ws.root / "events.sqlite")).history()[0]["version"]
        == 1
    )


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    from mlsd.models import aliases
    from mlsd.models.registry import Registry
    from mlsd.workspace import Workspace

    root, system, action, where, package = sys.argv[1:]
    registry = Registry(Workspace(root), system)
    owner = registry.events if where == "append" else registry.client
    original = getattr(owner, where)

    def then_die(*args, **kwargs):
        original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    setattr(owner, where, then_die)
    if action == "register":
        registry.register(package, registry.log_run(params={"i": 3}))
    else:
        registry.promote(2)
    """
)

# (system, the change, the call after which the process is SIGKILLed)
_KILLS = [
    ("k-created", "register", "create_model_version"),
    ("k-aliased", "register", "set_registered_model_alias"),
    ("k-recorded", "register", "append"),
    ("k-promoted", "promote", "set_registered_model_alias"),
]


def test_a_change_killed_midway_is_finished_or_undone_by_the_next(ws):
    """A registration or promotion SIGKILLed right after each of its steps: the next change
    deletes a version left without its alias, records the event a change made but never
    recorded (once), and publishes the aliases, so rollback still finds what to undo."""
    registries = {}
    for system, _, _ in _KILLS:
        registry = registries[system] = Registry(ws, system)
        run_id = registry.log_run(params={"i": 1})
        for i in (1, 2):
            registry.register(fake_package(ws.root, f"{system}-{i}"), run_id)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _KILLED,
                str(ws.root),
                system,
                action,
                where,
                str(fake_package(ws.root, f"{system}-3")),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for system, action, where in _KILLS
    ]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == -9, err

    def registered(system):
        events = registries[system].events.read(kind="registered", system=system)
        return [(e["evidence"]["version"], e["evidence"].get("recovered", False)) for e in events]

    # killed after creating version 3, before its alias: the next change deletes it
    created = registries["k-created"]
    created.register(fake_package(ws.root, "k-created-4"), created.log_run(params={"i": 4}))
    assert [v["version"] for v in created.versions()] == [1, 2, 4]
    assert created._aliases() == {"champion": 1, "challenger": 4}
    assert registered("k-created") == [(1, False), (2, False), (4, False)]
    # killed after the alias moved: the next change (even one that changes nothing)
    # records the registration and publishes the alias the server reads
    aliased = registries["k-aliased"]
    assert aliased.promote(1)["changed"] is False
    assert registered("k-aliased") == [(1, False), (2, False), (3, True)]
    assert aliases.read(ws.root, "k-aliased")["aliases"] == {"champion": 1, "challenger": 3}
    # killed after the event was recorded: nothing is recorded twice
    recorded = registries["k-recorded"]
    assert recorded.promote(1)["changed"] is False
    assert registered("k-recorded") == [(1, False), (2, False), (3, False)]
    # a promotion killed after the alias moved: its event is recorded, so rollback finds it
    promoted = registries["k-promoted"]
    assert promoted.rollback()["version"] == 1
    events = promoted.events.read(system="k-promoted")
    kinds = [(e["kind"], e["evidence"].get("recovered", False)) for e in events]
    assert kinds[2:] == [("promoted", True), ("rolled_back", False)]
    assert aliases.read(ws.root, "k-promoted")["aliases"] == {"champion": 1}
    assert not list((ws.root / "pending").glob("k-*.json"))


def test_a_pending_change_edited_by_hand_is_set_aside(ws):
    registry = Registry(ws, "hand-edited")
    registry.register(fake_package(ws.root, "hand-edited-1"), registry.log_run(params={}))
    pending = ws.root / "pending" / "hand-edited.json"
    pending.write_text("{not json")
    assert registry.promote(1)["changed"] is False  # the change goes ahead
    assert not pending.exists() and pending.with_suffix(".unreadable").exists()


def test_resolve_before_any_registration(ws):
    registry = Registry(ws, "empty")
    assert registry.versions() == []
    with pytest.raises(RegistryError, match="train and register a model first"):
        registry.resolve("champion")


def test_mlflow_is_lazy_and_quiet(tmp_path):
    """Importing the registry does not import MLflow; first use of a fresh SQLite store
    prints nothing (MLflow logs its migrations at INFO by default)."""
    package = fake_package(tmp_path, "p")
    script = textwrap.dedent(
        f"""
        import sys
        from mlsd.models.registry import Registry
        from mlsd.workspace import Workspace
        assert "mlflow" not in sys.modules
        registry = Registry(Workspace({str(tmp_path / "ws")!r}), "quiet")
        run_id = registry.log_run(metrics={{"test.mae": 1.0}}, text={{"a.txt": "a"}})
        registry.register({str(package)!r}, run_id)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(SRC)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
