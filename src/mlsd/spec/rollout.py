"""Step 8 of system.yaml: how a new model takes live traffic (one config per strategy)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mlsd.spec.base import Duration, Section

STRATEGIES = ("direct", "shadow", "canary", "ab", "bandit")


class ShadowSpec(Section):
    """The challenger scores a copy of every request; only the champion answers."""

    min_requests: int = Field(
        500, ge=1, description="Requests the shadow must score before a decision."
    )
    min_duration: Duration = Field("10m", description="Shortest shadow run, e.g. 10m.")
    margin: float = Field(
        0.02,
        ge=0,
        description="Non-inferiority margin on the online metric, relative to the champion's "
        "value on the same requests (paired): the shadow is promoted when it is not worse by "
        "more than this share (0.02: 2%).",
    )
    max_duration: Duration = Field(
        "7d", description="Without a decision by then, stop and keep the champion."
    )
    share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of requests copied to the shadow, picked by a hash of the request "
        "id (Istio's mirror percentage). Below 1 it bounds what the shadow costs a busy "
        "server; min_requests then takes longer to reach.",
    )


class CanarySpec(Section):
    """The challenger takes growing shares of traffic, each step judged by guardrails."""

    steps: list[float] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        description="Traffic percentages of the challenger, in order; the last is 100.",
    )
    min_requests: int = Field(
        200, ge=1, description="Challenger requests a step needs before it is judged."
    )
    min_duration: Duration = Field("5m", description="Shortest time a step is held.")
    max_error_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Refused requests (validation, errors) the challenger may add over the "
        "champion's rate.",
    )
    p99_ms: float | None = Field(
        None,
        gt=0,
        description="p99 latency bound of the challenger (default: problem.latency_budget_ms).",
    )
    margin: float = Field(
        0.02,
        ge=0,
        description="Non-inferiority margin on the online metric once labels arrive, relative "
        "to the champion's value: the challenger may be worse by at most this share (0.02: 2%).",
    )
    drift_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Prediction drift of the challenger against the champion fails the step "
        "when significant at this level and larger than max_drift.",
    )
    max_drift: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Distance (KS for numbers, Jensen-Shannon for labels) between the arms' "
        "predictions that fails the step. A retrained model is meant to answer differently "
        "(the bike demo's moves about 0.2); a broken one moves much further.",
    )
    max_duration: Duration = Field(
        "1d", description="A step not passed by then rolls back (no evidence is no pass)."
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(
                f"steps are increasing percentages in (0, 100], e.g. [5, 25, 50, 100] (given {steps})"
            )
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100 (given {steps}); add 100")
        return steps


class ABSpec(Section):
    """A fixed split judged by an always-valid sequential test on the online metrics."""

    split: float = Field(50, gt=0, lt=100, description="Traffic percentage of the challenger.")
    mde: float = Field(
        0.05,
        gt=0,
        description="Minimum detectable effect, relative (0.05: a 5% change of the metric); "
        "sets the test's mixing scale and the planned sample size.",
    )
    power: float = Field(0.8, gt=0, lt=1, description="Power the planner aims for.")
    max_units: int | None = Field(
        None, ge=2, description="Stop for futility after this many units (default: the plan's)."
    )
    correction: Literal["holm", "bh"] = Field(
        "holm", description="Multiple-testing correction when several online metrics decide."
    )


class BanditSpec(Section):
    """Thompson sampling over two or more versions on a reward from feedback."""

    floor: float = Field(
        0.05, ge=0, lt=0.5, description="Lowest traffic share of every arm (keeps learning)."
    )
    reward: str | None = Field(
        None, description="The online metric rewarded (default: the first of metrics.online)."
    )
    min_requests: int = Field(
        100, ge=1, description="Labelled requests of every arm before weights move."
    )
    stop_at: float = Field(
        0.95,
        gt=0.5,
        lt=1,
        description="Stop and promote when one arm's probability of being best reaches this.",
    )


class RolloutSpec(Section):
    strategy: Literal[STRATEGIES] = Field(
        "direct",
        description="How a new model takes traffic: direct (the champion alias moves at "
        "once), shadow, canary, ab or bandit (`mlsd rollout start`; and what "
        "retraining.promote: rollout uses).",
    )
    alpha: float = Field(
        0.05, gt=0, lt=0.5, description="False-positive rate of every rollout decision."
    )
    shadow: ShadowSpec = Field(default_factory=ShadowSpec, description="Shadow settings.")
    canary: CanarySpec = Field(default_factory=CanarySpec, description="Canary settings.")
    ab: ABSpec = Field(default_factory=ABSpec, description="A/B test settings.")
    bandit: BanditSpec = Field(default_factory=BanditSpec, description="Bandit settings.")
