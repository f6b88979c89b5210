"""The reconciliation report: SPEC's offline JSON document, and the same for a person."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.table import Table

from reconciler.domain.accounting import (
    order_money,
    order_status,
    reported_orders,
    total_money,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console

    from reconciler.domain.accounting import Money
    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.state import State
    from reconciler.engine import Rejection


def build_report(
    state: State, decisions: Sequence[AnyDecision], rejections: Sequence[Rejection]
) -> dict[str, Any]:
    """The JSON document SPEC fixes, built from the engine's state and decisions."""
    orders = []
    for order in reported_orders(state):
        money = order_money(order)
        orders.append(
            {
                "order_id": order.order_id,
                "status": order_status(order, money, state.clock).value,
                "quantity": order.quantity,
                "delivered": order.delivered,
                "debited": money.debited,
                "kept": money.kept,
                "refunded": money.refunded,
                "refund_pending": money.refund_pending,
                "at_risk": money.at_risk,
                "cases": [case.value for case in order.cases],
            }
        )
    commands = [command for d in decisions if (command := d.command()) is not None]
    return {
        "clock": state.clock.isoformat() if state.clock is not None else None,
        "orders": orders,
        "commands": commands,
        "dead_letters": [{"line": r.position, "reason": r.reason} for r in rejections],
        "unmatched_results": [
            {"event_id": n.event_id, "type": n.type, "subject": n.subject, "why": n.why}
            for n in state.unmatched
        ],
        "totals": _money(total_money(state)),
    }


def _money(money: Money) -> dict[str, int]:
    return {
        "debited": money.debited,
        "kept": money.kept,
        "refunded": money.refunded,
        "refund_pending": money.refund_pending,
        "at_risk": money.at_risk,
    }


def rupiah(amount: int) -> str:
    """Rp 12.500 (and -Rp 2.500), the way Indonesian finance writes it."""
    return ("-Rp " if amount < 0 else "Rp ") + f"{abs(amount):,}".replace(",", ".")


def print_report(report: dict[str, Any], console: Console) -> None:
    """The same report as tables: totals, statuses, cases, orders, commands, odd input."""
    console.print(f"[bold]Reconciliation as of {report['clock']}[/bold]")
    orders, commands = report["orders"], report["commands"]
    sections = [
        _table(
            "Money", ["figure", "amount"], [[k, rupiah(v)] for k, v in report["totals"].items()]
        ),
        _counts("Orders by status", Counter(o["status"] for o in orders)),
        _counts("Cases", Counter(case for o in orders for case in o["cases"])),
        _table(
            f"Orders ({len(orders)})",
            ["order", "status", "qty", "delivered", "debited", "refunded", "pending"],
            [_order_row(order) for order in orders],
        ),
        _table(
            f"Commands ({len(commands)})",
            ["command_id", "type", "order", "detail"],
            [
                [c["command_id"], c["type"], str(c["order_id"]), _command_detail(c)]
                for c in commands
            ],
        ),
    ]
    if unmatched := report["unmatched_results"]:
        columns = ["event_id", "type", "subject", "why"]
        rows = [[note[column] for column in columns] for note in unmatched]
        sections.append(_table(f"Results no command was waiting for ({len(rows)})", columns, rows))
    if dead := report["dead_letters"]:
        rows = [[str(letter["line"]), letter["reason"]] for letter in dead]
        sections.append(_table(f"Dead letters ({len(rows)})", ["line", "reason"], rows))
    for table in sections:
        console.print(table)


_NUMERIC = {"amount", "qty", "delivered", "debited", "refunded", "pending", "orders", "line"}


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column in _NUMERIC else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _counts(title: str, counts: Counter[str]) -> Table:
    return _table(title, ["kind", "orders"], [[k, str(n)] for k, n in sorted(counts.items())])


def _order_row(order: dict[str, Any]) -> list[str]:
    return [
        order["order_id"],
        order["status"],
        str(order["quantity"]),
        str(order["delivered"]),
        rupiah(order["debited"]),
        rupiah(order["refunded"]),
        rupiah(order["refund_pending"]),
    ]


def _command_detail(command: dict[str, Any]) -> str:
    if command["type"] == "IssueStamps":
        return f"{command['quantity']} stamp(s), attempt {command['attempt']}"
    if command["type"] == "RefundPayment":
        return (
            f"{rupiah(command['amount'])} of {command['payment_id']} "
            f"({command['reason']}), attempt {command['attempt']}"
        )
    return f"{command['reason']}, {rupiah(command['amount'])} at stake"
