"""The rule settings SPEC names, with its defaults. Pure data: loading lives in config.py."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field


class Rules(BaseModel):
    """Deadlines and limits the decider applies; every one is configurable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issue_sla: timedelta = timedelta(seconds=300)
    issue_attempt_timeout: timedelta = timedelta(seconds=120)
    max_issue_attempts: int = Field(default=3, ge=1)
    orphan_window: timedelta = timedelta(seconds=1800)
    payment_grace: timedelta = timedelta(seconds=1800)
    refund_retry_interval: timedelta = timedelta(seconds=600)
    max_refund_attempts: int = Field(default=5, ge=1)
    # Stamps delivered for an order never placed have no price of their own; the
    # money not collected on them is reckoned at the standard e-meterai price.
    default_unit_price: int = Field(default=10_000, gt=0)
    default_unit_fee: int = Field(default=2_500, ge=0)
    # The refund-flood guard (not in SPEC): once this many new refunds were commanded
    # within `refund_flood_window` of engine time, further refunds are held under one
    # incident until an operator approves or the issuer recovers. It counts per decider
    # state (per input partition in the service). None, the default, turns it off: SPEC's
    # offline contract commands every refund at once.
    refund_flood_limit: int | None = Field(default=None, ge=1)
    refund_flood_window: timedelta = timedelta(seconds=600)
