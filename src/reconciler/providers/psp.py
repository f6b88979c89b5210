"""The payment provider (PSP) refund API as a FastAPI app.

`POST /v1/refunds` (header `Idempotency-Key: <refund_id>`):

- 200 `{"result": "succeeded", "psp_refund_ref": str, "amount": int}`: paid out once per
  refund id, ever; the same key again gets the same answer and pays nothing;
- 422 `{"result": "failed", "reason": "REFUND_NOT_SUPPORTED", "retryable": false}`: the
  payer's bank refuses QRIS refunds (decided by a hash of the payment id and the seed);
- 422 `{"result": "failed", "reason": "AMOUNT_EXCEEDS_REFUNDABLE", "retryable": false}`:
  the payment would be refunded more than `refundable_cap` in total;
- 503 `{"error": "REFUND_BLACKOUT"}` with `Retry-After` (seconds) in the nightly window;
- 503 `{"error": "PSP_UNAVAILABLE"}` in a 5xx burst;
- 502 `{"error": "PSP_UNAVAILABLE"}` after paying, as if the connection dropped: the
  payout is recorded, and a retry with the same key gets the 200 with the same ref;
- 400 `{"error": ...}` without a key, with a key that is not the body's `refund_id`, or
  with a body that does not validate.

A 200 or 422 is final for its key. `GET /v1/stats` sums the payouts: `paid_out_total`
(every payout made), `payouts` (how many), `paid_out_by_refund` (key -> amount paid),
`payouts_by_refund` (key -> how many times it was paid: a count above 1 would be a
double payment, which tests can assert never happens) and `requests`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from reconciler.providers import faults
from reconciler.providers.clock import system_clock
from reconciler.providers.common import Answer, answer_keyed, unavailable
from reconciler.providers.config import PspConfig
from reconciler.providers.journal import Journal

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi.responses import JSONResponse

    from reconciler.providers.clock import Clock


class RefundRequest(BaseModel):
    """The body of `POST /v1/refunds`; unknown extra fields are ignored."""

    model_config = ConfigDict(strict=True)

    refund_id: Annotated[str, Field(min_length=1, max_length=256)]
    payment_id: Annotated[str, Field(min_length=1, max_length=256)]
    amount: Annotated[int, Field(gt=0)]
    reason: str


UNAVAILABLE = Answer(503, {"error": "PSP_UNAVAILABLE"})
DROPPED = Answer(502, {"error": "PSP_UNAVAILABLE"})


@dataclass
class PspState:
    """Final answers by refund id, the payout ledger, and request counts.

    The ledger counts every payout, so a refund id paid twice would show in
    `payouts_by_refund` (and in the totals), not be hidden by the per-key amount.
    """

    answers: dict[str, Answer] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    paid_out_by_refund: dict[str, int] = field(default_factory=dict)
    payouts_by_refund: Counter[str] = field(default_factory=Counter)
    paid_out_total: int = 0
    refunded_by_payment: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: int = 0

    def settle(self, key: str, payment_id: str, answer: Answer) -> None:
        """Record `answer` as the final one for `key`, and its payout if it paid."""
        self.answers[key] = answer
        if answer.body.get("result") == "succeeded":
            amount = int(answer.body["amount"])
            self.paid_out_by_refund[key] = self.paid_out_by_refund.get(key, 0) + amount
            self.payouts_by_refund[key] += 1
            self.paid_out_total += amount
            self.refunded_by_payment[payment_id] += amount

    def stats(self) -> dict[str, Any]:
        """The body of `GET /v1/stats`."""
        return {
            "paid_out_total": self.paid_out_total,
            "payouts": self.payouts_by_refund.total(),
            "paid_out_by_refund": self.paid_out_by_refund,
            "payouts_by_refund": dict(self.payouts_by_refund),
            "requests": self.requests,
        }


class Psp:
    """Decides each refund request from the config, the clock and the seed."""

    def __init__(self, config: PspConfig, clock: Clock, journal: Journal) -> None:
        """Answer under `config`; replay earlier final answers (and payouts) from `journal`."""
        self.config = config
        self.clock = clock
        self.journal = journal
        self.state = PspState()
        for record in journal.load():
            answer = Answer(record["status"], record["body"])
            self.state.settle(record["key"], record["payment_id"], answer)

    def not_supported(self, payment_id: str) -> bool:
        """Whether the payer's bank behind `payment_id` refuses QRIS refunds (always the same)."""
        config = self.config
        return faults.hits(config.seed, "not-supported", payment_id, config.not_supported_rate)

    def decide(self, key: str, request: RefundRequest, attempt: int) -> Answer:
        """The answer to one valid request (the `attempt`-th with this key)."""
        config = self.config
        now = self.clock()
        if config.blackout is not None and config.blackout.contains(now):
            retry_after = max(1, math.ceil(config.blackout.seconds_left(now)))
            return Answer(503, {"error": "REFUND_BLACKOUT"}, {"Retry-After": str(retry_after)})
        if unavailable(config, self.clock, key, attempt):
            return UNAVAILABLE
        known = self.state.answers.get(key)
        if known is not None:
            return known
        answer = self._first_answer(key, request)
        record = {"key": key, "payment_id": request.payment_id}
        self.journal.append({**record, "status": answer.status, "body": answer.body})
        self.state.settle(key, request.payment_id, answer)
        if answer.status == 200 and faults.hits(  # noqa: PLR2004 - HTTP OK
            config.seed, "drop-after-pay", key, config.drop_after_pay_rate
        ):
            return DROPPED
        return answer

    def _first_answer(self, key: str, request: RefundRequest) -> Answer:
        if self.not_supported(request.payment_id):
            return _failed("REFUND_NOT_SUPPORTED")
        cap = self.config.refundable_cap
        already = self.state.refunded_by_payment.get(request.payment_id, 0)
        if cap is not None and already + request.amount > cap:
            return _failed("AMOUNT_EXCEEDS_REFUNDABLE")
        ref = "PSPR-" + faults.token(self.config.seed, "psp-ref", key).upper()
        body = {"result": "succeeded", "psp_refund_ref": ref, "amount": request.amount}
        return Answer(200, body)


def _failed(reason: str) -> Answer:
    return Answer(422, {"result": "failed", "reason": reason, "retryable": False})


def create_psp_app(
    config: PspConfig | None = None, clock: Clock = system_clock, state: Path | None = None
) -> FastAPI:
    """The PSP simulator; `state` names a JSONL payout journal that survives restarts."""
    psp = Psp(config or PspConfig(), clock, Journal(state))
    app = FastAPI(title="PSP refund simulator", docs_url=None, redoc_url=None)
    app.state.psp = psp

    @app.post("/v1/refunds")
    async def refund(request: Request) -> JSONResponse:
        return await answer_keyed(psp, request, RefundRequest, "refund_id")

    @app.get("/v1/stats")
    async def stats() -> dict[str, Any]:
        return psp.state.stats()

    return app
