"""The auditors' report over real logs, on SQLite and PostgreSQL: figures, evidence, files.

The figures are checked against what other parts compute on their own: the engine's
state at each day's end (`total_money`), and `reconcile`'s report. The hand-built logs
have chains of evidence known record by record.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.audit import (
    AuditReport,
    Period,
    RefundState,
    Verification,
    build_audit,
    jakarta,
    write_audit,
)
from reconciler.domain.accounting import Money, total_money
from reconciler.domain.decider import decide
from reconciler.domain.events import ClockTicked, EscalationResolved, Fact
from reconciler.domain.rules import Rules
from reconciler.domain.state import State
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.ingest.validation import Rejected, parse_record
from reconciler.projections import Projector
from reconciler.projections.database import view_database
from reconciler.reconcile import reconcile_file
from reconciler.replay.compare import DecisionDifference, DifferenceKind
from reconciler.report import build_report
from reconciler.store import Fault, VerifyReport
from tests.builders import WIB, Log
from tests.integration.test_projections_contract import SCENARIO, PostgresBackend, SQLiteBackend

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

    from reconciler.store import LogStore, StoredRecord

    OpenStore = Callable[[], LogStore]

RULES = Rules()
SOURCE = "events.jsonl"
GUARDED = Rules(refund_flood_limit=2, refund_flood_window=timedelta(seconds=600))
CASN_DAYS = Period(date(2024, 9, 4), date(2024, 9, 5), jakarta())
FIRST_DAY, SECOND_DAY = date(2024, 9, 4), date(2024, 9, 5)
GENERATED = datetime(2024, 9, 6, 9, 0, tzinfo=WIB)
HOSTILE_NOTE = '=HYPERLINK("http://evil.example/x","y") <script>window.__pwned=1</script>'
HOSTILE_REFERENCE = '<img src=x onerror="window.__pwned=2">TRF-1'
HOSTILE_OPERATOR = "<b>ops-2</b>"


# -- helpers ------------------------------------------------------------------------------


def verification(
    store: LogStore,
    differences: Sequence[DecisionDifference] = (),
    chain: VerifyReport | None = None,
) -> Verification:
    """The caller's verification of a store, with the differences given (none by default)."""
    decisions = sum(1 for _ in store.read(kind="decision"))
    return Verification(
        chain=chain or store.verify(),
        log="test log",
        records_replayed=store.last_position(),
        as_of="end of log",
        decisions_recorded=decisions,
        decisions_rederived=decisions,
        differences=list(differences),
        rules={"issue_sla_seconds": 300, "max_refund_attempts": 5},
        generated_at=GENERATED,
    )


def feed(store: LogStore, log: Log, rules: Rules = RULES, batch: int = 3) -> None:
    """Run a log's facts through the engine into the store, `batch` per write."""
    engine = Engine(rules, store)
    facts = [InputRecord.from_fact(SOURCE, n, fact) for n, fact in enumerate(log.facts, 1)]
    for start in range(0, len(facts), batch):
        engine.process(facts[start : start + batch])


def audit(store: LogStore, period: Period, rules: Rules = RULES, **kwargs: Any) -> AuditReport:
    """Project the store's read models and gather the period's report."""
    Projector(store, rules).catch_up()
    return build_audit(store, period, verification(store, **kwargs))


def by_position(store: LogStore) -> dict[int, StoredRecord]:
    """Every record of the store by its position."""
    return {record.position: record for record in store.read()}


def day_closes(facts: Iterable[Fact], zone: timezone) -> dict[date, Money]:
    """The engine's money at each day's end: just before the first tick of a later day acts."""
    state = State()
    closes: dict[date, Money] = {}
    for fact in facts:
        clock = state.clock
        if isinstance(fact, ClockTicked) and clock is not None:
            day = clock.astimezone(zone).date()
            if fact.at.astimezone(zone).date() > day:
                closes[day] = total_money(state)
        decide(state, fact, RULES)
    if state.clock is not None:
        closes[state.clock.astimezone(zone).date()] = total_money(state)
    return closes


