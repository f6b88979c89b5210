"""Gathering an audit report from a shadow log and its finance read models.

The log is read twice, in pages: once to the end for refunds and escalations, once to
the last refund's first decision for what led to each refund (see `refunds`). Money by
day and orders come from the read models, which the caller has projected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.audit import escalations as escalation_log
from reconciler.audit import refunds as refund_log
from reconciler.audit.model import AuditReport, Projection
from reconciler.audit.money import balances, orders_placed
from reconciler.audit.stream import PAGE_SIZE, causal
from reconciler.projections.queries import ReadModels

if TYPE_CHECKING:
    from reconciler.audit.model import Verification
    from reconciler.audit.period import Period
    from reconciler.store import LogStore, StoredRecord


def build_audit(
    shadow: LogStore, period: Period, verification: Verification, *, page_size: int = PAGE_SIZE
) -> AuditReport:
    """The audit report of `period` over the shadow log, with the caller's verification."""
    views = ReadModels(shadow)
    summary = views.summary()
    refunds = refund_log.RefundTracker(period)
    escalations = escalation_log.EscalationTracker(period)
    for record, body, clock in causal(shadow, summary.log_position, _first_pass, page_size):
        refunds.feed(record, body, clock)
        escalations.feed(record, body, clock)
    dossiers = refunds.dossiers()
    causes = refund_log.Causes(dossiers)
    for record, body, clock in causal(shadow, causes.until, causes.wants, page_size):
        causes.feed(record, body, clock)
    statuses = orders_placed(views, period)
    unmatched = [
        row
        for row in views.outcomes()
        if (row.kind, row.outcome, row.reason) == ("refund", "succeeded", "unmatched")
    ]
    return AuditReport(
        period=period,
        verification=verification,
        projection=Projection(summary.position, summary.log_position, summary.clock),
        days=balances(views, period),
        refunds=tuple(dossier.record(period) for dossier in dossiers),
        escalations=tuple(escalations.records()),
        orders_placed=statuses.total(),
        orders_by_status=dict(sorted(statuses.items())),
        dead_letters=summary.dead_letters,
        unmatched_payouts=(sum(r.count for r in unmatched), sum(r.amount for r in unmatched)),
    )


def _first_pass(record: StoredRecord) -> bool:
    """The records the refunds and escalations are followed by."""
    return record.type in refund_log.TYPES or record.type in escalation_log.TYPES
