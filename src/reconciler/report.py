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
    """Rp 12.500, the way Indonesian finance writes it."""
    return "Rp " + f"{amount:,}".replace(",", ".")


def print_report(report: dict[str, Any], console: Console) -> None:
    """The same report as tables: totals, statuses, cases, orders, commands, dead letters."""
    console.print(f"[bold]Reconciliation as of {report['clock']}[/bold]")
    totals = Table(title="Money", show_header=True)
    totals.add_column("figure")
    totals.add_column("amount", justify="right")
    for name, amount in report["totals"].items():
        totals.add_row(name, rupiah(amount))
    console.print(totals)
    _print_counts(console, "Orders by status", Counter(o["status"] for o in report["orders"]))
    _print_counts(console, "Cases", Counter(case for o in report["orders"] for case in o["cases"]))
    orders = Table(title=f"Orders ({len(report['orders'])})")
    for column in ("order", "status", "qty", "delivered", "debited", "refunded", "pending"):
        orders.add_column(column, justify="left" if column in ("order", "status") else "right")
    for order in report["orders"]:
        orders.add_row(
            order["order_id"],
            order["status"],
            str(order["quantity"]),
            str(order["delivered"]),
            rupiah(order["debited"]),
            rupiah(order["refunded"]),
            rupiah(order["refund_pending"]),
        )
    console.print(orders)
    commands = Table(title=f"Commands ({len(report['commands'])})")
    for column in ("command_id", "type", "order", "detail"):
        commands.add_column(column)
    for command in report["commands"]:
        commands.add_row(
            command["command_id"],
            command["type"],
            str(command["order_id"]),
            _command_detail(command),
        )
    console.print(commands)
    if report["dead_letters"]:
        dead = Table(title=f"Dead letters ({len(report['dead_letters'])})")
        dead.add_column("line", justify="right")
        dead.add_column("reason")
        for letter in report["dead_letters"]:
            dead.add_row(str(letter["line"]), letter["reason"])
        console.print(dead)


def _print_counts(console: Console, title: str, counts: Counter[str]) -> None:
    table = Table(title=title)
    table.add_column("kind")
    table.add_column("orders", justify="right")
    for kind, count in sorted(counts.items()):
        table.add_row(kind, str(count))
    console.print(table)


def _command_detail(command: dict[str, Any]) -> str:
    if command["type"] == "IssueStamps":
        return f"{command['quantity']} stamp(s), attempt {command['attempt']}"
    if command["type"] == "RefundPayment":
        return (
            f"{rupiah(command['amount'])} of {command['payment_id']} "
            f"({command['reason']}), attempt {command['attempt']}"
        )
    return f"{command['reason']}, {rupiah(command['amount'])} at stake"