def casn_facts() -> Iterator[Fact]:
    """The recorded CASN day's facts as `reconcile` feeds them, its final tick included."""
    latest: datetime | None = None
    with SCENARIO.open("rb") as lines:
        for line in lines:
            fact = parse_record(line)
            assert not isinstance(fact, Rejected)
            latest = fact.occurred_at if latest is None else max(latest, fact.occurred_at)
            yield fact
    assert latest is not None
    yield ClockTicked(event_id="final", version=1, occurred_at=latest, at=latest)


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows by column name."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def resolution(  # noqa: PLR0913 - an operator's action names all of these
    log: Log,
    event_id: str,
    escalation_id: str,
    outcome: str,
    *,
    operator: str = "ops-1",
    note: str = "checked with the bank",
    reference: str | None = None,
) -> EscalationResolved:
    """An operator's resolution of an escalation, appended to the log."""
    fact = EscalationResolved.model_validate(
        {
            "event_id": event_id,
            "version": 1,
            "occurred_at": log.now,
            "escalation_id": escalation_id,
            "outcome": outcome,
            "operator": operator,
            "note": note,
            "reference": reference,
        }
    )
    log.add(fact)
    return fact


def refund_retried_then_paid() -> Log:
    """Issuance refused for good, so a refund; it fails once (retryable) and is paid on retry."""
    log = Log()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.tick(300)
    log.issue_failed("A1", retryable=False, command_id="A1/issue/1")
    log.tick(60)
    log.refund_failed("P1/PAID_NOT_ISSUED", retryable=True)
    log.tick(600)
    log.tick(60)
    log.refund_ok("P1/PAID_NOT_ISSUED")
    log.tick(60)
    return log


def refund_settled_by_an_operator() -> Log:
    """A refund fails for good; an operator's first outcome is refused, the second accepted."""
    log = Log()
    log.tick()
    log.order("B1")
    log.debit("P2", "B1")
    log.tick(300)
    log.issue_failed("B1", retryable=False, command_id="B1/issue/1")
    log.tick(60)
    log.refund_failed("P2/PAID_NOT_ISSUED", retryable=False)
    log.tick(60)
    resolution(log, "op-refused", "P2/REFUND_FAILED", "NO_MONEY_AT_STAKE")
    log.tick(60)
    resolution(
        log,
        "op-accepted",
        "P2/REFUND_FAILED",
        "REFUNDED_OUTSIDE",
        operator=HOSTILE_OPERATOR,
        note=HOSTILE_NOTE,
        reference=HOSTILE_REFERENCE,
    )
    log.tick(60)
    return log


def duplicate_debit(log: Log, order_id: str) -> str:
    """A fulfilled order debited twice: the second debit is refunded at once; its refund id."""
    log.order(order_id)
    log.debit("P-" + order_id, order_id)
    log.stamps(order_id, "S-" + order_id)
    log.debit("P2-" + order_id, order_id)
    return f"P2-{order_id}/DUPLICATE_DEBIT"


def over_issued(log: Log, order_id: str) -> str:
    """A paid one-stamp order delivered two stamps: escalated at once; the escalation id."""
    log.order(order_id)
    log.debit("P-" + order_id, order_id)
    log.stamps(order_id, f"S-{order_id}-1", f"S-{order_id}-2")
    return f"{order_id}/OVER_ISSUED"


def flooded_twice() -> Log:
    """Under a limit of two refunds: an incident approved, then one rejected (GUARDED rules)."""
    log = Log()
    log.tick()
    for n in range(1, 5):
        log.order(f"A{n}")
        log.debit(f"P{n}", f"A{n}", amount=5_000)
    log.tick(60)
    log.approve("P3/AMOUNT_MISMATCH/REFUND_FLOOD")
    log.tick(60)
    log.refund_ok("P1/AMOUNT_MISMATCH", 5_000)
    log.refund_ok("P3/AMOUNT_MISMATCH", 5_000)
    log.tick(700)
    for n in range(5, 9):
        log.order(f"A{n}")
        log.debit(f"P{n}", f"A{n}", amount=5_000)
    log.tick(60)
    log.reject("P7/AMOUNT_MISMATCH/REFUND_FLOOD")
    log.tick(60)
    return log


