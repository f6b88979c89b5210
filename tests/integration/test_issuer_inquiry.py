"""The issuer's inquiry, and the issuance job's recovery through it, against the real simulator.

The simulator runs as a process (`reconciler simulate issuer`). An issue answered slower
than the job's timeout is decided, and its serials handed out, before the answer is held
back: the job gives up with a retryable failure, parks the command, and finds the serials
by inquiry, which never issues.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from reconciler.domain.events import StampIssuanceFailed, StampIssued
from reconciler.jobs.clients import IssuerClient
from reconciler.jobs.handlers import IssuanceJob
from reconciler.jobs.retry import BackoffPolicy, Retrier
from tests.provider_support import running_simulator

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

    from tests.provider_support import Simulator

ISSUE = "/v1/stamps/issue"
SLOW_S = 1.0
TIMEOUT_S = 0.2


def _running(
    tmp_path_factory: pytest.TempPathFactory, *args: str
) -> AbstractContextManager[Simulator]:
    """`reconciler simulate issuer ARGS...` as a process, its log in a fresh temp folder."""
    return running_simulator("issuer", *args, log=tmp_path_factory.mktemp("issuer") / "sim.log")


@pytest.fixture(scope="module")
def slow_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """An issuer that holds every issue answer back `SLOW_S` after deciding it."""
    with _running(
        tmp_path_factory, "--seed=5", "--slow-rate=1.0", f"--slow-seconds={SLOW_S}"
    ) as sim:
        yield sim


def _inquire(sim: Simulator, key: str) -> httpx.Response:
    """`GET /v1/stamps/issue/{key}`, the key URL-encoded."""
    return sim.client.get(f"{ISSUE}/{urllib.parse.quote(key, safe='')}")


def _issue(sim: Simulator, key: str, quantity: int = 1) -> httpx.Response:
    """POST an issue with `command_id` = the key, waiting out a slow answer."""
    return sim.post(ISSUE, {"command_id": key, "order_id": "O1", "quantity": quantity}, key)


def _unchanged(stats: dict[str, Any]) -> tuple[Any, ...]:
    """What an inquiry must not change: stamps, issue requests, serials by key."""
    return stats["stamps_issued"], stats["requests"], stats["issues_by_key"]


def test_a_slow_issue_outlasting_the_timeout_is_recovered_as_late_stamps(
    slow_issuer: Simulator,
) -> None:
    """Every try times out -> StampIssuanceFailed; recovery -> StampIssued, same command.

    The late fact carries the serials the issuer handed out under that command id, and
    the inquiry issued nothing more.
    """
    command = {"command_id": "L1/issue/1", "type": "IssueStamps", "order_id": "L1", "quantity": 2}
    retrier = Retrier(BackoffPolicy(attempts=2, base_s=0.01, cap_s=0.01, deadline_s=5.0))
    with httpx.Client() as http:
        job = IssuanceJob(
            IssuerClient(http, slow_issuer.url, timeout_s=TIMEOUT_S),
            retrier,
            inquiry_interval_s=0.0,
        )
        failed = job.handle(command)
        assert isinstance(failed, StampIssuanceFailed)
        assert failed.retryable is True
        assert failed.reason.startswith(f"ISSUER_UNREACHABLE: issuer timed out after {TIMEOUT_S}")
        assert job.parked == ("L1/issue/1",)
        before = slow_issuer.stats()
        (late,) = job.recover()
        after = slow_issuer.stats()
    serials = before["issues_by_key"]["L1/issue/1"]
    assert len(serials) == 2
    assert isinstance(late.fact, StampIssued)
    assert late.fact.command_id == "L1/issue/1"
    assert late.fact.event_id == "L1/issue/1/late/result"
    assert late.fact.order_id == "L1"
    assert list(late.fact.serial_numbers) == serials
    assert _unchanged(after) == _unchanged(before)
    assert after["inquiries"] == before["inquiries"] + 1


def test_an_inquiry_gives_the_stored_answer_or_unknown_key_and_never_issues(
    slow_issuer: Simulator,
) -> None:
    """404 UNKNOWN_KEY before any issue (and issues nothing); then exactly the POST's answer."""
    key = "Q 1/issue/1?x#y"  # a key with `/`, a space, `?` and `#`: URL-encoded
    before = slow_issuer.stats()
    unknown = _inquire(slow_issuer, key)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "UNKNOWN_KEY"})
    assert _unchanged(slow_issuer.stats()) == _unchanged(before)
    posted = _issue(slow_issuer, key, quantity=3)
    assert posted.status_code == 200
    middle = slow_issuer.stats()
    answers = [_inquire(slow_issuer, key) for _ in range(3)]
    assert [(a.status_code, a.json()) for a in answers] == [(200, posted.json())] * 3
    after = slow_issuer.stats()
    assert _unchanged(after) == _unchanged(middle)
    assert after["inquiries"] == before["inquiries"] + 4


def test_an_inquiry_in_the_outage_window_is_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Inside the daily outage window (10:00-11:00 WIB, now 10:15) an inquiry gets 503."""
    args = ("--clock-start=2024-09-04T10:15:00+07:00", "--outage-start=10:00")
    with _running(tmp_path_factory, *args, "--outage-minutes=60") as sim:
        response = _inquire(sim, "O1/issue/1")
        assert (response.status_code, response.json()) == (503, {"error": "ISSUER_UNAVAILABLE"})
        assert sim.stats()["inquiries"] == 1


def test_a_restarted_issuer_answers_inquiries_from_its_journal(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With `--state`, the stored answer survives a restart: the inquiry still finds it."""
    journal = tmp_path_factory.mktemp("journal") / "issuer.jsonl"
    with _running(tmp_path_factory, "--seed=5", f"--state={journal}") as first:
        posted = _issue(first, "R1/issue/1", quantity=2).json()
    with _running(tmp_path_factory, "--seed=5", f"--state={journal}") as second:
        response = _inquire(second, "R1/issue/1")
        assert (response.status_code, response.json()) == (200, posted)
        assert second.stats()["requests"] == 0
