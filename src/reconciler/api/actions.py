"""The operator actions (operator role): resolve an escalation, approve or reject an incident.

    POST /api/v1/escalations/{escalation_id}/resolve   {"outcome", "note", "reference"?}
    POST /api/v1/incidents/{incident_id}/approve       {"note"}
    POST /api/v1/incidents/{incident_id}/reject        {"note"}

Each builds the operator fact with `reconciler.operators.operator_fact`, the operator
being the name configured for the caller's token (never a field of the body), and takes
it with `take_action`: tried on the case's shard rebuilt from the log, then appended to
the log (embedded default) or produced to the case's Kafka partition. Answers:

- 200 with the fact, where it went and the decisions it led to;
- 404 `escalation_not_found` when no open escalation has that id;
- 409 `refused` when the engine refuses the action, with its reason (an outcome that
  would leave money at risk, a case resolved as if it were an incident, ...);
- 503 when the store or Kafka does not answer.

Escalation ids hold `/` (`P2/REFUND_FAILED`, `P3/AMOUNT_MISMATCH/REFUND_FLOOD`). They
go in the path as they are: the route's `path` converter takes every character up to
the last `/resolve` (or `/approve`, `/reject`), so `/escalations/P2/REFUND_FAILED/resolve`
and `/escalations/P2%2FREFUND_FAILED/resolve` name the same case. Characters that are
not allowed in a path (`?`, `#`, `%`, spaces, ...) must be percent-encoded, as always.
"""

from http import HTTPStatus
from typing import Annotated, Any

from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Path
from pydantic import ValidationError

from reconciler.api.auth import OperatorAccess
from reconciler.api.context import PREFIX, ApiContext, Context
from reconciler.api.errors import ApiError, error_responses
from reconciler.api.models import ActionTaken, IncidentRequest, Recorded, ResolveRequest
from reconciler.kafka_io import KafkaIoError
from reconciler.kafka_io._kafka import KafkaError
from reconciler.operators import (
    OperatorActionError,
    OperatorFact,
    Taken,
    UnknownEscalationError,
    operator_fact,
    take_action,
)

router = APIRouter(prefix=PREFIX, tags=["operator actions"])

_RESPONSES = error_responses(400, 401, 403, 404, 409, 422, 503)
_OPERATOR_ONLY = {"x-required-role": "operator"}
EscalationId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=400,
        description="The Escalate command's id; its `/` may be sent as they are or as %2F.",
        examples=["P2/REFUND_FAILED"],
    ),
]
IncidentId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=400,
        description="The REFUND_FLOOD escalation's id; its `/` as they are or as %2F.",
        examples=["P3/AMOUNT_MISMATCH/REFUND_FLOOD"],
    ),
]


@router.post(
    "/escalations/{escalation_id:path}/resolve",
    summary="Close an escalated case, saying what became of its money",
    responses=_RESPONSES,
    openapi_extra=_OPERATOR_ONLY,
)
def resolve(
    escalation_id: EscalationId, body: ResolveRequest, who: OperatorAccess, context: Context
) -> ActionTaken:
    """Record an `EscalationResolved` fact for the case, if the engine accepts it."""
    fields = {"escalation_id": escalation_id, "operator": who.name, **body.model_dump()}
    return _act(context, "resolve", escalation_id, fields)


@router.post(
    "/incidents/{incident_id:path}/approve",
    summary="Approve the refunds held under a refund-flood incident: they are commanded",
    responses=_RESPONSES,
    openapi_extra=_OPERATOR_ONLY,
)
def approve(
    incident_id: IncidentId, body: IncidentRequest, who: OperatorAccess, context: Context
) -> ActionTaken:
    """Record a `HeldRefundsApproved` fact for the incident, if the engine accepts it."""
    fields = {"incident_id": incident_id, "operator": who.name, "note": body.note}
    return _act(context, "approve", incident_id, fields)


@router.post(
    "/incidents/{incident_id:path}/reject",
    summary="Reject the held refunds: none is paid, each becomes a case to settle by hand",
    responses=_RESPONSES,
    openapi_extra=_OPERATOR_ONLY,
)
def reject(
    incident_id: IncidentId, body: IncidentRequest, who: OperatorAccess, context: Context
) -> ActionTaken:
    """Record a `HeldRefundsRejected` fact for the incident, if the engine accepts it."""
    fields = {"incident_id": incident_id, "operator": who.name, "note": body.note}
    return _act(context, "reject", incident_id, fields)


def _act(context: ApiContext, kind: str, subject: str, fields: dict[str, Any]) -> ActionTaken:
    """Take the action, one at a time in this process, and map its refusals to statuses."""
    try:
        fact = operator_fact(kind, **fields)
    except ValidationError as error:  # the body validated: only the fact's own limits remain
        detail = error.errors(include_url=False, include_input=False, include_context=False)
        message = str(detail[0]["msg"]).removeprefix("Value error, ")
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_failed", message) from None
    with context.actions:
        try:
            taken = _take(context, fact, subject)
        except PersistenceError:
            message = "the log store does not answer; nothing was written"
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "store_unavailable", message) from None
        except (KafkaIoError, KafkaError):
            message = "Kafka did not take the fact; the action was not delivered"
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "kafka_unavailable", message) from None
    return ActionTaken(
        fact=Recorded.model_validate(taken.fact.model_dump(mode="json")),
        source=taken.source,
        delivered_to_kafka=taken.delivered_to_kafka,
        decisions=[Recorded.model_validate(d.model_dump(mode="json")) for d in taken.decisions],
    )


def _take(context: ApiContext, fact: OperatorFact, subject: str) -> Taken:
    """`take_action`, its refusals told apart by type: 404 for an unknown id, else 409."""
    try:
        return take_action(context.store, context.rules, fact, context.kafka_bootstrap)
    except UnknownEscalationError:
        message = f"no open escalation {subject!r}"
        raise ApiError(HTTPStatus.NOT_FOUND, "escalation_not_found", message) from None
    except OperatorActionError as error:
        raise ApiError(HTTPStatus.CONFLICT, "refused", str(error)) from None