def held_then_delivered() -> Log:
    """Three refunds at once under a limit of two; the held one's stamps arrive (GUARDED rules)."""
    log = Log()
    log.tick()
    for n in range(1, 4):
        log.order(f"A{n}")
        log.debit(f"P{n}", f"A{n}")
    log.tick(300)
    for n in range(1, 4):
        log.issue_failed(f"A{n}", retryable=False, command_id=f"A{n}/issue/1")
    log.tick(60)
    log.stamps("A3", "S-A3")
    log.tick(60)
    return log


def two_days() -> tuple[Log, dict[str, str]]:
    """Refunds and escalations on both sides of midnight WIB; the ids by name."""
    log = Log()
    log.tick()
    ids = {"paid_day_1": duplicate_debit(log, "D1")}
    log.tick(60)
    log.refund_ok(ids["paid_day_1"])
    ids["closed_day_1"] = over_issued(log, "E1")
    log.tick(60)
    resolution(log, "op-e1", ids["closed_day_1"], "NO_MONEY_AT_STAKE")
    ids["open_from_day_1"] = over_issued(log, "E2")
    log.tick((datetime(2024, 9, 4, 23, 50, tzinfo=WIB) - log.now).total_seconds())
    ids["paid_day_2"] = duplicate_debit(log, "D2")
    log.tick(20 * 60)
    log.refund_ok(ids["paid_day_2"])
    ids["decided_day_2"] = duplicate_debit(log, "D3")
    log.refund_ok("P-GHOST/ORPHAN_DEBIT", 7_500)
    log.tick(60)
    return log, ids


# -- the period ---------------------------------------------------------------------------


def test_a_period_runs_from_midnight_to_midnight_in_its_zone() -> None:
    """WIB days: UTC bounds are 17:00 the evening before; the last day's midnight is excluded."""
    period = Period(FIRST_DAY, SECOND_DAY, jakarta())
    assert period.utc_start == datetime(2024, 9, 3, 17, 0, tzinfo=UTC)
    assert period.utc_end == datetime(2024, 9, 5, 17, 0, tzinfo=UTC)
    assert period.days() == [FIRST_DAY, SECOND_DAY]
    assert period.contains(datetime(2024, 9, 5, 23, 59, 59, tzinfo=WIB))
    assert not period.contains(datetime(2024, 9, 6, 0, 0, tzinfo=WIB))
    assert period.before(datetime(2024, 9, 3, 23, 59, tzinfo=WIB))
    assert period.label() == "2024-09-04 to 2024-09-05 (Asia/Jakarta)"
    assert Period(FIRST_DAY, FIRST_DAY).zone_name == "Asia/Jakarta"


def test_a_period_refuses_inverted_days_and_half_hour_zones() -> None:
    """An end before the start, or a zone whose days the hourly figures cannot split, is refused."""
    with pytest.raises(ValueError, match="before it starts"):
        Period(SECOND_DAY, FIRST_DAY)
    with pytest.raises(ValueError, match="whole hours"):
        Period(FIRST_DAY, FIRST_DAY, timezone(timedelta(hours=5, minutes=30)))


# -- the contract, on both backends ---------------------------------------------------------


