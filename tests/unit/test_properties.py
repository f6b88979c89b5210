"""Properties over generated logs: conservation (rule 11) and determinism."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


@given(logs())
def test_rule_11_conservation_holds_after_every_event(log: Log) -> None:
    """Debited = kept + refunded + refund_pending + at_risk after every single fact."""
    state = State()
    for fact in log.facts:
        decide(state, fact, RULES)
        assert_conserved(state)


@given(logs())
def test_same_log_gives_identical_decisions(log: Log) -> None:
    """Two engines fed the same log record byte-identical decisions."""
    first, second = Engine(), Engine()
    first.feed(log)
    second.feed(log)
    assert [d.model_dump_json() for d in first.decisions] == [
        d.model_dump_json() for d in second.decisions
    ]


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
    """Whether a person holds the case this debit's money is in."""
    if debit.refund is not None and debit.refund.status is RefundStatus.FAILED:
        return True
    if any(key.startswith(debit.payment_id + "/") for key in state.escalated):
        return True
    order = None if debit.orphan or debit.order_id is None else state.orders.get(debit.order_id)
    return order is not None and bool(order.escalations)


@given(logs())
def test_rule_11_nothing_at_risk_once_everything_is_answered(log: Log) -> None:
    """After all deadlines pass and all commands are answered, at_risk is 0 but escalations."""
    engine = Engine()
    answer_everything(engine, log)
    state = engine.state
    assert_conserved(state)
    for debit in state.payments.values():
        order = None if debit.orphan or debit.order_id is None else state.orders.get(debit.order_id)
        if not escalated(state, debit):
            assert debit_money(debit, order).at_risk == 0, debit
