from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from reconciler.demo import WIB, DemoConfig
from reconciler.demo.jobs import JobDesk
from reconciler.demo.providers import issuer_config, psp_config
from reconciler.domain.events import (
    RefundFailed,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)
from reconciler.providers.clock import RequestClock
from reconciler.providers.issuer import create_issuer_app
from reconciler.providers.psp import create_psp_app

if TYPE_CHECKING:
    from fastapi import FastAPI

    from reconciler.demo.jobs import JobResult

# A calm day: no random faults, only the outage and the blackout, unless a test adds one.
CALM = DemoConfig(
    orders=0,
    seed=5,
    issuer_error_rate=0.0,
    issuer_quota_rate=0.0,
    issuer_reject_rate=0.0,
    issuer_partial_rate=0.0,
    refund_not_supported_rate=0.0,
    psp_error_rate=0.0,
    psp_drop_after_pay_rate=0.0,
    job_restart_rate=0.0,
)
MORNING = CALM.at(time(8, 0))
IN_OUTAGE = CALM.outage[0] + timedelta(minutes=5)
IN_BLACKOUT = CALM.at(time(23, 10))


class InProcess(httpx.BaseTransport):
    """Sends each request to the ASGI app its host names, in this process."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        """Route `http://<name>/...` to `apps[name]`."""
        self._apps = apps

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Run the app on the request, to the end of its answer."""

        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._apps[request.url.host])
            async with httpx.AsyncClient(transport=transport) as client:
                answer = await client.request(
                    request.method, request.url, headers=request.headers, content=request.read()
                )
                body = await answer.aread()
            return httpx.Response(answer.status_code, headers=answer.headers, content=body)

        return asyncio.run(send())


class Desk:
    """A job desk calling the issuer and PSP apps in-process, each on a request clock."""

    def __init__(self, config: DemoConfig) -> None:
        """Both simulators set up as the demo sets them up from `config`."""
        apps = {
            "issuer": create_issuer_app(issuer_config(config), RequestClock()),
            "psp": create_psp_app(psp_config(config), RequestClock()),
        }
        self.http = httpx.Client(transport=InProcess(apps))
        self.desk = JobDesk(config, self.http, "http://issuer", "http://psp")

    def handle(self, command: dict[str, Any], at: datetime) -> JobResult:
        """The desk's result for one command."""
        return self.desk.handle(command, at)

    def stats(self, provider: str) -> dict[str, Any]:
        """A simulator's `/v1/stats`."""
        body: dict[str, Any] = self.http.get(f"http://{provider}/v1/stats").json()
        return body


def issue(order_id: str, quantity: int = 1) -> dict[str, Any]:
    """An IssueStamps command as the engine sends it."""
    return {
        "command_id": f"{order_id}/issue/1",
        "type": "IssueStamps",
        "order_id": order_id,
        "quantity": quantity,
        "attempt": 1,
    }


def refund(payment_id: str, amount: int = 12_500) -> dict[str, Any]:
    """A RefundPayment command for a duplicate debit, as the engine sends it."""
    refund_id = f"{payment_id}/DUPLICATE_DEBIT"
    return {
        "command_id": f"{refund_id}/1",
        "type": "RefundPayment",
        "refund_id": refund_id,
        "order_id": "ORD-1",
        "payment_id": payment_id,
        "amount": amount,
        "reason": "DUPLICATE_DEBIT",
        "attempt": 1,
    }


def test_issue_is_answered_with_the_commands_id_after_the_result_lag() -> None:
    """Outside the outage the issuer's stamps come back as StampIssued, a lag later."""
    desk = Desk(CALM)
    result = desk.handle(issue("ORD-1", quantity=3), MORNING)
    fact = result.arrival.fact
    assert isinstance(fact, StampIssued)
    assert fact.event_id == "ORD-1/issue/1/result"
    assert fact.command_id == "ORD-1/issue/1"
    assert len(fact.serial_numbers) == 3
    assert fact.occurred_at == MORNING
    low, high = CALM.result_lag
    assert MORNING + low <= result.arrival.arrives_at <= MORNING + high
    assert (result.command_type, result.requests, result.restarted) == ("IssueStamps", 1, False)
    assert desk.stats("issuer")["stamps_issued"] == 3