class AuditContract:
    """What the report gathers and writes, on every backend."""

    @pytest.fixture
    def store(self, open_store_on_database: OpenStore) -> LogStore:
        """Give a store with its tables created on the test's own database."""
        return open_store_on_database()

    @pytest.fixture
    def casn(self, store: LogStore) -> dict[str, Any]:
        """Reconcile the recorded CASN peak day into the store; give its report."""
        run = reconcile_file(SCENARIO, RULES, store)
        return build_report(run.state, run.decisions, run.rejections)

    def test_casn_report_passes_and_accounts_for_every_refunded_rupiah(
        self, store: LogStore, casn: dict[str, Any]
    ) -> None:
        """Every refund commanded is in the report; paid, pending and failed sum to reconcile's."""
        report = audit(store, CASN_DAYS)
        assert report.verdict == "PASS"
        assert report.failures() == []
        commanded = {c["refund_id"] for c in casn["commands"] if c["type"] == "RefundPayment"}
        assert {refund.refund_id for refund in report.refunds} == commanded
        totals = casn["totals"]
        assert sum(refund.refunded for refund in report.refunds) == totals["refunded"] > 0
        assert sum(refund.pending for refund in report.refunds) == totals["refund_pending"]
        failed = [r for r in report.refunds if r.state is RefundState.FAILED_ESCALATED]
        assert sum(refund.amount for refund in failed) == totals["at_risk"] > 0
        assert report.closing == Money(**totals)
        assert report.opening == Money()
        escalated = [c["command_id"] for c in casn["commands"] if c["type"] == "Escalate"]
        assert [case.escalation_id for case in report.escalations] == escalated
        assert report.open_escalations == len(escalated)
        placed = [order for order in casn["orders"] if order["quantity"] > 0]
        assert report.orders_placed == len(placed) == 500
        assert sum(report.orders_by_status.values()) == 500
        for refund in report.refunds:
            debits = [item for item in refund.evidence if item.type == "PaymentDebited"]
            assert refund.payment_id in {dict(item.fields)["payment_id"] for item in debits}
            orders = {
                dict(item.fields)["order_id"]
                for item in refund.evidence
                if item.type == "OrderPlaced"
            }
            assert orders <= {refund.order_id}
        reasons = {refund.reason for refund in report.refunds}
        assert {"ORPHAN_DEBIT", "DUPLICATE_DEBIT", "PAID_NOT_ISSUED"} <= reasons

    def test_casn_day_closes_equal_the_engines_state_at_each_days_end(
        self, store: LogStore, casn: dict[str, Any]
    ) -> None:
        """Each day's close is `total_money` of the engine's state before the next day's tick."""
        del casn
        report = audit(store, CASN_DAYS)
        expected = day_closes(casn_facts(), WIB)
        assert set(expected) == {FIRST_DAY, SECOND_DAY}
        assert [day.closing for day in report.days] == [expected[FIRST_DAY], expected[SECOND_DAY]]
        assert report.days[1].opening == report.days[0].closing
        assert all(day.balanced and day.recorded for day in report.days)
        assert report.days[0].movement == expected[FIRST_DAY]

    def test_casn_files_hold_every_refund_and_the_reports_figures(
        self, store: LogStore, casn: dict[str, Any], tmp_path: Path
    ) -> None:
        """The CSVs hold every refund and evidence row, money as integers, naming real records."""
        report = audit(store, CASN_DAYS)
        paths = write_audit(report, tmp_path, html_refund_rows=20, html_evidence_chains=5)
        assert {path.name for path in paths} == {
            "report.html",
            "conservation_by_day.csv",
            "totals.csv",
            "refunds.csv",
            "refund_evidence.csv",
            "escalations.csv",
            "differences.csv",
            "verification.json",
        }
        refunds = read_csv(tmp_path / "refunds.csv")
        assert [row["refund_id"] for row in refunds] == [r.refund_id for r in report.refunds]
        assert sum(int(row["refunded"]) for row in refunds) == casn["totals"]["refunded"]
        evidence = read_csv(tmp_path / "refund_evidence.csv")
        assert len(evidence) == sum(len(refund.evidence) for refund in report.refunds)
        records = by_position(store)
        for row in evidence:
            record = records[int(row["position"])]
            assert (record.record_id, record.type, record.kind) == (
                row["id"],
                row["type"],
                row["kind"],
            )
        days = read_csv(tmp_path / "conservation_by_day.csv")
        assert [row["day"] for row in days] == ["2024-09-04", "2024-09-05"]
        for row, day in zip(days, report.days, strict=True):
            assert int(row["closing_debited"]) == day.closing.debited
            assert int(row["movement_kept"]) == day.movement.kept
            assert row["balanced"] == "true"
        totals = {row["figure"]: int(row["closing"]) for row in read_csv(tmp_path / "totals.csv")}
        assert totals == casn["totals"]
        escalations = read_csv(tmp_path / "escalations.csv")
        assert len(escalations) == len(report.escalations)
        assert {row["state"] for row in escalations} == {"open"}
        document = json.loads((tmp_path / "verification.json").read_text(encoding="utf-8"))
        assert document["verdict"] == "PASS"
        assert document["chain"]["head_hash"] == store.verify().head_hash.hex()
        assert document["totals"]["closing"] == casn["totals"]
        html = (tmp_path / "report.html").read_text(encoding="utf-8")
        assert html.count("<tr data-refund=") == 20
        assert html.count('<tr class="chain"') == 5
        assert f"{len(report.refunds) - 20}</strong> more refunds" in html
        (failed,) = [r for r in report.refunds if r.state is RefundState.FAILED_ESCALATED]
        assert report.refunds.index(failed) >= 20
        assert f'<tr data-refund="{failed.refund_id}"' in html
        assert f'<tr class="chain" data-chain="{failed.refund_id}"' in html

    @pytest.mark.parametrize("batch", [3, 1000], ids=["small-writes", "one-write"])
    def test_a_refunds_chain_is_its_facts_decisions_and_answers_in_order(
        self, store: LogStore, batch: int
    ) -> None:
        """A refund's chain: order, debit, issuance, detection, command, failure, retry, payment."""
        log = refund_retried_then_paid()
        feed(store, log, batch=batch)
        report = audit(store, Period(FIRST_DAY, FIRST_DAY, jakarta()))
        (refund,) = report.refunds
        assert (refund.refund_id, refund.order_id, refund.payment_id) == (
            "P1/PAID_NOT_ISSUED",
            "A1",
            "P1",
        )
        assert (refund.state, refund.amount, refund.refunded, refund.attempts) == (
            RefundState.PAID,
            12_500,
            12_500,
            2,
        )
        assert refund.psp_refs == ("psp-P1/PAID_NOT_ISSUED",)
        assert [(item.step, item.type, item.record_id) for item in refund.evidence] == [
            ("order", "OrderPlaced", log.facts[1].event_id),
            ("debit", "PaymentDebited", log.facts[2].event_id),
            ("detected", "DiscrepancyDetected", "A1/PAID_NOT_ISSUED/detected"),
            ("issuance", "IssuanceCommanded", "A1/issue/1"),
            ("issuance", "StampIssuanceFailed", log.facts[4].event_id),
            ("detected", "DiscrepancyDetected", "P1/PAID_NOT_ISSUED/detected"),
            ("commanded", "RefundCommanded", "P1/PAID_NOT_ISSUED/1"),
            ("result", "RefundFailed", log.facts[6].event_id),
            ("retried", "RefundCommanded", "P1/PAID_NOT_ISSUED/2"),
            ("result", "RefundSucceeded", log.facts[9].event_id),
        ]
        records = by_position(store)
        for item in refund.evidence:
            assert records[item.position].record_id == item.record_id
        start = log.facts[0].occurred_at
        assert [item.at for item in refund.evidence if item.kind == "fact"] == [
            start,
            start,
            start + timedelta(seconds=300),
            start + timedelta(seconds=360),
            start + timedelta(seconds=1020),
        ]
        assert refund.first_at == refund.evidence[6].at == start + timedelta(seconds=300)
        assert refund.settled_at == start + timedelta(seconds=1020)
        assert dict(refund.evidence[9].fields)["psp_refund_ref"] == "psp-P1/PAID_NOT_ISSUED"

    def test_an_operators_resolution_closes_the_case_and_pays_the_refund(
        self, store: LogStore
    ) -> None:
        """REFUNDED_OUTSIDE settles the refund; the refused action is kept, marked not accepted."""
        feed(store, refund_settled_by_an_operator())
        report = audit(store, Period(FIRST_DAY, FIRST_DAY, jakarta()))
        (refund,) = report.refunds
        assert (refund.state, refund.refunded) == (RefundState.PAID_OUTSIDE, 12_500)
        assert refund.escalations == ("P2/REFUND_FAILED",)
        steps = [item.step for item in refund.evidence]
        assert steps[-5:] == ["result", "escalated", "operator", "operator", "resolved"]
        (case,) = report.escalations
        assert (case.escalation_id, case.reason, case.amount, case.open) == (
            "P2/REFUND_FAILED",
            "REFUND_FAILED",
            12_500,
            False,
        )
        assert case.resolution is not None
        assert case.resolution.outcome == "REFUNDED_OUTSIDE"
        assert (case.resolution.operator, case.resolution.note) == (HOSTILE_OPERATOR, HOSTILE_NOTE)
        assert [(a.event_id, a.outcome, a.accepted) for a in case.actions] == [
            ("op-refused", "NO_MONEY_AT_STAKE", False),
            ("op-accepted", "REFUNDED_OUTSIDE", True),
        ]
        assert case.reference == HOSTILE_REFERENCE
        assert report.closing == Money(debited=12_500, refunded=12_500)
        assert report.open_escalations == 0

    def test_held_refunds_follow_the_operators_decision(self, store: LogStore) -> None:
        """Held refunds approved are commanded and paid; rejected ones are escalated, at risk."""
        feed(store, flooded_twice(), GUARDED)
        report = audit(store, Period(FIRST_DAY, FIRST_DAY), GUARDED)
        states = {refund.payment_id: refund.state for refund in report.refunds}
        assert states == {
            "P1": RefundState.PAID,
            "P2": RefundState.PENDING,
            "P3": RefundState.PAID,
            "P4": RefundState.PENDING,
            "P5": RefundState.PENDING,
            "P6": RefundState.PENDING,
            "P7": RefundState.REJECTED,
            "P8": RefundState.REJECTED,
        }
        assert sum(refund.pending for refund in report.refunds) == report.closing.refund_pending
        rejected = [r for r in report.refunds if r.state is RefundState.REJECTED]
        assert sum(refund.amount for refund in rejected) == report.closing.at_risk == 10_000
        assert sum(refund.refunded for refund in report.refunds) == report.closing.refunded
        (p3,) = [refund for refund in report.refunds if refund.payment_id == "P3"]
        assert [(item.step, item.type) for item in p3.evidence][-5:] == [
            ("held", "RefundHeld"),
            ("operator", "HeldRefundsApproved"),
            ("resolved", "CaseResolved"),
            ("commanded", "RefundCommanded"),
            ("result", "RefundSucceeded"),
        ]
        assert p3.escalations == ("P3/AMOUNT_MISMATCH/REFUND_FLOOD",)
        (p7,) = [refund for refund in report.refunds if refund.payment_id == "P7"]
        assert [item.step for item in p7.evidence][-4:] == [
            "held",
            "operator",
            "resolved",
            "escalated",
        ]
        assert p7.escalations == ("P7/AMOUNT_MISMATCH/REFUND_FLOOD", "P7/REFUND_REJECTED")
        cases = {case.escalation_id: case for case in report.escalations}
        approved = cases["P3/AMOUNT_MISMATCH/REFUND_FLOOD"]
        assert approved.resolution is not None
        assert (approved.resolution.outcome, approved.resolution.operator) == ("APPROVED", "ops-1")
        assert [(a.type, a.accepted) for a in approved.actions] == [("HeldRefundsApproved", True)]
        assert cases["P7/REFUND_REJECTED"].open
        assert cases["P8/REFUND_REJECTED"].amount == 5_000

    def test_a_held_refund_is_withdrawn_when_the_stamps_arrive(self, store: LogStore) -> None:
        """A held refund whose stamps are delivered after all ends withdrawn, nothing returned."""
        feed(store, held_then_delivered(), GUARDED)
        report = audit(store, Period(FIRST_DAY, FIRST_DAY), GUARDED)
        (withdrawn,) = [r for r in report.refunds if r.state is RefundState.WITHDRAWN]
        assert (withdrawn.payment_id, withdrawn.refunded, withdrawn.pending) == ("P3", 0, 0)
        assert [item.type for item in withdrawn.evidence][-2:] == ["RefundHeld", "RefundWithdrawn"]
        assert withdrawn.settled_at == withdrawn.evidence[-1].at
        assert report.closing.kept == 12_500
        assert report.closing.refund_pending == sum(r.pending for r in report.refunds) == 25_000

    def test_a_later_period_carries_in_what_was_still_open(self, store: LogStore) -> None:
        """A refund decided before the period and open at its start comes in, and so does a case."""
        log, ids = two_days()
        feed(store, log)
        both = audit(store, Period(FIRST_DAY, SECOND_DAY, jakarta()))
        expected = day_closes(log.facts, WIB)
        assert [day.closing for day in both.days] == [expected[FIRST_DAY], expected[SECOND_DAY]]
        assert [r.refund_id for r in both.refunds] == [
            ids["paid_day_1"],
            ids["paid_day_2"],
            ids["decided_day_2"],
        ]
        debits = [item.record_id for item in both.refunds[0].evidence if item.step == "debit"]
        assert debits == [log.facts[2].event_id, log.facts[4].event_id]
        second = build_audit(store, Period(SECOND_DAY, SECOND_DAY, jakarta()), verification(store))
        assert second.opening == both.days[0].closing
        assert second.opening.refund_pending == 12_500
        assert second.closing == both.closing == expected[SECOND_DAY]
        assert [(r.refund_id, r.carried_in, r.state) for r in second.refunds] == [
            (ids["paid_day_2"], True, RefundState.PAID),
            (ids["decided_day_2"], False, RefundState.PENDING),
        ]
        assert [(c.escalation_id, c.carried_in, c.open) for c in second.escalations] == [
            (ids["open_from_day_1"], True, True)
        ]
        assert [c.escalation_id for c in both.escalations] == [
            ids["closed_day_1"],
            ids["open_from_day_1"],
        ]
        assert second.notes() == [
            "1 refund(s) were first decided before the period",
            (
                "1 refund payout(s) in the log, 7500 rupiah in all,"
                " answered no refund the engine commanded"
            ),
        ]
        assert second.unmatched_payouts == (1, 7_500)
        later = build_audit(store, Period(date(2024, 9, 6), date(2024, 9, 7)), verification(store))
        assert [(r.refund_id, r.carried_in) for r in later.refunds] == [
            (ids["decided_day_2"], True)
        ]
        assert [c.escalation_id for c in later.escalations] == [ids["open_from_day_1"]]
        assert [day.closing for day in later.days] == [expected[SECOND_DAY]] * 2
        assert not any(day.recorded for day in later.days)
        assert any("later days carry its figures over" in note for note in later.notes())

    def test_a_broken_chain_and_differences_fail_the_report(
        self, store: LogStore, tmp_path: Path
    ) -> None:
        """The verdict is FAIL, naming the bad position and the differences; the files agree."""
        feed(store, refund_retried_then_paid())
        broken = VerifyReport(
            ok=False,
            records_checked=7,
            head_hash=bytes(range(32)),
            first_bad_position=7,
            fault=Fault.ALTERED,
            detail="content does not match the recorded hash",
        )
        difference = DecisionDifference(
            kind=DifferenceKind.CHANGED,
            source="events.jsonl",
            decision_id="P1/PAID_NOT_ISSUED/1",
            type="RefundCommanded",
            recorded_position=9,
            recorded=b'{"amount":12500}',
            rederived=b'{"amount":25000}',
        )
        report = audit(store, Period(FIRST_DAY, FIRST_DAY), differences=[difference], chain=broken)
        assert report.verdict == "FAIL"
        assert report.failures() == [
            (
                "the hash chain is broken at position 7 (altered):"
                " content does not match the recorded hash"
            ),
            "1 decision(s) differ between the log and its replay",
        ]
        write_audit(report, tmp_path)
        html = (tmp_path / "report.html").read_text(encoding="utf-8")
        assert '<body data-verdict="FAIL">' in html
        assert "broken at position 7 (altered)" in html
        assert bytes(range(32)).hex() in html
        (row,) = read_csv(tmp_path / "differences.csv")
        assert row == {
            "kind": "changed",
            "decision_id": "P1/PAID_NOT_ISSUED/1",
            "type": "RefundCommanded",
            "source": "events.jsonl",
            "recorded_position": "9",
            "recorded": '{"amount":12500}',
            "rederived": '{"amount":25000}',
        }
        document = json.loads((tmp_path / "verification.json").read_text(encoding="utf-8"))
        assert (document["verdict"], document["replay"]["differences"]) == ("FAIL", 1)
        assert document["chain"]["first_bad_position"] == 7
        short = replace(
            report.verification, chain=store.verify(), differences=[], decisions_rederived=3
        )
        assert replace(report, verification=short).failures() == [
            f"the log recorded {short.decisions_recorded} decision(s), the replay re-derived 3"
        ]

    def test_a_day_that_does_not_balance_fails_visibly(
        self, store: LogStore, tmp_path: Path
    ) -> None:
        """Read models that lost a rupiah fail the day, in the verdict, the page and the CSV."""
        log, _ = two_days()
        feed(store, log)
        Projector(store, RULES).catch_up()
        with view_database(store).write() as session:
            session.run(
                "UPDATE {schema}.rm_money_hourly SET kept = kept - 1 WHERE hour >= ?",
                [datetime(2024, 9, 4, 17, 0, tzinfo=UTC)],
            )
        report = build_audit(store, Period(FIRST_DAY, SECOND_DAY), verification(store))
        assert [day.balanced for day in report.days] == [True, False]
        assert report.failures() == ["money is not conserved at the close of 2024-09-05"]
        write_audit(report, tmp_path)
        html = (tmp_path / "report.html").read_text(encoding="utf-8")
        assert 'data-day="2024-09-05" data-balanced="false" class="fail"' in html
        assert "DOES NOT BALANCE" in html
        rows = read_csv(tmp_path / "conservation_by_day.csv")
        assert [row["balanced"] for row in rows] == ["true", "false"]

    def test_stale_read_models_fail_the_report(self, store: LogStore) -> None:
        """Figures from read models behind the log are not signed for."""
        log = refund_retried_then_paid()
        feed(store, log)
        Projector(store, RULES).catch_up(limit=5)
        report = build_audit(store, Period(FIRST_DAY, FIRST_DAY), verification(store))
        assert report.failures() == [
            f"the read models reach position 5 of {store.last_position()}: the figures are stale"
        ]

    def test_log_text_is_shown_as_text_and_the_page_fetches_nothing(
        self, store: LogStore, tmp_path: Path
    ) -> None:
        """Operators' text is escaped in the page and defused in the CSV; no URL is loaded."""
        feed(store, refund_settled_by_an_operator())
        write_audit(audit(store, Period(FIRST_DAY, FIRST_DAY)), tmp_path)
        html = (tmp_path / "report.html").read_text(encoding="utf-8")
        assert "<script" not in html
        assert "<img" not in html
        assert "<b>" not in html
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;TRF-1" in html
        assert "default-src 'none'" in html
        assert re.search(r"<[^>]*\s(src|href)\s*=", html) is None
        assert "url(" not in html
        assert "Rp 12.500" in html
        (row,) = read_csv(tmp_path / "escalations.csv")
        assert row["note"] == "'" + HOSTILE_NOTE
        assert row["reference"] == HOSTILE_REFERENCE
        assert row["operator"] == HOSTILE_OPERATOR
        assert (row["amount"], row["state"], row["accepted_action_event_id"]) == (
            "12500",
            "resolved",
            "op-accepted",
        )

    def test_gathering_reads_the_log_in_pages(
        self, store: LogStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every read of the log asks for one page, however long the log; the result is the same."""
        feed(store, two_days()[0])
        period = Period(FIRST_DAY, SECOND_DAY)
        whole = audit(store, period)
        reads: list[int | None] = []
        read = store.read

        def paged(*args: Any, **kwargs: Any) -> Iterator[StoredRecord]:
            reads.append(kwargs.get("limit"))
            return read(*args, **kwargs)

        monkeypatch.setattr(store, "read", paged)
        paged_report = build_audit(store, period, verification(store), page_size=7)
        assert paged_report == whole
        assert len(reads) > store.last_position() // 7
        assert set(reads) <= {7, None}
        assert reads.count(None) == 1  # the test's own count of decisions, in `verification`


class TestAuditOnSQLite(AuditContract, SQLiteBackend):
    """The contract on a SQLite file."""


class TestAuditOnPostgres(AuditContract, PostgresBackend):
    """The contract in a PostgreSQL schema."""
