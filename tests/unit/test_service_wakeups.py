"""When the service's threads wake: the relay on new decisions, the ticker on the second."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

from reconciler.service.app import _relay_forever
from reconciler.service.metrics import ServiceMetrics
from reconciler.service.ticker import Ticker

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from reconciler.service.relay import Relay


class _CountingRelay:
    """A relay that finds nothing to send, and stops the service at its second round."""

    def __init__(self, stop: threading.Event, wake: threading.Event) -> None:
        self.rounds = 0
        self.closed = False
        self._stop = stop
        self._wake = wake

    def relay_once(self) -> int:
        self.rounds += 1
        if self.rounds == 2:  # stopping as Service.run does: stop, then wake the relay
            self._stop.set()
            self._wake.set()
        return 0

    def close(self) -> None:
        self.closed = True


class _Follower:
    """A leader lock never held: the ticker produces nothing and only waits."""

    def try_acquire(self) -> bool:
        return False

    def release(self) -> None:
        """Nothing held."""


class _RecordedWaits(threading.Event):
    """A stop event that records how long each wait was asked to last, and ends the run."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.set()
        return True


def test_relay_sends_new_decisions_without_waiting_out_its_interval() -> None:
    """A set wake event ends the relay's idle wait at once, even with an hour's interval."""
    stop, wake = threading.Event(), threading.Event()
    relay = _CountingRelay(stop, wake)
    wake.set()  # as the ingest loop does after committing decisions
    thread = threading.Thread(
        target=_relay_forever, args=(cast("Relay", relay), stop, wake, 3600.0), daemon=True
    )
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert relay.rounds == 2
    assert relay.closed


def test_ticker_waits_until_the_next_whole_second_not_a_full_second() -> None:
    """Ticking at 0.75 s past a second, the ticker waits 0.25 s, so ticks do not drift."""
    moment = datetime(2024, 9, 2, 9, 0, 0, 750_000, tzinfo=UTC)
    ticker = Ticker(
        cast("KafkaProducer", object()),
        ["facts"],
        _Follower(),
        ServiceMetrics(),
        interval=timedelta(seconds=1),
        now=lambda: moment,
    )
    stop = _RecordedWaits()
    ticker.run(stop)
    assert stop.timeouts == [0.25]
