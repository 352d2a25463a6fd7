"""``system.yaml``: the declaration of one ML system, one section per design step.

The pydantic models are the single source of truth: they validate the file, give defaults,
produce the JSON schema (``mlsd schema``), the comments ``mlsd init`` writes, and the text of
every error. This package only re-exports; each job lives in its own module:

- ``base``: the section base class, value types and durations;
- ``problem``, ``data``, ``models``, ``serving``, ``rollout``, ``monitoring``: the sections,
  by design step; ``engine``: where the heavy work runs;
- ``system``: the whole file (``SystemSpec``) and its JSON schema;
- ``checks``: the checks that span sections;
- ``loader``: YAML to ``SystemSpec``, with errors naming file, line and key.
"""

from mlsd.errors import SpecError
from mlsd.spec.base import (
    ColumnType,
    DatetimePart,
    Duration,
    Scalar,
    Section,
    Task,
    parse_duration,
)
from mlsd.spec.data import (
    Acknowledgement,
    ChecksSpec,
    ColumnSpec,
    DataSpec,
    FeatureColumnSpec,
    FeaturesSpec,
    SourceSpec,
    SplitSpec,
)
from mlsd.spec.engine import EngineSpec
from mlsd.spec.loader import Location, load_spec, parse_spec
from mlsd.spec.models import (
    BaselinesSpec,
    BehavioralTestSpec,
    EnsembleSpec,
    EvaluationSpec,
    ModelGateSpec,
    ModelsSpec,
    ThresholdSpec,
    TuningSpec,
)
from mlsd.spec.monitoring import (
    TRIGGERS,
    DriftMethod,
    DriftSpec,
    MonitoringSpec,
    QualitySpec,
    RetrainHoldout,
    RetrainingSpec,
    RetrainWindow,
    RowWindow,
)
from mlsd.spec.problem import ArchitectureSpec, Bound, Costs, MetricsSpec, ProblemSpec
from mlsd.spec.rollout import RolloutSpec
from mlsd.spec.serving import ServingSpec
from mlsd.spec.system import SystemSpec, json_schema

__all__ = [
    "TRIGGERS",
    "Acknowledgement",
    "ArchitectureSpec",
    "BaselinesSpec",
    "BehavioralTestSpec",
    "Bound",
    "ChecksSpec",
    "ColumnSpec",
    "ColumnType",
    "Costs",
    "DataSpec",
    "DatetimePart",
    "DriftMethod",
    "DriftSpec",
    "Duration",
    "EngineSpec",
    "EnsembleSpec",
    "EvaluationSpec",
    "FeatureColumnSpec",
    "FeaturesSpec",
    "Location",
    "MetricsSpec",
    "ModelGateSpec",
    "ModelsSpec",
    "MonitoringSpec",
    "ProblemSpec",
    "QualitySpec",
    "RetrainHoldout",
    "RetrainWindow",
    "RetrainingSpec",
    "RolloutSpec",
    "RowWindow",
    "Scalar",
    "Section",
    "ServingSpec",
    "SourceSpec",
    "SpecError",
    "SplitSpec",
    "SystemSpec",
    "Task",
    "ThresholdSpec",
    "TuningSpec",
    "json_schema",
    "load_spec",
    "parse_duration",
    "parse_spec",
]
