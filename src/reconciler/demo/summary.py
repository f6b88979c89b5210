"""The demo's closing summary, for a finance person: outcomes, money, the proof.

Beside the engine's figures it sets what the provider simulators say they did (their
`/v1/stats`), and checks that the two agree: every stamp the issuer issued reached the
engine, the PSP paid out what the engine counts as refunded, and no refund was paid
twice however often the jobs asked.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.table import Table

from reconciler.domain.events import PaymentDebited, RefundSucceeded, StampIssued
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
    _print_providers(outcome, console)
    _print_checks(outcome, console)
    console.print(
        f"\nFiles: {outcome.events_path} (the event log), {outcome.log_path} "
        f"(hash-chained store), {outcome.report_path} (this report as JSON)."
        f"\nCheck it again: reconciler reconcile {outcome.events_path} --format table"
    )
    store = f"sqlite:///{outcome.log_path}"
    first, last = outcome.run.config.opening.date(), outcome.run.closed_at.date()
    console.print(
        f"Audit it: reconciler replay --store {store}"
        f"\n          reconciler audit --store {store} --from {first} --to {last}",
        soft_wrap=True,
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


def _stamps_from_issuer(outcome: DemoOutcome) -> int:
    """Stamps the jobs brought back from the issuer (the portal's own carry no command)."""
    return sum(
        len(fact.serial_numbers)
        for fact in outcome.run.facts
        if isinstance(fact, StampIssued) and fact.command_id is not None
    )


def _refunds_confirmed(outcome: DemoOutcome) -> dict[str, int]:
    """Each refund the engine was told succeeded, with the amount it was told."""
    return {
        fact.refund_id: fact.amount
        for fact in outcome.run.facts
        if isinstance(fact, RefundSucceeded)
    }


def _refunds_confirmed_twice(outcome: DemoOutcome) -> int:
    """Refund ids the engine was told of under more than one PSP reference."""
    refs: dict[str, set[str]] = {}
    for fact in outcome.run.facts:
        if isinstance(fact, RefundSucceeded):
            refs.setdefault(fact.refund_id, set()).add(fact.psp_refund_ref)
    return sum(len(seen) > 1 for seen in refs.values())


def _print_providers(outcome: DemoOutcome, console: Console) -> None:
    stats, jobs = outcome.providers, outcome.jobs
    restarts = sum(jobs.restarts.values())
    table = Table(
        title="The providers' own books (/v1/stats), beside the engine's",
        caption=f"Repeats: the jobs asked again with the same key, {jobs.retries():,} times "
        f"after a transient failure, {restarts:,} times after a job restarted.",
    )
    table.add_column("")
    table.add_column("simulators say", justify="right")
    table.add_column("engine and jobs say", justify="right")
    table.add_row(
        f"Issue requests ({jobs.repeats('IssueStamps'):,} repeats)",
        f"{stats.issuer_requests:,}",
        f"{jobs.requests.get('IssueStamps', 0):,}",
    )
    table.add_row(
        "Stamps issued / received",
        f"{stats.stamps_issued:,}",
        f"{_stamps_from_issuer(outcome):,}",
    )
    table.add_row(
        f"Refund requests ({jobs.repeats('RefundPayment'):,} repeats)",
        f"{stats.psp_requests:,}",
        f"{jobs.requests.get('RefundPayment', 0):,}",
    )
    table.add_row(
        "Refunds paid / confirmed",
        f"{stats.payouts:,}",
        f"{len(_refunds_confirmed(outcome)):,}",
    )
    table.add_row(
        "Refund ids paid twice",
        f"{sum(count > 1 for count in stats.payouts_by_refund.values()):,}",
        f"{_refunds_confirmed_twice(outcome):,}",
    )
    table.add_row(
        "Money paid out / refunded",
        rupiah(stats.paid_out_total),
        rupiah(outcome.report["totals"]["refunded"]),
    )
    console.print(table)


def _paid_once(outcome: DemoOutcome) -> bool:
    """Each refund id paid once, as confirmed, and no debit refunded beyond its amount."""
    if any(count > 1 for count in outcome.providers.payouts_by_refund.values()):
        return False
    paid = outcome.providers.paid_out_by_refund
    payment_of = {
        command["refund_id"]: command["payment_id"]
        for command in outcome.report["commands"]
        if command["type"] == "RefundPayment"
    }
    debited = {
        fact.payment_id: fact.amount
        for fact in outcome.run.facts
        if isinstance(fact, PaymentDebited)
    }
    returned: Counter[str] = Counter()
    for refund_id, amount in paid.items():
        if refund_id not in payment_of:
            return False  # the PSP paid a refund the engine never commanded
        returned[payment_of[refund_id]] += amount
    within_debits = all(amount <= debited[payment] for payment, amount in returned.items())
    return within_debits and paid == _refunds_confirmed(outcome)


def _print_checks(outcome: DemoOutcome, console: Console) -> None:
    report, stats = outcome.report, outcome.providers
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
    issued_by_jobs = _stamps_from_issuer(outcome)
    checks = [
        ("debited = kept + refunded + pending + at risk, per order and in total", conserved),
        ("no money at risk outside escalated cases", unescalated_risk == 0),
        (
            f"provider paid out {rupiah(stats.paid_out_total)} = engine's refunded figure",
            stats.paid_out_total == totals["refunded"],
        ),
        (
            (
                f"no refund paid twice: {stats.payouts:,} paid once each for "
                f"{stats.psp_requests:,} requests, none beyond its debit"
            ),
            _paid_once(outcome),
        ),
        (
            f"issuer issued {stats.stamps_issued:,} stamps = {issued_by_jobs:,} the engine got",
            stats.stamps_issued == issued_by_jobs,
        ),
    ]
    table = Table(title="Checks")
    table.add_column("check")
    table.add_column("holds", justify="center")
    for label, holds in checks:
        table.add_row(label, "[green]yes[/green]" if holds else "[red]NO[/red]")
    console.print(table)
