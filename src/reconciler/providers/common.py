"""What both simulators share: reading a keyed request, final answers, 5xx bursts, delays."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from reconciler.providers import faults
from reconciler.providers.clock import SIMULATED_TIME_HEADER, RequestClock

if TYPE_CHECKING:
    from fastapi import Request

    from reconciler.providers.clock import Clock
    from reconciler.providers.config import CommonFaults

IDEMPOTENCY_HEADER = "Idempotency-Key"
M = TypeVar("M", bound=BaseModel)
M_contra = TypeVar("M_contra", bound=BaseModel, contravariant=True)


@dataclass(frozen=True)
class Answer:
    """A response the simulator gives: status code, JSON body, extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None

    def response(self) -> JSONResponse:
        """As a FastAPI response."""
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def bad_request(error: str, **details: Any) -> Answer:  # noqa: ANN401 - JSON details
    """400 with `{"error": error, ...details}`."""
    return Answer(400, {"error": error, **details})


async def read_keyed(request: Request, model: type[M], key_field: str) -> tuple[str, M] | Answer:
    """The request's idempotency key and validated body, or the 400 that refuses it.

    The key must be present, non-blank, and equal to the body's `key_field`.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not key:
        return bad_request("MISSING_IDEMPOTENCY_KEY")
    try:
        body = model.model_validate_json(await request.body())
    except ValidationError as exc:
        detail = exc.errors(include_url=False, include_context=False, include_input=False)
        return bad_request("INVALID_REQUEST", detail=detail)
    if getattr(body, key_field) != key:
        return bad_request("IDEMPOTENCY_KEY_MISMATCH", detail=f"{key_field} must equal the key")
    return key, body


def unavailable(config: CommonFaults, clock: Clock, key: str, attempt: int) -> bool:
    """Whether this request falls in a 5xx burst."""
    if config.error_rate <= 0:
        return False
    if config.burst_seconds > 0:
        bucket = math.floor(clock().timestamp() / config.burst_seconds)
        return faults.hits(config.seed, "burst", str(bucket), config.error_rate)
    return faults.hits(config.seed, "error", key, config.error_rate, attempt)


class _Counters(Protocol):
    requests: int
    attempts: dict[str, int]


class KeyedSimulator(Protocol[M_contra]):
    """A simulator that answers one request per idempotency key (the issuer, the PSP)."""

    @property
    def config(self) -> CommonFaults:
        """Its fault settings."""
        ...

    @property
    def state(self) -> _Counters:
        """Its request counters."""
        ...

    @property
    def clock(self) -> Clock:
        """Where it reads the time its windows and bursts are judged by."""
        ...

    def decide(self, key: str, body: M_contra, attempt: int) -> Answer:
        """The answer to this key's `attempt`-th request."""
        ...


def read_request_time(clock: Clock, request: Request) -> Answer | None:
    """On a `RequestClock`, set its time from the request; the 400 to send if unusable."""
    if not isinstance(clock, RequestClock):
        return None
    problem = clock.read(request.headers.get(SIMULATED_TIME_HEADER))
    return None if problem is None else bad_request("INVALID_SIMULATED_TIME", detail=problem)


async def answer_keyed(
    simulator: KeyedSimulator[M], request: Request, model: type[M], key_field: str
) -> JSONResponse:
    """Count the request, validate it, decide its answer, and hold it back when slow.

    On a `RequestClock` the request must state its time: without a usable
    `X-Simulated-Time` it gets 400 INVALID_SIMULATED_TIME, and counts as no attempt.
    """
    simulator.state.requests += 1
    parsed = await read_keyed(request, model, key_field)
    if isinstance(parsed, Answer):
        return parsed.response()
    refused = read_request_time(simulator.clock, request)
    if refused is not None:
        return refused.response()
    key, body = parsed
    attempt = simulator.state.attempts.get(key, 0) + 1
    simulator.state.attempts[key] = attempt
    answer = simulator.decide(key, body, attempt)
    await maybe_slow(simulator.config, key, attempt)
    return answer.response()


async def maybe_slow(config: CommonFaults, key: str, attempt: int) -> None:
    """Hold the answer back `slow_seconds` when this (key, attempt) draws a slow answer."""
    if config.slow_seconds > 0 and faults.hits(config.seed, "slow", key, config.slow_rate, attempt):
        await asyncio.sleep(config.slow_seconds)
