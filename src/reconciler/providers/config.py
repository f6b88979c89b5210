"""Simulator settings: pydantic models, filled from the command line or by tests."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reconciler.providers.clock import JAKARTA

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
MINUTES_PER_DAY = 24 * 60
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> time:
    """`HH:MM` (24-hour) as a time of day; ValueError otherwise."""
    match = _HHMM.match(text.strip())
    if match is None:
        msg = f"expected HH:MM (00:00-23:59), got {text!r}"
        raise ValueError(msg)
    return time(int(match.group(1)), int(match.group(2)))


class DailyWindow(BaseModel):
    """A window that recurs every day in Jakarta time; it may run past midnight."""

    model_config = ConfigDict(frozen=True)

    start: time
    minutes: Annotated[int, Field(ge=1, le=MINUTES_PER_DAY)]

    @classmethod
    def parse(cls, text: str) -> DailyWindow:
        """`HH:MM-HH:MM`, e.g. `23:00-00:30` (the end is exclusive; it may wrap midnight)."""
        start_text, sep, end_text = text.partition("-")
        if not sep:
            msg = f"expected HH:MM-HH:MM, got {text!r}"
            raise ValueError(msg)
        start, end = parse_hhmm(start_text), parse_hhmm(end_text)
        minutes = (_minute_of_day(end) - _minute_of_day(start)) % MINUTES_PER_DAY
        return cls(start=start, minutes=minutes or MINUTES_PER_DAY)

    @classmethod
    def parse_start(cls, start: str, minutes: int) -> DailyWindow:
        """A window opening at `HH:MM` for `minutes` minutes."""
        return cls(start=parse_hhmm(start), minutes=minutes)

    def _offset(self, at: datetime) -> timedelta:
        local = at.astimezone(JAKARTA)
        opened = local.replace(
            hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0
        )
        return (local - opened) % timedelta(days=1)

    def contains(self, at: datetime) -> bool:
        """Whether the instant `at` falls inside the window."""
        return self._offset(at) < timedelta(minutes=self.minutes)

    def seconds_left(self, at: datetime) -> float:
        """Seconds from `at` until the window closes (0 when `at` is outside it)."""
        left = timedelta(minutes=self.minutes) - self._offset(at)
        return max(left.total_seconds(), 0.0)

    def __str__(self) -> str:
        """The window as `HH:MM-HH:MM`."""
        end = (_minute_of_day(self.start) + self.minutes) % MINUTES_PER_DAY
        return f"{self.start:%H:%M}-{end // 60:02d}:{end % 60:02d}"


def _minute_of_day(at: time) -> int:
    return at.hour * 60 + at.minute


class CommonFaults(BaseModel):
    """Faults both providers show: 5xx bursts and slow answers, drawn from the seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    error_rate: Rate = 0.0
    """Share of requests (or of time buckets, see `burst_seconds`) answered 503."""
    burst_seconds: Annotated[float, Field(ge=0.0)] = 0.0
    """0: each (key, attempt) draws alone. >0: time is cut into buckets this long and a
    whole bucket fails at `error_rate`, so every request in it gets 503 (a burst)."""
    slow_rate: Rate = 0.0
    """Share of answers held back `slow_seconds` before they are sent."""
    slow_seconds: Annotated[float, Field(ge=0.0)] = 2.0


class IssuerConfig(CommonFaults):
    """The stamp issuer: outage window, rejections, partial deliveries."""

    outage: DailyWindow | None = None
    """Every request is answered 503 ISSUER_UNAVAILABLE inside this daily window."""
    partial_rate: Rate = 0.0
    """Share of new issues (quantity ≥ 2) that deliver fewer stamps (at least one)."""
    reject_rate: Rate = 0.0
    """Share of new issues refused for good: 422 ORDER_NOT_ELIGIBLE, retryable false."""
    quota_rate: Rate = 0.0
    """Share of new issues refused with 422 QUOTA_EXCEEDED, retryable true."""

    @model_validator(mode="after")
    def _refusals_fit(self) -> Self:
        if self.reject_rate + self.quota_rate > 1.0:
            msg = "reject_rate + quota_rate must not exceed 1"
            raise ValueError(msg)
        return self


DEFAULT_BLACKOUT = DailyWindow(start=time(23, 0), minutes=90)


class PspConfig(CommonFaults):
    """The payment provider: unsupported payer banks, nightly blackout, lost answers."""

    not_supported_rate: Rate = 0.03
    """Share of payment ids whose payer bank refuses QRIS refunds (by hash of the id)."""
    blackout: DailyWindow | None = DEFAULT_BLACKOUT
    """Nightly refund blackout (Jakarta time): 503 REFUND_BLACKOUT with Retry-After."""
    drop_after_pay_rate: Rate = 0.0
    """Share of new refunds paid out and then answered 502, as if the connection dropped."""
    refundable_cap: Annotated[int, Field(gt=0)] | None = None
    """Most a single payment id may have refunded in total; None: no cap."""
