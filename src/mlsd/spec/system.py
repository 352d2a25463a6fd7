"""The whole system.yaml: one section per design step, and its JSON schema.

The order of the fields is the order of the schema, of ``mlsd init``'s file and of the docs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr

from mlsd.spec.base import Section
from mlsd.spec.data import DataSpec, FeaturesSpec
from mlsd.spec.engine import EngineSpec
from mlsd.spec.models import EvaluationSpec, ModelsSpec
from mlsd.spec.monitoring import MonitoringSpec, RetrainingSpec
from mlsd.spec.problem import ArchitectureSpec, MetricsSpec, ProblemSpec
from mlsd.spec.rollout import RolloutSpec
from mlsd.spec.serving import ServingSpec
from mlsd.tasks import get_task


class SystemSpec(Section):
    """The whole ``system.yaml``."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=100,
        description="System name: letters, digits, '-', '_' and '.'.",
    )
    description: str = Field("", description="What the system is for.")
    seed: int = Field(42, ge=0, description="Seed of every random choice (splits, models).")
    workspace: str | None = Field(
        None,
        description="Workspace folder (default: .mlsd beside system.yaml; MLSD_HOME "
        "overrides both).",
    )
    problem: ProblemSpec = Field(description="Step 1: the problem.")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="Step 2: metrics.")
    architecture: ArchitectureSpec = Field(
        default_factory=ArchitectureSpec, description="Step 3: architecture."
    )
    data: DataSpec = Field(description="Step 4: data.")
    features: FeaturesSpec = Field(default_factory=FeaturesSpec, description="Step 5: features.")
    models: ModelsSpec = Field(default_factory=ModelsSpec, description="Step 6: models.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec, description="Step 6: offline evaluation."
    )
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Step 7: serving.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Step 8: rollout.")
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec, description="Step 9: monitoring."
    )
    retraining: RetrainingSpec = Field(
        default_factory=RetrainingSpec, description="Step 9: retraining."
    )
    engine: EngineSpec = Field(
        default_factory=EngineSpec,
        description="Where batch scoring and tuning run: this process or a Ray cluster.",
    )

    _path: Path | None = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The file this spec was loaded from, if any."""
        return self._path

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the spec are resolved against."""
        return self._path.parent if self._path else Path.cwd()

    def resolve(self, relative: str) -> Path:
        """A path from the spec, made absolute against the spec's folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def split_method(self) -> str:
        """The split method with ``auto`` resolved."""
        method = self.data.split.method
        if method != "auto":
            return method
        if self.architecture.funnel:
            return "per_user_time" if self.problem.time else "per_user"
        if self.problem.time:
            return "time"
        return get_task(self.problem.task).default_split

    @property
    def split_group(self) -> str | None:
        """Column a group split keeps together (a ranking task's groups by default)."""
        return self.data.split.group or self.problem.group or self.problem.id


def json_schema() -> dict:
    """JSON schema of system.yaml, with every field's type, default, range and description."""
    return SystemSpec.model_json_schema()
