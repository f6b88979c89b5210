"""SPEC's Time section: the clock is a fact, and deadlines fall due at ticks only."""

from __future__ import annotations

from datetime import timedelta

from reconciler.domain.events import ClockTicked
from tests.builders import START, UNIT, Engine, Log


def test_facts_before_the_first_tick_count_as_recorded_at_it() -> None:
    """A payment before any tick is paid at the first tick; its SLA counts from there."""
    log, engine = Log(), Engine()
    log.order("A1")
    log.debit("P1", "A1")
    assert engine.feed(log) == []
    assert engine.state.orders == {}
    log.tick(1000)
    engine.feed(log)
    assert engine.state.orders["A1"].paid_at == START + timedelta(seconds=1000)
    log.tick(299)
    assert engine.feed(log) == []
    log.tick(1)
    assert [c["type"] for c in engine.feed(log)] == ["IssueStamps"]


def test_producer_timestamps_trigger_nothing() -> None:
    """A fact stamped far in the future moves no clock and fires no deadline."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.add(
        log.debit("P1", "A1").model_copy(
            update={"event_id": "late", "occurred_at": START + timedelta(days=3)}
        )
    )
    assert engine.feed(log) == []
    assert engine.state.clock == START


def test_the_clock_never_goes_back() -> None:
    """A tick earlier than the clock leaves the clock where it was."""
    log, engine = Log(), Engine()
    log.tick(100)
    log.add(
        ClockTicked(event_id="old", version=1, occurred_at=START, at=START),
    )
    engine.feed(log)
    assert engine.state.clock == START + timedelta(seconds=100)


def test_deadline_falls_due_at_the_first_tick_at_or_after_it() -> None:
    """With sparse ticks, a deadline fires at the first tick past it, not at its time."""
    log, engine = Log(), Engine()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1", amount=UNIT)
    log.tick(250)
    log.tick(1000)
    commands = engine.feed(log)
    assert [c["type"] for c in commands] == ["IssueStamps"]
    decision = next(d for d in engine.decisions if d.type == "IssuanceCommanded")
    assert decision.at == START + timedelta(seconds=1250)


def test_several_due_deadlines_fire_in_deadline_order() -> None:
    """Deadlines passed by one big tick are taken in the order they fell due."""
    log, engine = Log(), Engine()
    log.tick()
    log.debit("P-orphan", None)
    log.tick(100)
    log.order("A1")
    log.debit("P1", "A1")
    log.tick(5000)
    types = [c["type"] for c in engine.feed(log)]
    assert types[:2] == ["IssueStamps", "RefundPayment"]


def test_identical_logs_give_identical_decisions() -> None:
    """Replaying the same facts from an empty state takes the same decisions, same clock."""
    log = Log()
    log.tick()
    log.order("A1", quantity=2)
    log.debit("P1", "A1", amount=2 * UNIT)
    log.debit("P2", None)
    log.tick(4000)
    first, second = Engine(), Engine()
    first.feed(log)
    second.feed(log)
    assert [d.model_dump_json() for d in first.decisions] == [
        d.model_dump_json() for d in second.decisions
    ]
