"""The report's CSV files, every row, and its verification as JSON.

Money is whole rupiah as integers; times are ISO 8601 in the period's zone, with the
offset. A text cell that a spreadsheet would read as a formula (it starts with `=`, `+`,
`-`, `@`, a tab or a carriage return) gets a leading `'`, so that an operator's note can
never run in the auditor's spreadsheet; integer cells are written as they are.
"""

from __future__ import annotations

import csv
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from datetime import datetime, tzinfo
    from pathlib import Path

    from reconciler.audit.model import AuditReport, Evidence, RefundRecord
    from reconciler.domain.accounting import Money

Cell = str | int | bool | None
FIGURES = ("debited", "kept", "refunded", "refund_pending", "at_risk")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_exports(report: AuditReport, out_dir: Path) -> list[Path]:
    """Write every CSV file and `verification.json` into `out_dir`; return their paths."""
    zone = report.period.zone
    tables: dict[str, tuple[Sequence[str], Iterable[Sequence[Cell]]]] = {
        "conservation_by_day.csv": _days(report),
        "totals.csv": _totals(report),
        "refunds.csv": _refunds(report, zone),
        "refund_evidence.csv": _evidence(report, zone),
        "escalations.csv": _escalations(report, zone),
        "differences.csv": _differences(report),
    }
    paths = []
    for name, (header, rows) in tables.items():
        path = out_dir / name
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows([_cell(value) for value in row] for row in rows)
        paths.append(path)
    path = out_dir / "verification.json"
    path.write_text(json.dumps(verification_document(report), indent=1) + "\n", encoding="utf-8")
    paths.append(path)
    return paths


def verification_document(report: AuditReport) -> dict[str, object]:
    """The verdict, the chain check, the replay's comparison, the rules and the totals."""
    verification, chain, period = report.verification, report.verification.chain, report.period
    return {
        "verdict": report.verdict,
        "failures": report.failures(),
        "notes": report.notes(),
        "period": {
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
            "zone": period.zone_name,
            "utc_start": period.utc_start.isoformat(),
            "utc_end": period.utc_end.isoformat(),
        },
        "log": verification.log,
        "as_of": verification.as_of,
        "generated_at": verification.generated_at.isoformat(),
        "chain": {
            "ok": chain.ok,
            "records_checked": chain.records_checked,
            "head_hash": chain.head_hash.hex(),
            "first_bad_position": chain.first_bad_position,
            "fault": None if chain.fault is None else str(chain.fault),
            "detail": chain.detail,
        },
        "replay": {
            "records_replayed": verification.records_replayed,
            "decisions_recorded": verification.decisions_recorded,
            "decisions_rederived": verification.decisions_rederived,
            "differences": len(verification.differences),
        },
        "rules": {name: _json_value(value) for name, value in verification.rules.items()},
        "read_models": {
            "position": report.projection.position,
            "log_position": report.projection.log_position,
            "clock": None
            if report.projection.clock is None
            else report.projection.clock.isoformat(),
        },
        "totals": {
            "opening": _figures(report.opening),
            "movement": _figures(report.movement),
            "closing": _figures(report.closing),
        },
        "dead_letters": report.dead_letters,
        "unmatched_payouts": {
            "count": report.unmatched_payouts[0],
            "amount": report.unmatched_payouts[1],
        },
        "orders_placed": report.orders_placed,
        "orders_by_status": report.orders_by_status,
        "refunds": len(report.refunds),
        "refunds_by_state": {
            str(state): {"count": count, "amount": amount, "refunded": refunded}
            for state, (count, amount, refunded) in report.refunds_by_state().items()
        },
        "escalations": len(report.escalations),
        "escalations_open": report.open_escalations,
    }


def _days(report: AuditReport) -> tuple[list[str], list[list[Cell]]]:
    header = ["day", "recorded", "balanced"] + [
        f"{part}_{figure}" for part in ("opening", "movement", "closing") for figure in FIGURES
    ]
    rows: list[list[Cell]] = [
        [
            day.day.isoformat(),
            day.recorded,
            day.balanced,
            *_money(day.opening),
            *_money(day.movement),
            *_money(day.closing),
        ]
        for day in report.days
    ]
    return header, rows


def _totals(report: AuditReport) -> tuple[list[str], list[list[Cell]]]:
    parts = (_figures(report.opening), _figures(report.movement), _figures(report.closing))
    rows: list[list[Cell]] = [[figure, *(part[figure] for part in parts)] for figure in FIGURES]
    return ["figure", "opening", "movement", "closing"], rows


