"""The auditors' report for a period: conservation by day, every refund's evidence, escalations.

`build_audit(shadow, period, verification)` gathers it from a shadow log whose decisions
a replay re-derived and whose finance read models were projected from it;
`write_audit(report, out_dir)` writes `report.html` (self-contained, for printing and
signing) and CSV files holding every row.
"""

from reconciler.audit.evidence import build_audit
from reconciler.audit.model import (
    AuditReport,
    DayBalance,
    EscalationRecord,
    Evidence,
    OperatorAction,
    Projection,
    RefundRecord,
    RefundState,
    Resolution,
    Verification,
)
from reconciler.audit.period import Period, jakarta
from reconciler.audit.writer import write_audit

__all__ = [
    "AuditReport",
    "DayBalance",
    "EscalationRecord",
    "Evidence",
    "OperatorAction",
    "Period",
    "Projection",
    "RefundRecord",
    "RefundState",
    "Resolution",
    "Verification",
    "build_audit",
    "jakarta",
    "write_audit",
]
