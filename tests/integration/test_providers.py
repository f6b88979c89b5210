"""The provider simulators as real HTTP servers in subprocesses, driven with httpx."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.providers.clock import JAKARTA
from tests.provider_support import running_simulator

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

    import httpx

    from tests.provider_support import Simulator

ISSUE = "/v1/stamps/issue"
REFUNDS = "/v1/refunds"


def _running(
    tmp_path_factory: pytest.TempPathFactory, kind: str, *args: str
) -> AbstractContextManager[Simulator]:
    """`reconciler simulate KIND ARGS...` as a process, its log in a fresh temp folder."""
    return running_simulator(kind, *args, log=tmp_path_factory.mktemp(kind) / "simulator.log")


def issue(sim: Simulator, key: str, quantity: int = 1, order_id: str = "A1") -> httpx.Response:
    """POST an issue with `command_id` = the key."""
    return sim.post(ISSUE, {"command_id": key, "order_id": order_id, "quantity": quantity}, key)


def refund(
    sim: Simulator, key: str, payment_id: str = "P1", amount: int = 12_500
) -> httpx.Response:
    """POST a refund with `refund_id` = the key."""
    body = {"refund_id": key, "payment_id": payment_id, "amount": amount, "reason": "TEST"}
    return sim.post(REFUNDS, body, key)


def _json(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    return body


# --- issuer ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """A healthy issuer whose daily outage (10:00-11:00) is not now (11:30)."""
    with _running(
        tmp_path_factory,
        "issuer",
        "--seed=7",
        "--clock-start=2024-09-04T11:30:00+07:00",
        "--outage-start=10:00",
        "--outage-minutes=60",
    ) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def partial_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """An issuer that short-delivers every issue it can."""
    with _running(tmp_path_factory, "issuer", "--seed=7", "--partial-rate=1.0") as simulator:
        yield simulator


def test_issue_delivers_every_stamp_requested(issuer: Simulator) -> None:
    """An issuer outside its outage window issues all requested stamps as SIM- serials."""
    response = issue(issuer, "A1/issue/1", quantity=3)
    assert response.status_code == 200
    body = _json(response)
    assert body["result"] == "issued"
    assert len(body["serial_numbers"]) == 3
    assert len(set(body["serial_numbers"])) == 3
    assert all(serial.startswith("SIM-") for serial in body["serial_numbers"])


def test_repeated_issue_key_returns_the_same_serials_and_issues_nothing(issuer: Simulator) -> None:
    """The same Idempotency-Key gets the same answer, and no new stamps are issued."""
    first = issue(issuer, "A2/issue/1", quantity=2, order_id="A2")
    issued = issuer.stats()["stamps_issued"]
    again = [issue(issuer, "A2/issue/1", quantity=2, order_id="A2") for _ in range(3)]
    assert first.status_code == 200
    assert all(r.status_code == 200 and r.json() == first.json() for r in again)
    stats = issuer.stats()
    assert stats["stamps_issued"] == issued
    assert stats["issues_by_key"]["A2/issue/1"] == first.json()["serial_numbers"]


def test_serials_are_unique_across_requests(issuer: Simulator) -> None:
    """Serials never repeat across distinct command ids."""
    serials: list[str] = []
    for n in range(25):
        response = issue(issuer, f"U{n}/issue/1", quantity=1 + n % 4, order_id=f"U{n}")
        assert response.status_code == 200
        serials.extend(response.json()["serial_numbers"])
    assert len(serials) == sum(1 + n % 4 for n in range(25))
    assert len(set(serials)) == len(serials)
    every = [s for issued in issuer.stats()["issues_by_key"].values() for s in issued]
    assert len(set(every)) == len(every)


def test_issue_stats_count_requests_stamps_and_serials_by_key(issuer: Simulator) -> None:
    """`/v1/stats` counts every POST, and each key's serials, once."""
    before = issuer.stats()
    response = issue(issuer, "S1/issue/1", quantity=4, order_id="S1")
    issue(issuer, "S1/issue/1", quantity=4, order_id="S1")
    issuer.post(ISSUE, {"command_id": "S2/issue/1"}, None)
    after = issuer.stats()
    assert after["requests"] == before["requests"] + 3
    assert after["stamps_issued"] == before["stamps_issued"] + 4
    assert after["issues_by_key"]["S1/issue/1"] == response.json()["serial_numbers"]
    assert "S2/issue/1" not in after["issues_by_key"]


