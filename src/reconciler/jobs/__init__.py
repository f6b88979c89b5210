"""The issuance and refund jobs: the engine's commands in, provider calls, result facts out.

- `clients`: the stamp issuer's and the payment provider's HTTP APIs, with typed answers;
- `retry`: exponential backoff with jitter, for transient failures only (by type);
- `handlers`: one command in, one result fact out (`IssuanceJob`, `RefundJob`, `Dispatcher`);
- `runner`: the Kafka consumer-group loop that commits a command only after its result;
- `outbox`: the same on the embedded default, reading the log's decisions directly;
- `cli`: `reconciler jobs run`.
"""

from __future__ import annotations

from reconciler.jobs.clients import (
    IssueAnswer,
    IssuedAnswer,
    IssuerClient,
    MalformedAnswerError,
    PspClient,
    RefundAnswer,
    RefundDeclinedAnswer,
    RefundPaidAnswer,
    RejectedAnswer,
    TransportFailureError,
    UnexpectedStatusError,
)
from reconciler.jobs.handlers import (
    Dispatcher,
    InvalidCommandError,
    IssuanceJob,
    RefundJob,
    result_event_id,
)
from reconciler.jobs.outbox import OutboxHooks, OutboxRunner
from reconciler.jobs.retry import BackoffPolicy, Retrier, RetriesExhaustedError, TransientError
from reconciler.jobs.runner import JobRunner, RunnerHooks

__all__ = [
    "BackoffPolicy",
    "Dispatcher",
    "InvalidCommandError",
    "IssuanceJob",
    "IssueAnswer",
    "IssuedAnswer",
    "IssuerClient",
    "JobRunner",
    "MalformedAnswerError",
    "OutboxHooks",
    "OutboxRunner",
    "PspClient",
    "RefundAnswer",
    "RefundDeclinedAnswer",
    "RefundJob",
    "RefundPaidAnswer",
    "RejectedAnswer",
    "Retrier",
    "RetriesExhaustedError",
    "RunnerHooks",
    "TransientError",
    "TransportFailureError",
    "UnexpectedStatusError",
    "result_event_id",
]
