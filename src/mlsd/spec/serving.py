"""Steps 7-8 of system.yaml: the HTTP server and how a new model takes traffic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from mlsd.spec.base import Section, not_available_yet


class ServingSpec(Section):
    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port of the HTTP server.")
    on_invalid: Literal["reject", "flag"] = Field(
        "flag",
        description="Numbers outside the training range and unseen categories: flag the "
        "instance in the prediction log and answer it (monitoring counts the flags), or "
        "reject it as invalid.",
    )
    partial: bool = Field(
        False,
        description="A request mixing valid and invalid instances: false refuses it whole "
        "(422); true answers the valid ones and gives each invalid one its problems.",
    )
    unknown_fields: Literal["ignore", "reject"] = Field(
        "ignore", description="Fields the model does not know: ignore (and count) or reject."
    )
    max_instances: int = Field(1000, ge=1, le=1_000_000, description="Instances per request.")
    max_body_bytes: int = Field(
        10_000_000, ge=1024, description="Largest request body accepted; larger gets 413."
    )
    poll_s: float = Field(
        5.0,
        ge=0,
        description="How often the server checks whether the champion alias moved; "
        "0 turns polling off (reload with POST /v1/admin/reload).",
    )
    log_flush_s: float = Field(
        1.0, gt=0, le=60, description="The prediction log makes rows durable at least this often."
    )
    batch_rows: int = Field(
        100_000, ge=1, description="Rows per chunk in batch scoring (`mlsd predict`)."
    )


class RolloutSpec(Section):
    strategy: Literal["direct", "shadow", "canary", "ab", "bandit"] = Field(
        "direct",
        description="How a new model takes traffic: direct (the champion alias moves; the "
        "server follows). shadow, canary, ab and bandit: not available yet.",
    )

    @field_validator("strategy")
    @classmethod
    def _available(cls, value: str) -> str:
        if value != "direct":
            raise not_available_yet(value, "direct", "step 8, [rollout]")
        return value

    steps: list[int] = Field(
        default_factory=lambda: [10, 50, 100], description="Canary traffic percentages."
    )
