"""Properties over generated logs: conservation (rule 11) and determinism."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import given

from reconciler.domain.accounting import Money, debit_money, order_money, total_money
from reconciler.domain.decider import decide
from reconciler.domain.rules import Rules
from reconciler.domain.state import RefundStatus, State
from tests.builders import Engine, Log
from tests.strategies import logs

if TYPE_CHECKING:
    from reconciler.domain.state import Debit

RULES = Rules()
# The refund-flood guard at its tightest, so that generated logs hold and release often.
FLOOD_RULES = Rules(refund_flood_limit=1)
BOTH = pytest.mark.parametrize("rules", [RULES, FLOOD_RULES], ids=["spec", "flood-guard"])


def assert_conserved(state: State) -> None:
    """Rule 11 for every debit, every order and the total, with no negative figure."""
    by_orders = Money()
    for order in state.orders.values():
        money = order_money(order)
        assert money.balanced, (order.order_id, money)
        by_orders += money
    orphans = Money()
    for debit in state.payments.values():
        attached = not debit.orphan and debit.order_id is not None
        if not attached or debit.order_id not in state.orders:
            orphans += debit_money(debit, None)
    total = total_money(state)
    assert total.balanced, total
    assert total == by_orders + orphans


@BOTH
@given(log=logs())
def test_rule_11_conservation_holds_after_every_event(rules: Rules, log: Log) -> None:
    """Debited = kept + refunded + refund_pending + at_risk after every single fact."""
    state = State()
    for fact in log.facts:
        decide(state, fact, rules)
        assert_conserved(state)


@BOTH
@given(log=logs())
def test_same_log_gives_identical_decisions(rules: Rules, log: Log) -> None:
    """Two engines fed the same log record byte-identical decisions (holds and releases too)."""
    first, second = Engine(rules), Engine(rules)
    first.feed(log)
    second.feed(log)
    assert [d.model_dump_json() for d in first.decisions] == [
        d.model_dump_json() for d in second.decisions
    ]


@BOTH
@given(log=logs())
def test_decision_ids_are_never_reused(rules: Rules, log: Log) -> None:
    """Every decision gets an id of its own, since the log keeps one record per id."""
    engine = Engine(rules)
    answer_everything(engine, log)
    decision_ids = [decision.decision_id for decision in engine.decisions]
    assert len(decision_ids) == len(set(decision_ids))


def answer_everything(engine: Engine, log: Log) -> None:
    """Perfect providers: deliver every commanded stamp, pay every commanded refund."""
    serial = 0
    for _ in range(20):
        commands = engine.feed(log)
        log.tick(86_400)
        commands += engine.feed(log)
        if not commands and not engine.state.timers:
            return
        for command in commands:
            if command["type"] == "IssueStamps":
                serials = [f"fresh-{serial + n}" for n in range(command["quantity"])]
                serial += command["quantity"]
                log.stamps(command["order_id"], *serials, command_id=command["command_id"])
            elif command["type"] == "RefundPayment":
                log.refund_ok(command["refund_id"], command["amount"])
    msg = "commands kept coming after 20 rounds"
    raise AssertionError(msg)


def escalated(state: State, debit: Debit) -> bool:
    """Whether an open escalation holds the case this debit's money is in."""
    refund = debit.refund
    if refund is not None and refund.escalation in state.open_escalations:
        return True
    if any(key.startswith(debit.payment_id + "/") for key in state.open_escalations):
        return True
    order = None if debit.orphan or debit.order_id is None else state.orders.get(debit.order_id)
    return order is not None and bool(order.escalations)


def assert_at_risk_only_when_escalated(state: State) -> None:
    """SPEC rule 11's end condition: money at risk sits in an open escalation."""
    for debit in state.payments.values():
        order = None if debit.orphan or debit.order_id is None else state.orders.get(debit.order_id)
        if not escalated(state, debit):
            assert debit_money(debit, order).at_risk == 0, debit


@BOTH
@given(log=logs())
def test_rule_11_nothing_at_risk_once_everything_is_answered(rules: Rules, log: Log) -> None:
    """After all deadlines pass and all commands are answered, at_risk is 0 but escalations."""
    engine = Engine(rules)
    answer_everything(engine, log)
    state = engine.state
    assert_conserved(state)
    assert_at_risk_only_when_escalated(state)


def settle_every_case(engine: Engine, log: Log) -> None:
    """Operators close every open case the way its money allows, until none is left."""
    for _ in range(20):
        answer_everything(engine, log)
        state = engine.state
        if not state.open_escalations:
            return
        for escalation in list(state.open_escalations.values()):
            refund = state.refunds.get(escalation.refund_id or "")
            # Either choice, by a coin the escalation's id tosses, so both paths are walked.
            heads = sum(map(ord, escalation.escalation_id)) % 2 == 0
            if escalation.reason.value == "REFUND_FLOOD":
                (log.reject if heads else log.approve)(escalation.escalation_id)
            elif refund is not None and refund.amount > refund.refunded:
                retry = heads and refund.status in (RefundStatus.FAILED, RefundStatus.REJECTED)
                outcome = "RETRY_REFUND" if retry else "REFUNDED_OUTSIDE"
                log.resolve(escalation.escalation_id, outcome, reference="bank-1")
            else:
                log.resolve(escalation.escalation_id, "NO_MONEY_AT_STAKE")
    msg = "cases kept opening after 20 rounds"
    raise AssertionError(msg)


@BOTH
@given(log=logs())
def test_rule_11_operators_can_settle_every_rupiah(rules: Rules, log: Log) -> None:
    """Once operators close every case, nothing is at risk and no escalation is open."""
    engine = Engine(rules)
    settle_every_case(engine, log)
    state = engine.state
    assert_conserved(state)
    assert total_money(state).at_risk == 0
    assert all(not order.escalations for order in state.orders.values())