def test_the_outage_is_judged_by_the_simulated_time() -> None:
    """An issue sent at a simulated time inside the outage fails retryably; before it, passes."""
    desk = Desk(CALM)
    failed = desk.handle(issue("ORD-2"), IN_OUTAGE).arrival.fact
    assert isinstance(failed, StampIssuanceFailed)
    assert failed.retryable
    assert failed.reason.startswith("ISSUER_UNREACHABLE")
    assert failed.command_id == "ORD-2/issue/1"
    assert isinstance(desk.handle(issue("ORD-3"), MORNING).arrival.fact, StampIssued)


def test_refund_job_retries_in_simulated_time_through_the_blackout_window() -> None:
    """In the blackout the refund job waits out Retry-After (up to its cap) in simulated time."""
    desk = Desk(CALM)
    result = desk.handle(refund("PAY-1"), IN_BLACKOUT)
    fact = result.arrival.fact
    assert isinstance(fact, RefundFailed)
    assert fact.retryable
    assert fact.reason.startswith("PSP_UNREACHABLE")
    # The blackout's Retry-After (over an hour) is honoured up to the backoff cap, and
    # the job stops before its deadline: two calls, the answer dated a cap later.
    assert result.requests == 2
    assert fact.occurred_at == IN_BLACKOUT + CALM.job_backoff_cap
    assert desk.stats("psp")["payouts"] == 0


def test_a_refund_whose_answer_was_lost_is_asked_again_and_paid_once() -> None:
    """A 502 after the payout is retried with the same key: one payout, the same reference."""
    desk = Desk(replace(CALM, psp_drop_after_pay_rate=1.0))
    result = desk.handle(refund("PAY-2"), MORNING)
    fact = result.arrival.fact
    assert isinstance(fact, RefundSucceeded)
    assert fact.amount == 12_500
    assert result.requests == 2
    stats = desk.stats("psp")
    assert stats["payouts"] == 1
    assert stats["paid_out_by_refund"] == {"PAY-2/DUPLICATE_DEBIT": 12_500}
    assert stats["requests"] == 2


def test_a_restarted_job_asks_again_and_is_told_the_same() -> None:
    """A job that died before publishing asks again minutes later; nothing is issued twice."""
    desk = Desk(replace(CALM, job_restart_rate=1.0))
    result = desk.handle(issue("ORD-4", quantity=2), MORNING)
    fact = result.arrival.fact
    assert isinstance(fact, StampIssued)
    assert result.restarted
    assert result.requests == 2
    low, high = CALM.job_restart_after
    assert MORNING + low <= fact.occurred_at <= MORNING + high
    stats = desk.stats("issuer")
    assert stats["requests"] == 2
    assert stats["issues_by_key"] == {"ORD-4/issue/1": list(fact.serial_numbers)}


def test_the_same_commands_get_the_same_answers() -> None:
    """Two desks on fresh simulators answer one command list identically."""
    noisy = replace(CALM, issuer_partial_rate=0.5, job_restart_rate=0.3)
    commands = [issue(f"ORD-{n}", quantity=3) for n in range(20)]
    first, second = Desk(noisy), Desk(noisy)
    for command in commands:
        assert first.handle(command, MORNING) == second.handle(command, MORNING)


def test_an_escalation_is_no_command_for_a_provider() -> None:
    """The desk refuses an Escalate: the jobs hand those to people."""
    escalate = {"command_id": "A1/DOUBLE_REMEDY", "type": "Escalate", "order_id": "A1"}
    with pytest.raises(ValueError, match="Escalate"):
        Desk(CALM).handle(escalate, MORNING)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outage_start": time(9, 50, 30)}, "outage"),
        ({"refund_blackout_duration": timedelta(minutes=90, seconds=1)}, "refund_blackout"),
        ({"refund_job_attempts": 0}, "attempts"),
        ({"result_lag": (timedelta(seconds=60), timedelta(seconds=30))}, "result_lag"),
        ({"psp_drop_after_pay_rate": 2.0}, "psp_drop_after_pay_rate"),
    ],
)
def test_config_refuses_jobs_and_providers_it_cannot_set_up(
    change: dict[str, Any], message: str
) -> None:
    """Provider windows are whole minutes, jobs try at least once, lags run low to high."""
    with pytest.raises(ValueError, match=message):
        DemoConfig(**change)


def test_a_day_without_outage_or_blackout_is_allowed() -> None:
    """Zero-length windows mean none, as the demo passes them to the simulators."""
    config = DemoConfig(outage_duration=timedelta(0), refund_blackout_duration=timedelta(0))
    assert not config.in_outage(datetime(2024, 9, 4, 10, 0, tzinfo=WIB))
