"""When people place orders: a morning ramp, the registration rush, an evening tail."""

from __future__ import annotations

import math
from datetime import timedelta
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime
    from random import Random

    from reconciler.demo.config import DemoConfig

RUSH_HOUR = 10.5
"""The rush came mid-morning, when applicants sat down to upload their signed letters."""


def demand(hour: float) -> float:
    """Relative order rate at this hour of the day (0-24), in arbitrary units."""
    morning = 1.0 / (1.0 + math.exp(-(hour - 8.0) / 0.5))
    evening_fade = 1.0 - 0.7 * _smoothstep((hour - 17.0) / 5.0)
    rush = 4.0 * math.exp(-0.5 * ((hour - RUSH_HOUR) / 0.6) ** 2)
    after_work = 0.6 * math.exp(-0.5 * (hour - 20.0) ** 2)
    return morning * evening_fade + rush + after_work


def order_times(config: DemoConfig, rng: Random) -> list[datetime]:
    """`config.orders` placement times between opening and closing, in time order."""
    opening = config.opening
    minutes = int((config.closing - opening).total_seconds() // 60)
    first_hour = opening.hour + opening.minute / 60
    weights = accumulate(demand(first_hour + (minute + 0.5) / 60) for minute in range(minutes))
    picked = rng.choices(range(minutes), cum_weights=list(weights), k=config.orders)
    offsets_ms = sorted(minute * 60_000 + rng.randrange(60_000) for minute in picked)
    return [opening + timedelta(milliseconds=offset) for offset in offsets_ms]


def _smoothstep(x: float) -> float:
    clamped = min(1.0, max(0.0, x))
    return clamped * clamped * (3.0 - 2.0 * clamped)
