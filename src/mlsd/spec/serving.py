"""Step 7 of system.yaml: the HTTP server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mlsd.spec.base import Section


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
