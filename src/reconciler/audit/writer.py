"""Writing an audit report: `report.html` and the CSV files beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.audit.exports import write_exports
from reconciler.audit.render import HTML_EVIDENCE_CHAINS, HTML_REFUND_ROWS, render_html

if TYPE_CHECKING:
    from pathlib import Path

    from reconciler.audit.model import AuditReport


def write_audit(
    report: AuditReport,
    out_dir: Path,
    *,
    html_refund_rows: int = HTML_REFUND_ROWS,
    html_evidence_chains: int = HTML_EVIDENCE_CHAINS,
) -> list[Path]:
    """Write `report.html` and every CSV into `out_dir` (created if missing); return the paths.

    The HTML lists at most `html_refund_rows` refunds and shows the chain of evidence of
    at most `html_evidence_chains`, those that did not simply end paid first, so that it
    opens in seconds; its totals count every refund, and the CSVs hold every row.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    html = out_dir / "report.html"
    page = render_html(report, refund_rows=html_refund_rows, evidence_chains=html_evidence_chains)
    html.write_text(page, encoding="utf-8")
    return [html, *write_exports(report, out_dir)]
