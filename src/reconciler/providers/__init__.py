"""Provider simulators as real HTTP servers: the stamp issuer and the payment provider (PSP).

They misbehave the way Indonesian providers did during the 2024 CASN peak: outage windows,
bursts of 5xx, slow answers, partial deliveries, payer banks that refuse QRIS refunds, a
nightly refund blackout, and answers lost after the money moved. Every answer is keyed by
the `Idempotency-Key` header, so the remediation jobs can prove that retries are safe.

State lives in memory unless `--state FILE` names a journal (see `journal.py`).
"""

from reconciler.providers.config import DailyWindow, IssuerConfig, PspConfig
from reconciler.providers.issuer import create_issuer_app
from reconciler.providers.psp import create_psp_app

__all__ = ["DailyWindow", "IssuerConfig", "PspConfig", "create_issuer_app", "create_psp_app"]
