"""Steps 1-3 of system.yaml: the problem, its metrics and the architecture."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from mlsd.spec.base import Scalar, Section, Task, _listify

# --- step 1: problem -------------------------------------------------------------------------


class Costs(Section):
    false_positive: float = Field(1.0, ge=0, description="Cost of one false positive, in any unit.")
    false_negative: float = Field(1.0, ge=0, description="Cost of one false negative, same unit.")


class ProblemSpec(Section):
    task: Task = Field(description="What is predicted: binary | multiclass | regression | ranking.")
    target: str = Field(min_length=1, description="Column holding the label to predict.")
    positive_class: Scalar | None = Field(
        None,
        description="Binary tasks: the label value that counts as positive (default: 1, "
        "true, yes, or the minority class).",
    )
    id: str | None = Field(None, description="Entity id column (a user, a customer, a station).")
    group: str | None = Field(
        None,
        description="Ranking tasks: the column whose value groups the rows ranked together "
        "(a query, a session, a user); a group never spans two splits.",
    )
    time: list[str] = Field(
        default_factory=list,
        description="Event-time columns, most significant first; they order time splits and "
        "monitoring windows.",
    )
    objective: str = Field("", description="The business objective in one sentence.")
    costs: Costs = Field(default_factory=Costs, description="Costs of wrong decisions.")
    latency_budget_ms: float = Field(
        100.0, gt=0, le=60000, description="Online prediction budget per request, in ms."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return _listify(data, "time")


# --- step 2: metrics -------------------------------------------------------------------------


class Bound(Section):
    min: float | None = Field(None, description="Lowest acceptable value.")
    max: float | None = Field(None, description="Highest acceptable value.")


class MetricsSpec(Section):
    primary: str | None = Field(
        None,
        description="Offline metric that selects models (default: rmse for regression, "
        "roc_auc for binary, log_loss for multiclass, ndcg@10 for ranking).",
    )
    guardrails: dict[str, Bound] = Field(
        default_factory=dict,
        description="Metrics that must stay within bounds, e.g. {log_loss: {max: 0.2}}.",
    )
    online: list[str] = Field(
        default_factory=list, description="Business metrics watched online (e.g. ctr)."
    )


# --- step 3: architecture --------------------------------------------------------------------


GENERATOR_NAMES = (
    "popularity",
    "recent",
    "itemknn",
    "ease",
    "als",
    "bpr",
)  # mlsd.recsys.generators


class FunnelFilters(Section):
    exclude_seen: bool = Field(
        True, description="Never recommend an item the user already has in the interactions."
    )
    rules: list[str] = Field(
        default_factory=list,
        description="Business rules every recommended item must pass, as DuckDB conditions "
        'over the item table\'s columns, e.g. "year >= 1990" (needs data.items).',
    )
    diversity: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Maximal marginal relevance: the weight on an item's dissimilarity to "
        "those listed above it (0: off; items compared by their interaction profiles).",
    )
    exploration: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="Online answers only: each slot's chance of going to a candidate from "
        "beyond the list (stage 'exploration'), so feedback reaches items the model ranks low.",
    )


class ArchitectureSpec(Section):
    kind: Literal["single", "funnel"] = Field(
        "single",
        description="One model, or a recommender funnel: candidate generators → ranker → "
        "filters over an interactions table (problem.id the user, problem.target the item).",
    )
    generators: list[Literal[GENERATOR_NAMES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["popularity", "itemknn", "ease", "als"],
        min_length=1,
        description="Funnel: the candidate generators, each tuned on validation: popularity, "
        "recent (popularity among the newest interactions; needs problem.time), itemknn "
        "(item-item cosine), ease (closed form), als and bpr (implicit).",
    )
    candidates: int = Field(
        100, ge=1, le=10000, description="Funnel: items each generator proposes per user."
    )
    k: int = Field(10, ge=1, le=1000, description="Funnel: items recommended per user by default.")
    filters: FunnelFilters = Field(
        default_factory=FunnelFilters, description="Funnel: what is never recommended."
    )

    @property
    def funnel(self) -> bool:
        """Whether the system is a recommender funnel."""
        return self.kind == "funnel"