def _refunds(report: AuditReport, zone: tzinfo) -> tuple[list[str], Iterable[list[Cell]]]:
    header = [
        "refund_id", "source", "order_id", "payment_id", "reason", "amount", "attempts",
        "state", "refunded", "pending", "first_at", "first_position", "carried_in",
        "settled_at", "psp_refund_refs", "escalation_ids", "order_event_ids",
        "debit_event_ids", "decision_ids", "result_event_ids", "evidence_positions",
    ]  # fmt: skip
    return header, (_refund_row(refund, zone) for refund in report.refunds)


def _refund_row(refund: RefundRecord, zone: tzinfo) -> list[Cell]:
    def ids(*steps: str) -> str:
        return " ".join(item.record_id for item in refund.evidence if item.step in steps)

    return [
        refund.refund_id,
        refund.source,
        refund.order_id,
        refund.payment_id,
        refund.reason,
        refund.amount,
        refund.attempts,
        str(refund.state),
        refund.refunded,
        refund.pending,
        _time(refund.first_at, zone),
        refund.first_position,
        refund.carried_in,
        _time(refund.settled_at, zone),
        " ".join(refund.psp_refs),
        " ".join(refund.escalations),
        ids("order"),
        ids("debit"),
        ids("detected", "held", "commanded", "retried", "withdrawn", "escalated", "resolved"),
        ids("result"),
        " ".join(str(item.position) for item in refund.evidence),
    ]


def _evidence(report: AuditReport, zone: tzinfo) -> tuple[list[str], Iterable[list[Cell]]]:
    header = ["refund_id", "step", "kind", "type", "id", "position", "source", "at", "detail"]
    rows = (
        [refund.refund_id, *_evidence_cells(item, zone)]
        for refund in report.refunds
        for item in refund.evidence
    )
    return header, rows


def _evidence_cells(item: Evidence, zone: tzinfo) -> list[Cell]:
    return [
        item.step,
        item.kind,
        item.type,
        item.record_id,
        item.position,
        item.source,
        _time(item.at, zone),
        item.detail,
    ]


def _escalations(report: AuditReport, zone: tzinfo) -> tuple[list[str], list[list[Cell]]]:
    header = [
        "escalation_id", "source", "reason", "subject", "order_id", "amount", "opened_at",
        "opened_position", "carried_in", "state", "resolved_at", "resolution_id",
        "resolution_position", "outcome", "operator", "note", "reference",
        "operator_actions", "accepted_action_event_id", "accepted_action_position",
    ]  # fmt: skip
    rows: list[list[Cell]] = []
    for case in report.escalations:
        done = case.resolution
        accepted = [action for action in case.actions if action.accepted]
        rows.append(
            [
                case.escalation_id,
                case.source,
                case.reason,
                case.subject,
                case.order_id,
                case.amount,
                _time(case.opened_at, zone),
                case.opened_position,
                case.carried_in,
                "open" if done is None else "resolved",
                None if done is None else _time(done.at, zone),
                None if done is None else done.decision_id,
                None if done is None else done.position,
                None if done is None else done.outcome,
                None if done is None else done.operator,
                None if done is None else done.note,
                case.reference,
                len(case.actions),
                accepted[-1].event_id if accepted else None,
                accepted[-1].position if accepted else None,
            ]
        )
    return header, rows


def _differences(report: AuditReport) -> tuple[list[str], list[list[Cell]]]:
    header = ["kind", "decision_id", "type", "source", "recorded_position", "recorded", "rederived"]
    rows: list[list[Cell]] = [
        [
            str(difference.kind),
            difference.decision_id,
            difference.type,
            difference.source,
            difference.recorded_position,
            _text(difference.recorded),
            _text(difference.rederived),
        ]
        for difference in report.verification.differences
    ]
    return header, rows


def _money(money: Money) -> list[Cell]:
    return [getattr(money, figure) for figure in FIGURES]


def _figures(money: Money) -> dict[str, int]:
    return {figure: getattr(money, figure) for figure in FIGURES}


def _time(moment: datetime | None, zone: tzinfo) -> str | None:
    return None if moment is None else moment.astimezone(zone).isoformat()


def _text(payload: bytes | None) -> str | None:
    return None if payload is None else payload.decode("utf-8", errors="replace")


def _cell(value: Cell) -> Cell:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _json_value(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    return str(value)
