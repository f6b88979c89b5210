"""Hypothesis strategies for event logs over a small world of orders, payments, serials.

The world is small on purpose: ids collide, results name real and unreal commands, and
debits land on unknown, cancelled and paid orders, so every rule gets exercised.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from tests.builders import UNIT, Log

ORDERS = ("A", "B", "C", "D")
PAYMENTS = ("P1", "P2", "P3", "P4", "P5", "P6")
SERIALS = tuple(f"S{n}" for n in range(1, 9))
REASONS = (
    "PAID_NOT_ISSUED",
    "DUPLICATE_DEBIT",
    "AMOUNT_MISMATCH",
    "ORPHAN_DEBIT",
    "CANCELLED_ORDER_DEBIT",
)
STEPS = (0, 1, 60, 119, 120, 300, 600, 1800, 3600)
OUTCOMES = ("REFUNDED_OUTSIDE", "RETRY_REFUND", "NO_MONEY_AT_STAKE")

Action = Callable[[Log], object]

orders = st.sampled_from(ORDERS)
command_ids = st.one_of(
    st.none(),
    st.builds(lambda o, n: f"{o}/issue/{n}", orders, st.integers(1, 3)),
)
refund_ids = st.builds(lambda p, r: f"{p}/{r}", st.sampled_from(PAYMENTS), st.sampled_from(REASONS))
# Weighted so that most debits match a one-stamp order and most orders are for one stamp.
amounts = st.sampled_from((UNIT, UNIT, UNIT, 2 * UNIT, 3 * UNIT, 5_000))
quantities = st.sampled_from((1, 1, 1, 2, 3))


def _tick(seconds: int) -> Action:
    return lambda log: log.tick(seconds)


def _order(order_id: str, quantity: int) -> Action:
    return lambda log: log.order(order_id, quantity=quantity, expires_in=900)


def _cancel(order_id: str) -> Action:
    return lambda log: log.cancel(order_id)


def _debit(payment_id: str, order_id: str | None, amount: int) -> Action:
    return lambda log: log.debit(payment_id, order_id, amount=amount)


def _stamps(order_id: str, serials: list[str], command_id: str | None) -> Action:
    return lambda log: log.stamps(order_id, *serials, command_id=command_id)


def _issue_failed(order_id: str, retryable: bool, command_id: str | None) -> Action:  # noqa: FBT001
    return lambda log: log.issue_failed(order_id, retryable=retryable, command_id=command_id)


def _refund_ok(refund_id: str, amount: int) -> Action:
    return lambda log: log.refund_ok(refund_id, amount)


def _refund_failed(refund_id: str, retryable: bool) -> Action:  # noqa: FBT001
    return lambda log: log.refund_failed(refund_id, retryable=retryable)


def _resolve(escalation_id: str, outcome: str) -> Action:
    return lambda log: log.resolve(escalation_id, outcome, reference="bank-transfer-1")


def _approve(incident_id: str) -> Action:
    return lambda log: log.approve(incident_id)


def _reject(incident_id: str) -> Action:
    return lambda log: log.reject(incident_id)


# Operators name escalations by the ids the engine gives them, so draw plausible ones.
escalation_ids = st.builds(
    lambda subject, suffix: subject + suffix,
    st.one_of(
        st.builds(
            lambda p, r: f"{p}/{r}",
            st.sampled_from(PAYMENTS),
            st.sampled_from(("REFUND_FAILED", "REFUND_AMOUNT_MISMATCH", "REFUND_REJECTED")),
        ),
        st.builds(
            lambda o, r: f"{o}/{r}",
            orders,
            st.sampled_from(("DOUBLE_REMEDY", "OVER_ISSUED", "ISSUED_WITHOUT_PAYMENT")),
        ),
    ),
    st.sampled_from(("", "", "/2")),
)
incident_ids = st.builds(lambda refund_id: f"{refund_id}/REFUND_FLOOD", refund_ids)
ticks = st.builds(_tick, st.sampled_from(STEPS))
placements = st.builds(_order, orders, quantities)
debits = st.builds(
    _debit,
    st.sampled_from(PAYMENTS),
    st.sampled_from((None, "X", *ORDERS, *ORDERS)),
    amounts,
)
cancellations = st.builds(_cancel, orders)
deliveries = st.builds(
    _stamps,
    orders,
    st.lists(st.sampled_from(SERIALS), min_size=1, max_size=3, unique=True),
    command_ids,
)
failures = st.builds(_issue_failed, orders, st.booleans(), command_ids)
refunds_paid = st.builds(_refund_ok, refund_ids, amounts)
refunds_refused = st.builds(_refund_failed, refund_ids, st.booleans())
resolutions = st.builds(_resolve, escalation_ids, st.sampled_from(OUTCOMES))
incident_calls = st.one_of(st.builds(_approve, incident_ids), st.builds(_reject, incident_ids))
# Each kind of fact drawn with a weight: clock and money move most often.
_WEIGHTED = (
    (ticks, 3),
    (debits, 3),
    (placements, 1),
    (cancellations, 1),
    (deliveries, 2),
    (failures, 1),
    (refunds_paid, 1),
    (refunds_refused, 1),
    (resolutions, 1),
    (incident_calls, 1),
)
actions: st.SearchStrategy[Action] = st.sampled_from(
    [strategy for strategy, weight in _WEIGHTED for _ in range(weight)]
).flatmap(lambda strategy: strategy)


@st.composite
def logs(draw: st.DrawFn, max_actions: int = 40) -> Log:
    """A log of up to `max_actions` random facts, starting (or not) with a tick."""
    log = Log()
    if draw(st.booleans()):
        log.tick()
    # Most orders exist before their money moves, as on a healthy portal.
    for order_id in draw(st.lists(orders, min_size=2, max_size=len(ORDERS), unique=True)):
        log.order(order_id, quantity=draw(quantities), expires_in=900)
    for action in draw(st.lists(actions, min_size=3, max_size=max_actions)):
        action(log)
    return log