def test_issue_without_idempotency_key_is_400(issuer: Simulator) -> None:
    """No Idempotency-Key header: 400, and nothing is issued."""
    before = issuer.stats()["stamps_issued"]
    response = issuer.post(ISSUE, {"command_id": "K1", "order_id": "K", "quantity": 1}, None)
    assert response.status_code == 400
    assert response.json() == {"error": "MISSING_IDEMPOTENCY_KEY"}
    assert issuer.stats()["stamps_issued"] == before


@pytest.mark.parametrize(
    "body",
    [
        {"command_id": "V1", "quantity": 1},
        {"command_id": "V1", "order_id": "V", "quantity": "1"},
        {"command_id": "V1", "order_id": "V", "quantity": 0},
        {"command_id": "V1", "order_id": "V", "quantity": 101},
        "{not json",
    ],
    ids=["missing-order", "quantity-string", "quantity-zero", "quantity-too-big", "not-json"],
)
def test_issue_with_an_invalid_body_is_400(issuer: Simulator, body: dict[str, Any] | str) -> None:
    """A body that does not validate is refused with 400 INVALID_REQUEST."""
    response = issuer.post(ISSUE, body, "V1")
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_REQUEST"
    assert "V1" not in issuer.stats()["issues_by_key"]


def test_issue_key_must_name_the_command(issuer: Simulator) -> None:
    """An Idempotency-Key other than the body's command_id is refused with 400."""
    body = {"command_id": "M1/issue/1", "order_id": "M1", "quantity": 1}
    response = issuer.post(ISSUE, body, "M1/issue/2")
    assert response.status_code == 400
    assert response.json()["error"] == "IDEMPOTENCY_KEY_MISMATCH"


def test_partial_delivery_is_fewer_but_at_least_one_and_final(partial_issuer: Simulator) -> None:
    """A partial issue delivers 1..quantity-1 stamps, and the same key gets the same answer."""
    first = issue(partial_issuer, "PA1/issue/1", quantity=5, order_id="PA1")
    again = issue(partial_issuer, "PA1/issue/1", quantity=5, order_id="PA1")
    assert first.status_code == 200
    body = _json(first)
    assert body["result"] == "partial"
    assert 1 <= len(body["serial_numbers"]) <= 4
    assert again.json() == body
    assert partial_issuer.stats()["stamps_issued"] == len(body["serial_numbers"])


def test_partial_rate_never_shortens_a_single_stamp(partial_issuer: Simulator) -> None:
    """One stamp cannot be delivered in part: quantity 1 is issued whole."""
    response = issue(partial_issuer, "PA2/issue/1", quantity=1, order_id="PA2")
    assert response.status_code == 200
    assert response.json()["result"] == "issued"
    assert len(response.json()["serial_numbers"]) == 1


def test_rejection_is_final_and_not_retryable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """ORDER_NOT_ELIGIBLE is a 422 with retryable false, the same for every repeat."""
    with _running(tmp_path_factory, "issuer", "--reject-rate=1.0") as sim:
        answers = [issue(sim, "R1/issue/1") for _ in range(3)]
        expected = {"result": "rejected", "reason": "ORDER_NOT_ELIGIBLE", "retryable": False}
        assert [(r.status_code, r.json()) for r in answers] == [(422, expected)] * 3
        assert sim.stats()["stamps_issued"] == 0


