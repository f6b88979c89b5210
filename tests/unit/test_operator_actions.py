"""Operators resolving escalations: each outcome, and the ones the engine refuses."""

from __future__ import annotations

from reconciler.domain.accounting import OrderStatus
from reconciler.domain.decisions import CaseResolved
from reconciler.ingest.validation import Rejected, parse_record
from tests.builders import UNIT, Engine, Log


def refund_failed_for_good() -> tuple[Log, Engine]:
    """Order A1 debited twice; the duplicate's refund is refused for good and escalated."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=False)
    log.stamps("A1", "S1")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.ESCALATED
    return log, engine


def test_operator_refunded_outside_settles_the_failed_refund() -> None:
    """REFUNDED_OUTSIDE counts the money as returned and closes the case."""
    log, engine = refund_failed_for_good()
    log.resolve("P2/REFUND_FAILED", "REFUNDED_OUTSIDE", reference="BCA-1")
    assert engine.feed(log) == []
    (resolved,) = [d for d in engine.decisions if isinstance(d, CaseResolved)]
    assert (resolved.escalation_id, resolved.outcome, resolved.order_id) == (
        "P2/REFUND_FAILED",
        "REFUNDED_OUTSIDE",
        "A1",
    )
    money = engine.money("A1")
    assert (money.kept, money.refunded, money.at_risk) == (UNIT, UNIT, 0)
    assert engine.status("A1") is OrderStatus.FULFILLED


def test_operator_retry_commands_the_refund_again_and_escalates_anew_if_it_fails() -> None:
    """RETRY_REFUND commands the next attempt; a second failure opens `<id>/2`."""
    log, engine = refund_failed_for_good()
    log.resolve("P2/REFUND_FAILED", "RETRY_REFUND")
    commands = engine.feed(log)
    assert [(c["command_id"], c["attempt"]) for c in commands] == [("P2/DUPLICATE_DEBIT/2", 2)]
    assert engine.status("A1") is OrderStatus.REFUND_PENDING
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=False)
    commands = engine.feed(log)
    assert [(c["type"], c["command_id"]) for c in commands] == [("Escalate", "P2/REFUND_FAILED/2")]
    assert engine.status("A1") is OrderStatus.ESCALATED


def test_operator_cannot_close_a_case_with_money_at_stake_as_no_money() -> None:
    """NO_MONEY_AT_STAKE on a failed refund is refused and noted; the case stays open."""
    log, engine = refund_failed_for_good()
    log.resolve("P2/REFUND_FAILED", "NO_MONEY_AT_STAKE")
    assert engine.feed(log) == []
    assert engine.state.unmatched[-1].why == f"Rp {UNIT} is still at stake in this case"
    assert engine.status("A1") is OrderStatus.ESCALATED
    assert engine.money("A1").at_risk == UNIT


def test_operator_closes_a_case_with_no_money_in_it() -> None:
    """An over-issue escalation closes with NO_MONEY_AT_STAKE; the order is fulfilled."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.stamps("A1", "S1", "S2")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.ESCALATED
    log.resolve("A1/OVER_ISSUED", "NO_MONEY_AT_STAKE")
    engine.feed(log)
    assert engine.status("A1") is OrderStatus.FULFILLED
    assert engine.state.orders["A1"].cases == ["OVER_ISSUED"]


def test_operator_refund_outcomes_need_a_refund_at_stake() -> None:
    """REFUNDED_OUTSIDE or RETRY_REFUND on a case with no refund is refused and noted."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.stamps("A1", "S1", "S2")
    log.resolve("A1/OVER_ISSUED", "RETRY_REFUND")
    engine.feed(log)
    assert engine.state.unmatched[-1].why == "RETRY_REFUND: no refund is at stake in this case"
    assert engine.status("A1") is OrderStatus.ESCALATED


def test_operator_resolving_an_unknown_escalation_is_noted() -> None:
    """An escalation id the engine never opened changes nothing and is reported."""
    log, engine = Log(), Engine()
    log.tick()
    log.resolve("nope/REFUND_FAILED", "NO_MONEY_AT_STAKE")
    assert engine.feed(log) == []
    (note,) = engine.state.unmatched
    assert (note.type, note.subject, note.why) == (
        "EscalationResolved",
        "nope/REFUND_FAILED",
        "no open escalation has this id",
    )


def test_operator_refunded_outside_without_a_reference_is_dead_lettered() -> None:
    """An outside refund must name its transfer; the record is rejected, saying so."""
    raw = (
        '{"event_id":"op-1","type":"EscalationResolved","version":1,'
        '"occurred_at":"2024-09-04T12:00:00+07:00","escalation_id":"P2/REFUND_FAILED",'
        '"outcome":"REFUNDED_OUTSIDE","operator":"ops-1","note":"paid by transfer"}'
    )
    rejected = parse_record(raw)
    assert isinstance(rejected, Rejected)
    assert "REFUNDED_OUTSIDE needs the transfer's reference" in rejected.reason
