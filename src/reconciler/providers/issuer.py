"""The stamp issuer (Peruri's e-meterai service) as a FastAPI app.

`POST /v1/stamps/issue` (header `Idempotency-Key: <command_id>`):

- 200 `{"result": "issued", "serial_numbers": [...]}`: every stamp requested;
- 200 `{"result": "partial", "serial_numbers": [...]}`: fewer, at least one;
- 422 `{"result": "rejected", "reason": "ORDER_NOT_ELIGIBLE", "retryable": false}` or
  `{"result": "rejected", "reason": "QUOTA_EXCEEDED", "retryable": true}`;
- 503 `{"error": "ISSUER_UNAVAILABLE"}` in the outage window or a 5xx burst (transient);
- 400 `{"error": ...}` without a key, with a key that is not the body's `command_id`, or
  with a body that does not validate.

A 200 or 422 is final for its key: the same key gets the same answer again and never new
serials.

`GET /v1/stamps/issue/{key}` (the key URL-encoded: command ids hold `/`) is an inquiry,
for a caller that gave up waiting on an issue and must not issue again:

- 200 or 422 with the final answer stored for that key, exactly as the POST gave it;
- 404 `{"error": "UNKNOWN_KEY"}` if no issue with that key was ever settled;
- 503 `{"error": "ISSUER_UNAVAILABLE"}` in the outage window or a time-bucket 5xx burst.

An inquiry never issues, never settles a key, and is not slowed. `GET /v1/stats` counts
what was issued, the issue requests (`requests`) and the inquiries (`inquiries`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from reconciler.providers import faults
from reconciler.providers.clock import system_clock
from reconciler.providers.common import Answer, answer_keyed, read_request_time, unavailable
from reconciler.providers.config import IssuerConfig
from reconciler.providers.journal import Journal

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.responses import JSONResponse

    from reconciler.providers.clock import Clock

MAX_QUANTITY = 100


class IssueRequest(BaseModel):
    """The body of `POST /v1/stamps/issue`; unknown extra fields are ignored."""

    model_config = ConfigDict(strict=True)

    command_id: Annotated[str, Field(min_length=1, max_length=256)]
    order_id: Annotated[str, Field(min_length=1, max_length=256)]
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]


UNAVAILABLE = Answer(503, {"error": "ISSUER_UNAVAILABLE"})
UNKNOWN_KEY = Answer(404, {"error": "UNKNOWN_KEY"})


@dataclass
class IssuerState:
    """Final answers by command id, the serials handed out, and request counts."""

    answers: dict[str, Answer] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    serials: set[str] = field(default_factory=set)
    issues_by_key: dict[str, list[str]] = field(default_factory=dict)
    requests: int = 0
    inquiries: int = 0

    def settle(self, key: str, answer: Answer) -> None:
        """Record `answer` as the final one for `key`."""
        self.answers[key] = answer
        serials = answer.body.get("serial_numbers")
        if serials:
            self.issues_by_key[key] = list(serials)
            self.serials.update(serials)

    def stats(self) -> dict[str, Any]:
        """The body of `GET /v1/stats`."""
        return {
            "stamps_issued": sum(len(s) for s in self.issues_by_key.values()),
            "requests": self.requests,
            "inquiries": self.inquiries,
            "issues_by_key": self.issues_by_key,
        }


class Issuer:
    """Decides each issue request from the config, the clock and the seed."""

    def __init__(self, config: IssuerConfig, clock: Clock, journal: Journal) -> None:
        """Answer under `config`; replay earlier final answers from `journal`."""
        self.config = config
        self.clock = clock
        self.journal = journal
        self.state = IssuerState()
        for record in journal.load():
            self.state.settle(record["key"], Answer(record["status"], record["body"]))

    def decide(self, key: str, request: IssueRequest, attempt: int) -> Answer:
        """The answer to one valid request (the `attempt`-th with this key)."""
        config = self.config
        if config.outage is not None and config.outage.contains(self.clock()):
            return UNAVAILABLE
        if unavailable(config, self.clock, key, attempt):
            return UNAVAILABLE
        known = self.state.answers.get(key)
        if known is not None:
            return known
        answer = self._first_answer(key, request)
        self.journal.append({"key": key, "status": answer.status, "body": answer.body})
        self.state.settle(key, answer)
        return answer

    def inquire(self, key: str) -> Answer:
        """The answer to an inquiry about `key`: its final answer, or 404; never issues.

        Judged by the same clock as an issue: the outage window and time-bucket bursts
        answer 503, since the issuer is down for everyone then. Per-request 5xx draws do
        not apply (they are drawn per issue attempt).
        """
        self.state.inquiries += 1
        config = self.config
        if config.outage is not None and config.outage.contains(self.clock()):
            return UNAVAILABLE
        if config.burst_seconds > 0 and unavailable(config, self.clock, key, 0):
            return UNAVAILABLE
        return self.state.answers.get(key, UNKNOWN_KEY)

    def _first_answer(self, key: str, request: IssueRequest) -> Answer:
        config = self.config
        draw = faults.rng(config.seed, "refusal", key).random()
        if draw < config.reject_rate:
            return _rejected("ORDER_NOT_ELIGIBLE", retryable=False)
        if draw < config.reject_rate + config.quota_rate:
            return _rejected("QUOTA_EXCEEDED", retryable=True)
        quantity = request.quantity
        if quantity > 1 and faults.hits(config.seed, "partial", key, config.partial_rate):
            delivered = faults.rng(config.seed, "partial-count", key).randint(1, quantity - 1)
            return Answer(
                200, {"result": "partial", "serial_numbers": self._serials(key, delivered)}
            )
        return Answer(200, {"result": "issued", "serial_numbers": self._serials(key, quantity)})

    def _serials(self, key: str, count: int) -> list[str]:
        """`count` new serials, deterministic for (seed, key), never one handed out before."""
        serials: list[str] = []
        index = 0
        while len(serials) < count:
            serial = "SIM-" + faults.token(self.config.seed, "serial", key, index).upper()
            index += 1
            if serial not in self.state.serials and serial not in serials:
                serials.append(serial)
        return serials


def _rejected(reason: str, *, retryable: bool) -> Answer:
    return Answer(422, {"result": "rejected", "reason": reason, "retryable": retryable})


def create_issuer_app(
    config: IssuerConfig | None = None, clock: Clock = system_clock, state: Path | None = None
) -> FastAPI:
    """The issuer simulator; `state` names a JSONL journal that survives restarts."""
    issuer = Issuer(config or IssuerConfig(), clock, Journal(state))
    app = FastAPI(title="Stamp issuer simulator", docs_url=None, redoc_url=None)
    app.state.issuer = issuer

    @app.post("/v1/stamps/issue")
    async def issue(request: Request) -> JSONResponse:
        return await answer_keyed(issuer, request, IssueRequest, "command_id")

    @app.get("/v1/stamps/issue/{key:path}")
    async def inquire(key: str, request: Request) -> JSONResponse:
        refused = read_request_time(issuer.clock, request)
        if refused is not None:
            return refused.response()
        return issuer.inquire(key).response()

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return issuer.state.stats()

    return app
