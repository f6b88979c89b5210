"""The clock: one ClockTicked per input partition per interval, from the wall clock.

Time must be a fact in every partition's own sequence, so that each partition's
decisions follow from its log alone: the ticker produces a tick into every partition
of every input topic. One process ticks at a time (a leader lock); a tick's event_id
names its topic, partition and second, so two tickers during a hand-over produce the
same ids and the log keeps one of each.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from reconciler.domain.events import ClockTicked

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Sequence

    from kafka import KafkaProducer

    from reconciler.service.leader import LeaderLock
    from reconciler.service.metrics import ServiceMetrics

log = structlog.get_logger("reconciler.ticker")


def tick_for(topic: str, partition: int, at: datetime) -> ClockTicked:
    """The tick for one partition at one moment; the same inputs give the same event."""
    return ClockTicked(
        event_id=f"tick/{topic}/{partition}/{at.isoformat()}",
        version=1,
        occurred_at=at,
        at=at,
    )


def floor_to(moment: datetime, interval: timedelta) -> datetime:
    """The moment rounded down to a whole interval since the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    steps = (moment - epoch) // interval
    return epoch + steps * interval


class Ticker:
    """Produces ticks while it holds the leader lock; stops when told."""

    def __init__(  # noqa: PLR0913 - the collaborators, each needed
        self,
        producer: KafkaProducer,
        topics: Sequence[str],
        lock: LeaderLock,
        metrics: ServiceMetrics,
        *,
        interval: timedelta = timedelta(seconds=1),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Tick `topics` every `interval`, reading time from `now`."""
        self._producer = producer
        self._topics = list(topics)
        self._lock = lock
        self._metrics = metrics
        self._interval = interval
        self._now = now

    def tick_once(self) -> int:
        """Produce this interval's tick into every partition, if leading; how many."""
        if not self._lock.try_acquire():
            return 0
        at = floor_to(self._now(), self._interval)
        produced = 0
        for topic in self._topics:
            for partition in sorted(self._producer.partitions_for(topic) or ()):
                tick = tick_for(topic, partition, at)
                self._producer.send(
                    topic, value=tick.model_dump_json().encode(), partition=partition
                )
                produced += 1
        self._producer.flush()
        self._metrics.ticks_produced.inc(produced)
        return produced

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; a failed tick is logged and tried next interval."""
        while not stop.is_set():
            try:
                self.tick_once()
            except Exception:
                log.exception("tick_failed")
            # To the next whole interval, not a full interval after this tick's work:
            # waiting the full interval drifts, and now and then skips a second.
            upcoming = floor_to(self._now(), self._interval) + self._interval
            stop.wait(max(0.0, (upcoming - self._now()).total_seconds()))
        self._lock.release()
