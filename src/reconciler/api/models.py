"""The JSON the API takes and gives, as pydantic models: they make the OpenAPI spec.

Request bodies forbid unknown fields, so that a field the API does not take (an
`operator` name, say: it comes from the token) is refused rather than ignored. Limits
are the event contract's, so a body that validates here makes a fact that validates.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reconciler.domain.decisions import Case

if TYPE_CHECKING:
    from pydantic.config import JsonDict

NoteText = Annotated[
    str, Field(min_length=1, max_length=2000, description="Why; kept in the log with the fact.")
]
Outcome = Literal["REFUNDED_OUTSIDE", "RETRY_REFUND", "NO_MONEY_AT_STAKE"]


class Health(BaseModel):
    """Whether the process answers (it does, if you read this) and whether its store does."""

    status: Literal["ok", "degraded"] = Field(
        description="`ok` when the store answers, `degraded` when it does not."
    )
    store: Literal["ok", "unavailable"]


class OpenCase(BaseModel):
    """An escalation no one has closed yet, and the shard (source) that holds it."""

    escalation_id: str = Field(examples=["P2/REFUND_FAILED"])
    reason: Case
    order_id: str | None
    amount: int = Field(description="The money at stake, in rupiah.")
    opened_at: datetime = Field(description="The engine clock when the case was escalated.")
    source: str = Field(description="The shard: a Kafka `topic:partition`, or a file.")


class OpenCasesPage(BaseModel):
    """Some open cases, oldest first, and the cursor for the next ones (null on the last)."""

    items: list[OpenCase]
    next_cursor: str | None


_REFERENCE_REQUIRED: JsonDict = {
    "if": {"properties": {"outcome": {"const": "REFUNDED_OUTSIDE"}}, "required": ["outcome"]},
    "then": {"properties": {"reference": {"type": "string"}}, "required": ["reference"]},
}


class ResolveRequest(BaseModel):
    """Close an escalated case, saying what became of its money."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_REFERENCE_REQUIRED)

    outcome: Outcome = Field(
        description="REFUNDED_OUTSIDE: returned another way (needs `reference`); "
        "RETRY_REFUND: command the refund once more; NO_MONEY_AT_STAKE: nothing to move."
    )
    note: NoteText
    reference: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="The transfer's reference; required for REFUNDED_OUTSIDE."
    )

    @model_validator(mode="after")
    def _outside_refund_names_its_transfer(self) -> ResolveRequest:
        if self.outcome == "REFUNDED_OUTSIDE" and self.reference is None:
            msg = "outcome REFUNDED_OUTSIDE needs the transfer's reference"
            raise ValueError(msg)
        return self


class IncidentRequest(BaseModel):
    """Approve or reject the refunds held under a refund-flood incident."""

    model_config = ConfigDict(extra="forbid")

    note: NoteText


class Recorded(BaseModel):
    """A fact or decision as the log holds it: its type and id, and its own fields."""

    model_config = ConfigDict(extra="allow")

    type: str


class ActionTaken(BaseModel):
    """The operator fact written, where it went, and the decisions it led (or will lead) to.

    On the embedded default the fact is appended to the log and decided at once. For a
    case held by a Kafka partition it is produced to that partition
    (`delivered_to_kafka`), and `decisions` are those the service is expected to take.
    """

    fact: Recorded
    source: str
    delivered_to_kafka: bool
    decisions: list[Recorded]
