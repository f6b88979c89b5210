"""The report as one self-contained HTML page, rendered by Jinja2 with autoescaping on.

Everything the log holds (ids, notes, references, reasons) is text to the page: the
template never marks data safe, and the page's Content-Security-Policy allows no script
and no fetch, so the file shows the same offline, printed or archived.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined

from reconciler.audit.items import MONEY_FIELDS
from reconciler.audit.model import SETTLED
from reconciler.report import rupiah

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime, tzinfo

    from reconciler.audit.model import AuditReport, RefundRecord, Value

HTML_REFUND_ROWS = 5000
"""Refunds listed in the HTML, exceptions first (see `picked`); the CSVs hold every one."""
HTML_EVIDENCE_CHAINS = 200
"""Refunds of those listed whose chain of evidence the HTML shows, exceptions first."""
HTML_DIFFERENCES = 500
"""Decision differences the HTML lists; differences.csv holds every one."""

FIGURE_LABELS = {
    "debited": "Debited",
    "kept": "Delivered (kept)",
    "refunded": "Refunded",
    "refund_pending": "Refund pending",
    "at_risk": "At risk",
}
"""SPEC rule 11's figures, in its order, as the page names them."""

_ENVIRONMENT = Environment(
    loader=PackageLoader("reconciler.audit", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_html(
    report: AuditReport,
    *,
    refund_rows: int = HTML_REFUND_ROWS,
    evidence_chains: int = HTML_EVIDENCE_CHAINS,
) -> str:
    """The page for `report`: at most `refund_rows` refunds, `evidence_chains` of them in full."""
    zone = report.period.zone
    refunds = [report.refunds[index] for index in picked(report.refunds, refund_rows)]
    template = _ENVIRONMENT.get_template("report.html.j2")
    return template.render(
        report=report,
        failures=report.failures(),
        notes=report.notes(),
        refunds=refunds,
        chained=frozenset(picked(refunds, evidence_chains)),
        refunds_left_out=len(report.refunds) - len(refunds),
        differences=report.verification.differences[:HTML_DIFFERENCES],
        settled=SETTLED,
        figures=tuple(FIGURE_LABELS),
        labels=FIGURE_LABELS,
        rupiah=rupiah,
        signed=signed_rupiah,
        local=lambda moment: local_time(moment, zone),
        shown=shown_value,
        share=share,
    )


def picked(refunds: Sequence[RefundRecord], limit: int) -> list[int]:
    """At most `limit` refunds, by index in order: every exception first, then the first others.

    An exception did not end settled, was escalated, or was carried into the period.
    """
    exceptions = [
        index
        for index, refund in enumerate(refunds)
        if refund.state not in SETTLED or refund.escalations or refund.carried_in
    ]
    chosen = exceptions[:limit]
    special = set(exceptions)
    others = (index for index in range(len(refunds)) if index not in special)
    chosen.extend(islice(others, max(0, limit - len(chosen))))
    return sorted(chosen)


def signed_rupiah(amount: int) -> str:
    """A movement: `+Rp 12.500`, `-Rp 2.500`, or `Rp 0`."""
    return ("+" if amount > 0 else "") + rupiah(amount)


def local_time(moment: datetime | None, zone: tzinfo) -> str:
    """`2024-09-04 09:05:00 WIB` in the period's zone; a dash for no time."""
    if moment is None:
        return "\N{EM DASH}"
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or ''}".rstrip()


def shown_value(name: str, value: Value) -> str:
    """A record's field as the page shows it: money in rupiah, flags as yes or no."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name in MONEY_FIELDS and isinstance(value, int):
        return rupiah(value)
    return str(value)


def share(part: int, whole: int) -> float:
    """`part` as a percentage of `whole` (0 when `whole` is not positive), for the day bars."""
    return round(100 * part / whole, 3) if whole > 0 and part > 0 else 0.0
