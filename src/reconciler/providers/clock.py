"""The simulators' clock, injectable so that windows can be tested at any hour.

Provider windows (the issuer's outage, the PSP's nightly blackout) are stated in Western
Indonesian Time. WIB is UTC+07:00 all year (no daylight saving since 1964), so a fixed
offset stands in for `Asia/Jakarta` without depending on a tz database.

A simulator reads the machine's wall clock, the wall clock shifted to a chosen start, or,
for a caller that runs in simulated time (`reconciler demo`), the time each request
states in its `X-Simulated-Time` header (`RequestClock`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
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


SIMULATED_TIME_HEADER = "X-Simulated-Time"


class RequestClock:
    """Now is what the request being answered says, in its `X-Simulated-Time` header.

    `read` takes the header of a request before the simulator decides its answer; each
    request is answered in its own context, so concurrent requests keep their own times.
    """

    def __init__(self) -> None:
        """A clock that reads nothing until a request's header is read."""
        self._now: ContextVar[datetime | None] = ContextVar("simulated_now", default=None)

    def read(self, value: str | None) -> str | None:
        """Take the header's value as now; the problem with it, or None if it is usable.

        The value must be an ISO 8601 time with a UTC offset.
        """
        if value is None or not value.strip():
            return f"{SIMULATED_TIME_HEADER} is required (the simulator runs on --clock request)"
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return f"{SIMULATED_TIME_HEADER} is not an ISO 8601 time: {value[:64]!r}"
        if moment.utcoffset() is None:
            return f"{SIMULATED_TIME_HEADER} has no UTC offset: {value[:64]!r}"
        self._now.set(moment)
        return None

    def __call__(self) -> datetime:
        """The time the current request stated; LookupError outside a request."""
        moment = self._now.get()
        if moment is None:
            msg = f"no {SIMULATED_TIME_HEADER} has been read in this request"
            raise LookupError(msg)
        return moment