def test_quota_exceeded_is_a_retryable_rejection_answered_slowly(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """QUOTA_EXCEEDED is a 422 with retryable true; a slow-rate 1.0 holds each answer back."""
    args = ("--quota-rate=1.0", "--slow-rate=1.0", "--slow-seconds=0.4")
    with _running(tmp_path_factory, "issuer", *args) as sim:
        started = time.monotonic()
        response = issue(sim, "Q1/issue/1")
        assert time.monotonic() - started >= 0.4
        assert response.status_code == 422
        assert response.json() == {
            "result": "rejected",
            "reason": "QUOTA_EXCEEDED",
            "retryable": True,
        }


def test_issuer_error_rate_one_always_answers_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With error rate 1.0 every request, repeats included, is 503 and nothing is issued."""
    with _running(tmp_path_factory, "issuer", "--error-rate=1.0") as sim:
        answers = [issue(sim, f"E{n % 2}/issue/1", quantity=2) for n in range(6)]
        assert {r.status_code for r in answers} == {503}
        assert all(r.json() == {"error": "ISSUER_UNAVAILABLE"} for r in answers)
        assert sim.stats() == {
            "stamps_issued": 0,
            "requests": 6,
            "inquiries": 0,
            "issues_by_key": {},
        }


def test_issuer_outage_window_answers_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Inside the daily outage window (10:00-11:00 WIB, now 10:15) every issue gets 503."""
    args = ("--clock-start=2024-09-04T10:15:00+07:00", "--outage-start=10:00")
    with _running(tmp_path_factory, "issuer", *args, "--outage-minutes=60") as sim:
        answers = [issue(sim, "O1/issue/1") for _ in range(3)]
        assert {r.status_code for r in answers} == {503}
        assert answers[0].json() == {"error": "ISSUER_UNAVAILABLE"}
        assert sim.stats()["stamps_issued"] == 0


def test_same_seed_and_requests_give_the_same_answers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Two issuers with the same seed answer the same requests identically."""
    args = ("--seed=42", "--partial-rate=0.5", "--reject-rate=0.2")
    runs: list[list[dict[str, Any]]] = []
    for _ in range(2):
        with _running(tmp_path_factory, "issuer", *args) as sim:
            answers = [issue(sim, f"D{n}/issue/1", quantity=3) for n in range(12)]
        runs.append([_json(answer) for answer in answers])
    assert runs[0] == runs[1]
    assert {answer["result"] for answer in runs[0]} == {"issued", "partial", "rejected"}


# --- payment provider ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def psp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """A healthy PSP at 23:30 WIB with the blackout switched off, every bank refunding."""
    with _running(
        tmp_path_factory,
        "psp",
        "--blackout=none",
        "--not-supported-rate=0",
        "--clock-start=2024-09-04T23:30:00+07:00",
    ) as simulator:
        yield simulator


def test_refund_pays_once_and_a_repeat_gets_the_same_answer(psp: Simulator) -> None:
    """One refund id pays its amount once; repeats get the same ref and pay nothing."""
    answers = [refund(psp, "P10/PAID_NOT_ISSUED", payment_id="P10") for _ in range(3)]
    assert [r.status_code for r in answers] == [200] * 3
    body = _json(answers[0])
    assert body["result"] == "succeeded"
    assert body["amount"] == 12_500
    assert body["psp_refund_ref"].startswith("PSPR-")
    assert all(r.json() == body for r in answers)
    stats = psp.stats()
    assert stats["paid_out_by_refund"]["P10/PAID_NOT_ISSUED"] == 12_500
    assert stats["payouts"] == len(stats["paid_out_by_refund"])
    assert stats["paid_out_total"] == sum(stats["paid_out_by_refund"].values())


def test_concurrent_repeats_of_one_refund_pay_once(psp: Simulator) -> None:
    """Ten simultaneous requests with one refund id get one answer and one payout."""
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: refund(psp, "P15/RACE", payment_id="P15"), range(10)))
    assert {r.status_code for r in answers} == {200}
    assert len({r.json()["psp_refund_ref"] for r in answers}) == 1
    assert psp.stats()["paid_out_by_refund"]["P15/RACE"] == 12_500


def test_psp_stats_count_requests_and_payouts(psp: Simulator) -> None:
    """`/v1/stats` counts every POST and adds each payout once."""
    before = psp.stats()
    refund(psp, "P11/DUPLICATE_DEBIT", payment_id="P11", amount=25_000)
    refund(psp, "P11/DUPLICATE_DEBIT", payment_id="P11", amount=25_000)
    psp.post(REFUNDS, {"refund_id": "P12/X"}, "P12/X")
    after = psp.stats()
    assert after["requests"] == before["requests"] + 3
    assert after["payouts"] == before["payouts"] + 1
    assert after["paid_out_total"] == before["paid_out_total"] + 25_000


def test_refund_without_idempotency_key_is_400(psp: Simulator) -> None:
    """No Idempotency-Key header: 400, and nothing is paid."""
    body = {"refund_id": "P13/X", "payment_id": "P13", "amount": 100, "reason": "X"}
    response = psp.post(REFUNDS, body, None)
    assert response.status_code == 400
    assert response.json() == {"error": "MISSING_IDEMPOTENCY_KEY"}
    assert "P13/X" not in psp.stats()["paid_out_by_refund"]


@pytest.mark.parametrize(
    "body",
    [
        {"refund_id": "P14/X", "payment_id": "P14", "amount": 0, "reason": "X"},
        {"refund_id": "P14/X", "payment_id": "P14", "amount": 12.5, "reason": "X"},
        {"refund_id": "P14/X", "payment_id": "P14", "amount": 100},
        {"refund_id": "P14/Y", "payment_id": "P14", "amount": 100, "reason": "X"},
    ],
    ids=["amount-zero", "amount-float", "missing-reason", "key-mismatch"],
)
def test_refund_with_an_invalid_body_is_400(psp: Simulator, body: dict[str, Any]) -> None:
    """A body that does not validate, or names another refund id, is refused with 400."""
    response = psp.post(REFUNDS, body, "P14/X")
    assert response.status_code == 400
    assert response.json()["error"] in {"INVALID_REQUEST", "IDEMPOTENCY_KEY_MISMATCH"}
    assert "P14/X" not in psp.stats()["paid_out_by_refund"]


def test_drop_after_pay_then_retry_pays_once(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A refund paid and answered 502 gets its 200 on retry, same ref, no second payout."""
    args = ("--blackout=none", "--not-supported-rate=0", "--drop-after-pay-rate=1.0")
    with _running(tmp_path_factory, "psp", *args) as sim:
        dropped = refund(sim, "P20/PAID_NOT_ISSUED", payment_id="P20")
        assert dropped.status_code == 502
        assert sim.stats()["payouts"] == 1
        retries = [refund(sim, "P20/PAID_NOT_ISSUED", payment_id="P20") for _ in range(3)]
        assert [r.status_code for r in retries] == [200] * 3
        assert len({r.json()["psp_refund_ref"] for r in retries}) == 1
        stats = sim.stats()
        assert stats["payouts"] == 1
        assert stats["paid_out_total"] == 12_500
        assert stats["paid_out_by_refund"] == {"P20/PAID_NOT_ISSUED": 12_500}


def test_refund_not_supported_is_final(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A payer bank that refuses QRIS refunds gets 422 REFUND_NOT_SUPPORTED, every time."""
    with _running(tmp_path_factory, "psp", "--blackout=none", "--not-supported-rate=1.0") as sim:
        answers = [refund(sim, "P30/PAID_NOT_ISSUED", payment_id="P30") for _ in range(3)]
        expected = {"result": "failed", "reason": "REFUND_NOT_SUPPORTED", "retryable": False}
        assert [(r.status_code, r.json()) for r in answers] == [(422, expected)] * 3
        assert sim.stats()["payouts"] == 0


def test_refund_not_supported_follows_the_payment_id(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Which payments cannot be refunded depends on the payment id and seed alone."""
    unsupported: list[set[str]] = []
    for _ in range(2):
        with _running(
            tmp_path_factory, "psp", "--blackout=none", "--not-supported-rate=0.5"
        ) as sim:
            for reason in ("A", "B"):
                codes = {
                    f"P{n}": refund(sim, f"P{n}/{reason}", payment_id=f"P{n}").status_code
                    for n in range(30)
                }
                unsupported.append({p for p, code in codes.items() if code == 422})
    assert all(found == unsupported[0] for found in unsupported)
    assert 0 < len(unsupported[0]) < 30


def test_refund_beyond_the_cap_is_refused_for_good(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A payment refunded past `--refundable-cap` in total gets 422 AMOUNT_EXCEEDS_REFUNDABLE."""
    args = ("--blackout=none", "--not-supported-rate=0", "--refundable-cap=12500")
    with _running(tmp_path_factory, "psp", *args) as sim:
        assert refund(sim, "P40/A", payment_id="P40", amount=10_000).status_code == 200
        over = [refund(sim, "P40/B", payment_id="P40", amount=5_000) for _ in range(2)]
        expected = {"result": "failed", "reason": "AMOUNT_EXCEEDS_REFUNDABLE", "retryable": False}
        assert [(r.status_code, r.json()) for r in over] == [(422, expected)] * 2
        assert refund(sim, "P41/A", payment_id="P41", amount=12_500).status_code == 200
        assert sim.stats()["paid_out_total"] == 22_500


@pytest.mark.parametrize(
    ("clock", "retry_after"),
    [("2024-09-04T23:30:00+07:00", 3600), ("2024-09-05T00:10:00+07:00", 1200)],
    ids=["before-midnight", "after-midnight"],
)
def test_nightly_blackout_answers_503_with_retry_after(
    tmp_path_factory: pytest.TempPathFactory, clock: str, retry_after: int
) -> None:
    """Inside the default 23:00-00:30 WIB blackout: 503 REFUND_BLACKOUT, Retry-After to its end."""
    with _running(tmp_path_factory, "psp", f"--clock-start={clock}") as sim:
        answers = [refund(sim, "P50/PAID_NOT_ISSUED", payment_id="P50") for _ in range(2)]
        assert {r.status_code for r in answers} == {503}
        assert answers[0].json() == {"error": "REFUND_BLACKOUT"}
        assert retry_after - 5 <= int(answers[0].headers["Retry-After"]) <= retry_after
        assert sim.stats()["payouts"] == 0


def test_blackout_window_around_the_wall_clock(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A `--blackout` window around the real time now refuses refunds on the system clock."""
    now = datetime.now(tz=JAKARTA)
    window = f"{now - timedelta(minutes=2):%H:%M}-{now + timedelta(minutes=10):%H:%M}"
    with _running(tmp_path_factory, "psp", f"--blackout={window}") as sim:
        response = refund(sim, "P51/PAID_NOT_ISSUED", payment_id="P51")
        assert response.status_code == 503
        assert response.json() == {"error": "REFUND_BLACKOUT"}
        assert 0 < int(response.headers["Retry-After"]) <= 11 * 60


def test_psp_error_rate_one_always_answers_503(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With error rate 1.0 every refund request gets 503 PSP_UNAVAILABLE and nothing is paid."""
    with _running(tmp_path_factory, "psp", "--blackout=none", "--error-rate=1.0") as sim:
        answers = [refund(sim, "P60/PAID_NOT_ISSUED", payment_id="P60") for _ in range(5)]
        assert [(r.status_code, r.json()) for r in answers] == [
            (503, {"error": "PSP_UNAVAILABLE"})
        ] * 5
        assert sim.stats()["paid_out_total"] == 0


def test_error_bursts_strike_every_request_in_a_time_bucket(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """With `--burst-seconds`, a whole time bucket fails or none of it, whatever the key.

    Seeds 0 and 1 happen to put the 12:00 WIB hour outside and inside a burst.
    """
    clock = "--clock-start=2024-09-04T12:00:00+07:00"
    statuses: set[int] = set()
    for seed in range(2):
        args = (f"--seed={seed}", "--error-rate=0.5", "--burst-seconds=3600", clock)
        with _running(tmp_path_factory, "issuer", *args) as sim:
            codes = {issue(sim, f"B{n}/issue/1").status_code for n in range(8)}
        assert len(codes) == 1
        statuses |= codes
    assert statuses == {200, 503}


def test_restarted_psp_with_state_never_pays_twice(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """With `--state`, a restarted PSP answers a paid refund id as before, paying nothing."""
    args = ("--blackout=none", "--not-supported-rate=0", f"--state={tmp_path / 'ledger.jsonl'}")
    with _running(tmp_path_factory, "psp", *args) as sim:
        first = refund(sim, "P70/PAID_NOT_ISSUED", payment_id="P70")
        assert first.status_code == 200
    with _running(tmp_path_factory, "psp", *args) as sim:
        again = refund(sim, "P70/PAID_NOT_ISSUED", payment_id="P70")
        assert (again.status_code, again.json()) == (200, first.json())
        stats = sim.stats()
        assert stats["payouts"] == 1
        assert stats["paid_out_by_refund"] == {"P70/PAID_NOT_ISSUED": 12_500}


def test_restarted_issuer_with_state_keeps_its_serials(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """With `--state`, a restarted issuer repeats its answer and counts no new stamps."""
    args = ("--partial-rate=0", f"--state={tmp_path / 'issuer.jsonl'}")
    with _running(tmp_path_factory, "issuer", *args) as sim:
        first = issue(sim, "I1/issue/1", quantity=2)
        assert first.status_code == 200
    with _running(tmp_path_factory, "issuer", *args) as sim:
        again = issue(sim, "I1/issue/1", quantity=2)
        other = issue(sim, "I2/issue/1", quantity=2)
        assert again.json() == first.json()
        assert not set(other.json()["serial_numbers"]) & set(first.json()["serial_numbers"])
        assert sim.stats()["stamps_issued"] == 4


def test_journal_with_a_torn_last_line_still_loads(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A crash mid-write leaves a torn last line: it is dropped, earlier payouts are kept."""
    ledger = tmp_path / "ledger.jsonl"
    paid = {"result": "succeeded", "psp_refund_ref": "PSPR-OLD", "amount": 5_000}
    record = {"key": "P80/A", "payment_id": "P80", "status": 200, "body": paid}
    ledger.write_text(json.dumps(record) + "\n" + '{"key": "P81/A", "paym', encoding="utf-8")
    args = ("--blackout=none", "--not-supported-rate=0", f"--state={ledger}")
    with _running(tmp_path_factory, "psp", *args) as sim:
        again = refund(sim, "P80/A", payment_id="P80", amount=5_000)
        fresh = refund(sim, "P81/A", payment_id="P81", amount=7_000)
        assert (again.status_code, again.json()) == (200, paid)
        assert fresh.status_code == 200
        assert sim.stats()["paid_out_by_refund"] == {"P80/A": 5_000, "P81/A": 7_000}
    lines = ledger.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["P80/A", "P81/A"]


# --- simulated time: --clock request -------------------------------------------------------


def at(moment: str) -> dict[str, str]:
    """The header that tells a simulator on `--clock request` what time it is."""
    return {"X-Simulated-Time": moment}


def issue_at(sim: Simulator, key: str, moment: str) -> httpx.Response:
    """POST an issue with `command_id` = the key, at the simulated `moment`."""
    body = {"command_id": key, "order_id": "A1", "quantity": 1}
    return sim.post(ISSUE, body, key, headers=at(moment))


@pytest.fixture(scope="module")
def request_time_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """An issuer that reads the time from each request; its outage is 10:00-11:00 WIB."""
    args = ("--seed=7", "--clock=request", "--outage-start=10:00", "--outage-minutes=60")
    with _running(tmp_path_factory, "issuer", *args) as simulator:
        yield simulator


def test_request_time_decides_the_outage_whatever_the_wall_clock(
    request_time_issuer: Simulator,
) -> None:
    """The outage follows X-Simulated-Time, offsets honoured; the key's answer stays final."""
    sim = request_time_issuer
    body = {"command_id": "RT1/issue/1", "order_id": "RT1", "quantity": 2}
    inside = sim.post(ISSUE, body, "RT1/issue/1", headers=at("2024-09-04T10:15:00+07:00"))
    after = sim.post(ISSUE, body, "RT1/issue/1", headers=at("2024-09-04T11:00:00+07:00"))
    in_utc = sim.post(ISSUE, body, "RT1/issue/1", headers=at("2024-09-05T03:30:00+00:00"))
    assert (inside.status_code, inside.json()) == (503, {"error": "ISSUER_UNAVAILABLE"})
    assert after.status_code == 200
    assert len(after.json()["serial_numbers"]) == 2
    assert in_utc.status_code == 503  # 10:30 WIB the next day: inside the daily window
    assert sim.stats()["issues_by_key"]["RT1/issue/1"] == after.json()["serial_numbers"]


@pytest.mark.parametrize(
    "headers",
    [{}, at("half past ten"), at("2024-09-04T12:00:00")],
    ids=["missing", "not-iso", "no-offset"],
)
def test_request_time_refuses_a_post_without_a_usable_time(
    request_time_issuer: Simulator, headers: dict[str, str]
) -> None:
    """A POST whose time is missing, unreadable or without offset is 400 and issues nothing."""
    sim = request_time_issuer
    key = f"RT2-{len(headers)}-{headers.get('X-Simulated-Time', '')}/issue/1"
    body = {"command_id": key, "order_id": "RT2", "quantity": 1}
    response = sim.post(ISSUE, body, key, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_SIMULATED_TIME"
    assert "X-Simulated-Time" in response.json()["detail"]
    assert key not in sim.stats()["issues_by_key"]


def test_request_time_blackout_and_retry_after_follow_the_stated_time(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """On request time the PSP's blackout, and its Retry-After, are reckoned from the header."""
    args = ("--clock=request", "--not-supported-rate=0")
    with _running(tmp_path_factory, "psp", *args) as sim:
        body = {"refund_id": "RT3/X", "payment_id": "RT3", "amount": 12_500, "reason": "TEST"}
        night = sim.post(REFUNDS, body, "RT3/X", headers=at("2024-09-04T23:30:00+07:00"))
        evening = sim.post(REFUNDS, body, "RT3/X", headers=at("2024-09-04T22:00:00+07:00"))
        assert night.status_code == 503
        assert night.json() == {"error": "REFUND_BLACKOUT"}
        assert night.headers["Retry-After"] == "3600"
        assert evening.status_code == 200
        assert sim.stats()["paid_out_total"] == 12_500


def test_request_time_cuts_error_bursts_from_the_stated_time(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Burst buckets follow the request's time: within a bucket all keys fare alike."""
    args = ("--clock=request", "--seed=1", "--error-rate=0.5", "--burst-seconds=60")
    with _running(tmp_path_factory, "issuer", *args) as sim:
        by_minute: dict[int, set[int]] = {}
        for minute in range(12):
            moment = f"2024-09-04T12:{minute:02d}:30+07:00"
            by_minute[minute] = {
                issue_at(sim, f"RT4-{minute}-{n}/issue/1", moment).status_code for n in range(3)
            }
        assert all(len(codes) == 1 for codes in by_minute.values())
        assert set().union(*by_minute.values()) == {200, 503}


def test_request_time_with_a_clock_start_is_refused(tmp_path: Path) -> None:
    """`--clock-start` sets a wall clock, which `--clock request` does not read: exit 2."""
    command = [
        sys.executable,
        "-m",
        "reconciler.providers",
        "issuer",
        "--port=1",
        "--clock=request",
        "--clock-start=2024-09-04T10:00:00+07:00",
    ]
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "--clock-start" in result.stderr
