"""The refund-flood guard: hold refunds past a limit, one incident, release or reject."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from reconciler.domain.accounting import OrderStatus
from reconciler.domain.decisions import CaseResolved, RefundHeld, RefundWithdrawn
from reconciler.domain.rules import Rules
from reconciler.domain.state import RefundStatus
from tests.builders import UNIT, Engine, Log

GUARDED = Rules(refund_flood_limit=2, refund_flood_window=timedelta(seconds=600))
T = TypeVar("T")
INCIDENT = "P3/AMOUNT_MISMATCH/REFUND_FLOOD"


def mismatched(log: Log, *numbers: int) -> None:
    """Orders A<n>, each debited a wrong amount P<n>: every one is refunded at once."""
    for n in numbers:
        log.order(f"A{n}")
        log.debit(f"P{n}", f"A{n}", amount=5_000)


def flooded() -> tuple[Log, Engine]:
    """Four refunds at one tick under a limit of two: the last two are held."""
    log, engine = Log(), Engine(GUARDED)
    log.tick()
    mismatched(log, 1, 2, 3, 4)
    engine.feed(log)
    return log, engine


def of_type(engine: Engine, kind: type[T]) -> list[T]:
    """The decisions of one type taken so far."""
    return [decision for decision in engine.decisions if isinstance(decision, kind)]


def test_refund_flood_guard_is_off_by_default() -> None:
    """With SPEC's rules every refund is commanded at once, however many there are."""
    log, engine = Log(), Engine()
    log.tick()
    mismatched(log, *range(1, 51))
    commands = engine.feed(log)
    assert [c["type"] for c in commands] == ["RefundPayment"] * 50


def test_refund_flood_holds_refunds_past_the_limit_under_one_incident() -> None:
    """The third refund in the window is held, one Escalate opens, the held money is at risk."""
    _, engine = flooded()
    types = [(c["type"], c.get("payment_id") or c.get("order_id")) for c in engine.commands]
    assert types == [
        ("RefundPayment", "P1"),
        ("RefundPayment", "P2"),
        ("Escalate", "A3"),
    ]
    held = of_type(engine, RefundHeld)
    assert [(h.payment_id, h.amount, h.incident_id) for h in held] == [
        ("P3", 5_000, INCIDENT),
        ("P4", 5_000, INCIDENT),
    ]
    assert engine.status("A3") is OrderStatus.ESCALATED
    assert engine.money("A3").at_risk == 5_000
    assert engine.status("A1") is OrderStatus.REFUND_PENDING
    assert engine.totals().at_risk == 10_000


def test_refund_flood_window_slides_with_the_engine_clock() -> None:
    """Refunds spread wider than the window are never held."""
    log, engine = Log(), Engine(GUARDED)
    for n in range(1, 6):
        log.tick(301)
        mismatched(log, n)
    commands = engine.feed(log)
    assert [c["type"] for c in commands] == ["RefundPayment"] * 5


def test_refund_flood_approval_commands_every_held_refund() -> None:
    """An operator's approval closes the incident and commands the held refunds, once."""
    log, engine = flooded()
    log.approve(INCIDENT)
    commands = engine.feed(log)
    assert [(c["type"], c["payment_id"], c["attempt"]) for c in commands] == [
        ("RefundPayment", "P3", 1),
        ("RefundPayment", "P4", 1),
    ]
    (resolved,) = of_type(engine, CaseResolved)
    assert (resolved.escalation_id, resolved.outcome, resolved.operator) == (
        INCIDENT,
        "APPROVED",
        "ops-1",
    )
    assert engine.status("A3") is OrderStatus.REFUND_PENDING
    assert engine.totals().at_risk == 0
    log.approve(INCIDENT)
    assert engine.feed(log) == []
    assert engine.state.unmatched[-1].why == "no open refund-flood incident has this id"


def test_refund_flood_counts_afresh_after_a_release() -> None:
    """Released refunds do not count; the next two are commanded, the third held again."""
    log, engine = flooded()
    log.approve(INCIDENT)
    engine.feed(log)
    mismatched(log, 5, 6, 7)
    commands = engine.feed(log)
    assert [(c["type"], c.get("payment_id")) for c in commands] == [
        ("RefundPayment", "P5"),
        ("RefundPayment", "P6"),
        ("Escalate", None),
    ]
    assert commands[-1]["command_id"] == "P7/AMOUNT_MISMATCH/REFUND_FLOOD"


def test_refund_flood_released_when_the_issuer_recovers() -> None:
    """Stamps answering an engine command while refunds are held release them."""
    log, engine = flooded()
    log.order("B1")
    log.debit("PB", "B1")
    log.tick(300)
    engine.feed(log)
    log.stamps("B1", "S1", command_id="B1/issue/1")
    commands = engine.feed(log)
    assert [(c["type"], c["payment_id"]) for c in commands] == [
        ("RefundPayment", "P3"),
        ("RefundPayment", "P4"),
    ]
    (resolved,) = of_type(engine, CaseResolved)
    assert (resolved.outcome, resolved.operator) == ("ISSUER_RECOVERED", None)
    assert engine.status("B1") is OrderStatus.FULFILLED


def test_refund_flood_held_refund_withdrawn_when_the_stamps_arrive_late() -> None:
    """A PAID_NOT_ISSUED refund held in a flood is dropped, not doubled, if the stamps come."""
    log, engine = Log(), Engine(Rules(refund_flood_limit=1))
    log.tick()
    mismatched(log, 1)
    log.order("B1")
    log.debit("PB", "B1")
    log.tick(300)
    log.issue_failed("B1", retryable=False, command_id="B1/issue/1")
    engine.feed(log)
    assert engine.state.refunds["PB/PAID_NOT_ISSUED"].status is RefundStatus.HELD
    assert engine.status("B1") is OrderStatus.ESCALATED
    log.stamps("B1", "S1")  # the issuer's late delivery, answering no open attempt
    commands = engine.feed(log)
    assert commands == []
    (withdrawn,) = of_type(engine, RefundWithdrawn)
    assert (withdrawn.refund_id, withdrawn.amount) == ("PB/PAID_NOT_ISSUED", UNIT)
    assert engine.status("B1") is OrderStatus.FULFILLED
    assert engine.money("B1").kept == UNIT
    assert "DOUBLE_REMEDY" not in engine.state.orders["B1"].cases


def test_refund_flood_rejection_turns_each_held_refund_into_a_case() -> None:
    """Rejected held refunds are not paid; each is escalated with its money at risk."""
    log, engine = flooded()
    log.reject(INCIDENT)
    commands = engine.feed(log)
    assert [(c["type"], c["command_id"], c["amount"]) for c in commands] == [
        ("Escalate", "P3/REFUND_REJECTED", 5_000),
        ("Escalate", "P4/REFUND_REJECTED", 5_000),
    ]
    assert engine.status("A3") is OrderStatus.ESCALATED
    assert engine.money("A3").at_risk == 5_000
    log.resolve("P3/REFUND_REJECTED", "REFUNDED_OUTSIDE", reference="BCA-778812")
    engine.feed(log)
    assert engine.status("A3") is OrderStatus.REFUNDED
    assert engine.money("A3").refunded == 5_000


def test_refund_flood_decisions_replay_identically() -> None:
    """Holding, approval and release are decisions: a replay of the log takes them again."""
    log, first = flooded()
    log.approve(INCIDENT)
    first.feed(log)
    second = Engine(GUARDED)
    second.feed(log)
    assert [d.model_dump_json() for d in second.decisions] == [
        d.model_dump_json() for d in first.decisions
    ]
