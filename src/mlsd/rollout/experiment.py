"""An experiment's state: who is compared, how, where it stands, and every decision taken.

One JSON file per experiment under ``<workspace>/rollout/<system>/``, written atomically
after every change. The routing table the server follows is derived from it
(:meth:`Experiment.table`), so the two never disagree about arms and weights.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlsd.errors import MlsdError
from mlsd.models.routing import Arm, RoutingTable
from mlsd.workspace import Workspace, write_json

RUNNING = "running"
ENDED = ("promoted", "rolled_back", "stopped", "aborted")


class RolloutError(MlsdError):
    """A rollout cannot start, step or end as asked."""

    headline = "rollout error"


@dataclass
class Member:
    """One arm of an experiment: its name, model version and package folder."""

    name: str
    version: int
    package: str


@dataclass
class Experiment:
    """The state of one rollout (see the module docstring)."""

    id: str
    system: str
    strategy: str
    champion: Member
    challengers: list[Member]
    config: dict[str, Any]
    salt: str
    unit_field: str | None
    started_at: float
    status: str = RUNNING
    step: int = 0  # canary: index into config["steps"]
    step_started_at: float = 0.0
    weights: dict[str, float] = field(default_factory=dict)  # arm -> traffic share
    tau: dict[str, float] = field(default_factory=dict)  # online metric -> mixing scale
    running_p: dict[str, float] = field(default_factory=dict)  # metric -> always-valid p
    plan: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    ended_at: float | None = None
    outcome: str = ""

    @property
    def members(self) -> list[Member]:
        """Champion first, then the challengers."""
        return [self.champion, *self.challengers]

    def member(self, name: str) -> Member:
        """The arm called ``name``."""
        for m in self.members:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.members)
        raise RolloutError(f"experiment {self.id} has no arm {name!r} (arms: {known})")

    @property
    def running(self) -> bool:
        """Still taking decisions."""
        return self.status == RUNNING

    def table(self) -> RoutingTable:
        """The routing table this state asks the server to follow. A shadow routes all
        traffic to the champion and copies it to the challenger; the other strategies split
        it by ``weights``, challengers first so a canary step only moves units into them."""
        arm = {m.name: Arm(m.name, m.version, m.package) for m in self.members}
        mirror = 1.0
        if self.strategy == "shadow":
            arms = (Arm(**{**asdict(arm[self.champion.name]), "weight": 1.0}),)
            shadows = tuple(arm[m.name] for m in self.challengers)
            mirror = float(self.config.get("share", 1.0))  # experiments started before: all
        else:
            order = [*self.challengers, self.champion]
            arms = tuple(
                Arm(m.name, m.version, m.package, float(self.weights.get(m.name, 0.0)))
                for m in order
            )
            shadows = ()
        return RoutingTable(
            system=self.system,
            experiment=self.id,
            strategy=self.strategy,
            salt=self.salt,
            arms=arms,
            shadows=shadows,
            unit_field=self.unit_field,
            updated_at=time.time(),
            meta={"step": self.step},
            mirror=mirror,
        )

    def record(self, decision: dict[str, Any]) -> None:
        """Append one decision (with its time) to the history."""
        self.history.append({"ts": time.time(), **decision})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        """Parse the JSON form."""
        data = dict(data)
        data["champion"] = Member(**data["champion"])
        data["challengers"] = [Member(**m) for m in data["challengers"]]
        return cls(**data)


def folder(ws: Workspace) -> Path:
    """Where the experiments of ``ws.system`` are kept."""
    return ws.folder(f"rollout/{ws.system}")


def save(ws: Workspace, experiment: Experiment) -> Path:
    """Write the state atomically."""
    return write_json(folder(ws) / f"{experiment.id}.json", experiment.to_dict())


def load(ws: Workspace, experiment_id: str) -> Experiment:
    """The state of one experiment."""
    path = folder(ws) / f"{experiment_id}.json"
    if not path.exists():
        raise RolloutError(
            f"{ws.system!r} has no experiment {experiment_id!r}",
            hint="`mlsd rollout status` lists the latest; start one with `mlsd rollout start`",
        )
    return Experiment.from_dict(json.loads(path.read_text()))


def latest(ws: Workspace) -> Experiment | None:
    """The most recently started experiment, running or not."""
    paths = sorted(folder(ws).glob("*.json"))
    return Experiment.from_dict(json.loads(paths[-1].read_text())) if paths else None
