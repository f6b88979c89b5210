"""The simulators' wall clock, injectable so that windows can be tested at any hour.

Provider windows (the issuer's outage, the PSP's nightly blackout) are stated in Western
Indonesian Time. WIB is UTC+07:00 all year (no daylight saving since 1964), so a fixed
offset stands in for `Asia/Jakarta` without depending on a tz database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

JAKARTA = timezone(timedelta(hours=7), "WIB")

Clock = Callable[[], datetime]
"""Returns the current instant, timezone-aware."""


def system_clock() -> datetime:
    """The machine's wall clock."""
    return datetime.now(tz=UTC)


def shifted_clock(start: datetime) -> Clock:
    """A clock that reads `start` now and then runs at the real pace (monotonic)."""
    if start.tzinfo is None:
        start = start.replace(tzinfo=JAKARTA)
    origin = time.monotonic()

    def now() -> datetime:
        return start + timedelta(seconds=time.monotonic() - origin)

    return now
