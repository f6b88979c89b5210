"""The demo's closing summary, for a finance person: outcomes, money, the proof."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.table import Table

from reconciler.report import rupiah

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.demo.session import DemoOutcome

_STATUS_MEANING = {
    "ESCALATED": "a person must look at it",
    "REFUND_PENDING": "refund commanded, not yet confirmed",
    "FULFILLED": "stamps delivered, payment kept",
    "PARTIALLY_FULFILLED": "some stamps delivered, the rest refunded",
    "REFUNDED": "nothing delivered, every rupiah returned",
    "PAID": "paid, stamps still owed",
    "EXPIRED_UNPAID": "never paid",
    "AWAITING_PAYMENT": "not paid yet",
}
_MONEY_LABELS = {
    "debited": "Debited from payers",
    "kept": "Kept for stamps delivered",
    "refunded": "Refunded in full",
    "refund_pending": "Refund on its way",
    "at_risk": "At risk (escalated to a person)",
}


def print_summary(outcome: DemoOutcome, console: Console, seconds: float) -> None:
    """Orders by outcome, the money, the conservation check and the files written."""
    run, report = outcome.run, outcome.report
    console.print(
        f"\n[bold]Simulated CASN registration day {run.config.day:%d %B %Y}[/bold]: "
        f"{run.config.orders:,} orders, {len(run.facts):,} events; the books closed "
        f"{run.closed_at:%d %b %H:%M}, after every deadline. Took {seconds:.1f} s.\n"
    )
    _print_outcomes(report["orders"], console)
    _print_escalations(report["commands"], console)
    cases = Counter(case for order in report["orders"] for case in order["cases"])
    orphans = sum(
        1
        for command in report["commands"]
        if command.get("reason") == "ORPHAN_DEBIT" and command["type"] == "RefundPayment"
    )
    detected = Table(title="What went wrong, and was caught")
    detected.add_column("case")
    detected.add_column("orders", justify="right")
    for case, count in cases.most_common():
        detected.add_row(case, f"{count:,}")
    detected.add_row("ORPHAN_DEBIT (payments with no order)", f"{orphans:,}")
    console.print(detected)
    totals = report["totals"]
    money = Table(title="Where every rupiah went")
    money.add_column("")
    money.add_column("amount", justify="right")
    money.add_column("share", justify="right")
    for key, label in _MONEY_LABELS.items():
        share = totals[key] / totals["debited"] if totals["debited"] else 0.0
        money.add_row(label, rupiah(totals[key]), f"{share:.2%}")
    console.print(money)
    _print_checks(outcome, console)
    console.print(
        f"\nFiles: {outcome.events_path} (the event log), {outcome.log_path} "
        f"(hash-chained store), {outcome.report_path} (this report as JSON)."
        f"\nCheck it again: reconciler reconcile {outcome.events_path} --format table"
    )


def _print_outcomes(orders: list[dict[str, Any]], console: Console) -> None:
    counts: Counter[str] = Counter()
    debited: Counter[str] = Counter()
    refunded: Counter[str] = Counter()
    for order in orders:
        counts[order["status"]] += 1
        debited[order["status"]] += order["debited"]
        refunded[order["status"]] += order["refunded"]
    table = Table(title="Orders by outcome")
    for column in ("status", "orders", "debited", "refunded", "meaning"):
        table.add_column(
            column, justify="right" if column in ("orders", "debited", "refunded") else "left"
        )
    for status, count in counts.most_common():
        table.add_row(
            status,
            f"{count:,}",
            rupiah(debited[status]),
            rupiah(refunded[status]),
            _STATUS_MEANING.get(status, ""),
        )
    console.print(table)


def _print_escalations(commands: list[dict[str, Any]], console: Console) -> None:
    counts: Counter[str] = Counter()
    at_stake: Counter[str] = Counter()
    for command in commands:
        if command["type"] == "Escalate":
            counts[command["reason"]] += 1
            at_stake[command["reason"]] += command["amount"]
    if not counts:
        return
    table = Table(title="Escalated to a person")
    table.add_column("reason")
    table.add_column("cases", justify="right")
    table.add_column("money at stake", justify="right")
    for reason, count in counts.most_common():
        table.add_row(reason, f"{count:,}", rupiah(at_stake[reason]))
    console.print(table)


def _print_checks(outcome: DemoOutcome, console: Console) -> None:
    report, run = outcome.report, outcome.run
    totals = report["totals"]
    conserved = totals["debited"] == sum(
        totals[key] for key in ("kept", "refunded", "refund_pending", "at_risk")
    ) and all(
        order["debited"]
        == order["kept"] + order["refunded"] + order["refund_pending"] + order["at_risk"]
        for order in report["orders"]
    )
    unescalated_risk = sum(
        order["at_risk"] for order in report["orders"] if order["status"] != "ESCALATED"
    )
    checks = [
        ("debited = kept + refunded + pending + at risk, per order and in total", conserved),
        ("no money at risk outside escalated cases", unescalated_risk == 0),
        (
            f"provider paid out {rupiah(run.psp.paid_out_total)} = engine's refunded figure",
            run.psp.paid_out_total == totals["refunded"],
        ),
    ]
    table = Table(title="Checks")
    table.add_column("check")
    table.add_column("holds", justify="center")
    for label, holds in checks:
        table.add_row(label, "[green]yes[/green]" if holds else "[red]NO[/red]")
    console.print(table)
