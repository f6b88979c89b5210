"""The period audited: whole calendar days, inclusive, read in one time zone.

A day is midnight to midnight in the zone, so `utc_start` is the first day's midnight and
`utc_end` the midnight after the last day (excluded). The read models total money by UTC
hour, so the zone's offset must be whole hours at both ends (WIB, WITA and WIT are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


def jakarta() -> ZoneInfo:
    """Western Indonesia Time (WIB, UTC+7), the zone the CASN portal kept its books in."""
    return ZoneInfo("Asia/Jakarta")


@dataclass(frozen=True, slots=True)
class Period:
    """Calendar days `start` to `end` (both included) in `zone`."""

    start: date
    end: date
    zone: tzinfo = field(default_factory=jakarta)

    def __post_init__(self) -> None:
        """Refuse an empty period and a zone whose offset is not whole hours."""
        if self.end < self.start:
            msg = f"the period ends ({self.end}) before it starts ({self.start})"
            raise ValueError(msg)
        for bound in (self.local_start, self.local_end):
            offset = bound.utcoffset()
            if offset is None or offset % _HOUR:
                msg = f"days need a time zone whose offset is whole hours; {self.zone} is {offset}"
                raise ValueError(msg)

    @property
    def local_start(self) -> datetime:
        """Midnight starting the first day, in the zone."""
        return datetime.combine(self.start, time(), tzinfo=self.zone)

    @property
    def local_end(self) -> datetime:
        """Midnight after the last day, in the zone (not part of the period)."""
        return datetime.combine(self.end + _DAY, time(), tzinfo=self.zone)

    @property
    def utc_start(self) -> datetime:
        """The first instant of the period, in UTC."""
        return self.local_start.astimezone(UTC)

    @property
    def utc_end(self) -> datetime:
        """The first instant after the period, in UTC."""
        return self.local_end.astimezone(UTC)

    def days(self) -> list[date]:
        """Every day of the period, in order."""
        count = (self.end - self.start).days + 1
        return [self.start + timedelta(days=n) for n in range(count)]

    def day_of(self, moment: datetime) -> date:
        """The calendar day an aware instant falls on, in the zone."""
        return moment.astimezone(self.zone).date()

    def contains(self, moment: datetime) -> bool:
        """Whether an aware instant falls inside the period."""
        return self.utc_start <= moment < self.utc_end

    def before(self, moment: datetime) -> bool:
        """Whether an aware instant falls before the period starts."""
        return moment < self.utc_start

    @property
    def zone_name(self) -> str:
        """The zone as people name it: `Asia/Jakarta`, or its abbreviation on the first day."""
        key = getattr(self.zone, "key", None)
        return key if isinstance(key, str) else (self.zone.tzname(self.local_start) or "UTC")

    def label(self) -> str:
        """`2024-09-04` for one day, `2024-09-04 to 2024-09-05` for several, with the zone."""
        days = str(self.start) if self.start == self.end else f"{self.start} to {self.end}"
        return f"{days} ({self.zone_name})"
