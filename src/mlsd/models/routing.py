"""The routing table: which model versions share live traffic, published beside the aliases.

Step 8 (rollout) writes it; the server follows it like the aliases file, without MLflow and
without a restart. No table (the file is absent) means the champion alias answers everything.

An arm is chosen per request by a salted hash of its unit (the entity id the spec names in
``problem.id`` when the request carries it, else the request id), so one unit sees one arm
for the whole experiment. Arms are laid out in table order on [0, 1): raising the first
arm's weight (a canary step) only moves units from the others into it, never out of it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlsd.errors import MlsdError
from mlsd.workspace import write_json

_SCALE = float(2**64)


class RoutingError(MlsdError):
    """A routing table is malformed."""

    headline = "bad routing table"


@dataclass(frozen=True)
class Arm:
    """One model version taking a share of traffic (``weight``), or a shadow (weight 0)."""

    name: str
    version: int
    package: str
    weight: float = 0.0


@dataclass(frozen=True)
class RoutingTable:
    """Who answers while an experiment runs. ``arms`` share traffic by weight (they sum to
    1); ``shadows`` score a copy of the requests :meth:`mirrored` picks (a ``mirror`` share of
    them), off the request path, never answering."""

    system: str
    experiment: str
    strategy: str
    salt: str
    arms: tuple[Arm, ...]
    shadows: tuple[Arm, ...] = ()
    unit_field: str | None = None  # problem.id: the request field that names the unit
    updated_at: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    mirror: float = 1.0  # share of requests copied to the shadows

    def __post_init__(self) -> None:
        if not self.arms:
            raise RoutingError(f"experiment {self.experiment!r} has no arm")
        if any(a.weight < 0 for a in self.arms) or abs(sum(a.weight for a in self.arms) - 1) > 1e-6:
            weights = ", ".join(f"{a.name}={a.weight}" for a in self.arms)
            raise RoutingError(
                f"the arms' weights of experiment {self.experiment!r} must be >= 0 and sum to "
                f"1 ({weights})"
            )
        if not 0 < self.mirror <= 1:
            raise RoutingError(
                f"experiment {self.experiment!r} mirrors a share of {self.mirror} of requests: "
                "it must be in (0, 1]"
            )
        names = [a.name for a in (*self.arms, *self.shadows)]
        if len(set(names)) != len(names):
            raise RoutingError(f"experiment {self.experiment!r} names an arm twice: {names}")

    def assign(self, unit: str) -> tuple[Arm, float]:
        """The arm ``unit`` falls in, with its assignment probability (the arm's weight)."""
        if len(self.arms) == 1:  # one arm answers everything (shadows watch): no hash
            return self.arms[0], self.arms[0].weight
        u = bucket(self.salt, unit)
        total = 0.0
        for arm in self.arms:
            total += arm.weight
            if u < total:
                return arm, arm.weight
        last = next(a for a in reversed(self.arms) if a.weight > 0)  # rounding at the top
        return last, last.weight

    def mirrored(self, request_id: str) -> bool:
        """Whether the shadows score a copy of this request (the same answer everywhere)."""
        return self.mirror >= 1 or bucket(f"{self.salt}/mirror", request_id) < self.mirror

    def arm(self, name: str) -> Arm:
        """The arm or shadow called ``name``."""
        for arm in (*self.arms, *self.shadows):
            if arm.name == name:
                return arm
        raise RoutingError(f"experiment {self.experiment!r} has no arm {name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what :func:`publish` writes)."""
        out = asdict(self)
        out["arms"] = [asdict(a) for a in self.arms]
        out["shadows"] = [asdict(a) for a in self.shadows]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoutingTable:
        """Parse the JSON form; a malformed table raises :class:`RoutingError`."""
        try:
            return cls(
                system=str(data["system"]),
                experiment=str(data["experiment"]),
                strategy=str(data["strategy"]),
                salt=str(data["salt"]),
                arms=tuple(Arm(**a) for a in data["arms"]),
                shadows=tuple(Arm(**a) for a in data.get("shadows", ())),
                unit_field=data.get("unit_field"),
                updated_at=float(data.get("updated_at", 0.0)),
                meta=dict(data.get("meta") or {}),
                mirror=float(data.get("mirror", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RoutingError(
                f"the routing table is malformed: {exc}",
                hint="`mlsd rollout abort` removes it; `mlsd rollout start` writes a new one",
            ) from exc


def bucket(salt: str, unit: str) -> float:
    """A uniform number in [0, 1) from ``salt`` and ``unit``, the same in every process."""
    h = _salted(salt).copy()
    h.update(unit.encode())
    return int.from_bytes(h.digest(), "big") / _SCALE


@functools.lru_cache(maxsize=64)
def _salted(salt: str) -> Any:
    """BLAKE2b with ``salt`` and the separator already fed (copied per unit: half the cost
    of hashing both per request)."""
    return hashlib.blake2b(f"{salt}\x1f".encode(), digest_size=8)


def routing_path(workspace_root: Path, system: str) -> Path:
    """Where the routing table of ``system`` is published (beside the aliases)."""
    return Path(workspace_root) / "aliases" / f"{system}.routing.json"


def publish(workspace_root: Path, table: RoutingTable) -> Path:
    """Write ``table`` atomically: the server sees the old table or the new one, whole."""
    return write_json(routing_path(workspace_root, table.system), table.to_dict())


def read(workspace_root: Path, system: str) -> RoutingTable | None:
    """The published table, or None when no experiment routes traffic."""
    path = routing_path(workspace_root, system)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RoutingError(f"{path} is not JSON: {exc}") from exc
    return RoutingTable.from_dict(data)


def clear(workspace_root: Path, system: str) -> bool:
    """Remove the table (the champion alias answers everything again); True if one existed."""
    path = routing_path(workspace_root, system)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
