"""The running service: the ingest loop in front, the ticker and relay beside it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from prometheus_client import start_http_server

if TYPE_CHECKING:
    from collections.abc import Callable

    from kafka import KafkaConsumer, KafkaProducer

    from reconciler.service.ingest import IngestLoop
    from reconciler.service.metrics import ServiceMetrics
    from reconciler.service.relay import Relay
    from reconciler.service.settings import ServiceSettings
    from reconciler.service.ticker import Ticker
    from reconciler.store import LogStore

log = structlog.get_logger("reconciler.service")


@dataclass
class Service:
    """Everything `serve` runs, wired by `bootstrap.build_service`."""

    settings: ServiceSettings
    store: LogStore
    consumer: KafkaConsumer
    producer: KafkaProducer
    ingest: IngestLoop
    metrics: ServiceMetrics
    ticker: Ticker | None
    relay: Relay | None
    # Set when the log holds new decisions: the relay waits on it between empty rounds.
    relay_wake: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set, then close every connection."""
        settings = self.settings
        if settings.metrics_port:
            start_http_server(
                settings.metrics_port, addr=settings.metrics_host, registry=self.metrics.registry
            )
        if (ticker := self.ticker) is not None:
            self._start("ticker", lambda: ticker.run(stop))
        if self.relay is not None:
            relay = self.relay
            wake, interval_s = self.relay_wake, settings.relay_interval_s
            self._start("relay", lambda: _relay_forever(relay, stop, wake, interval_s))
        log.info("service_started", topics=settings.input_topics, group=settings.group_id)
        try:
            self.ingest.run(settings.input_topics, stop)
        finally:
            stop.set()
            self.relay_wake.set()  # the relay need not wait out its interval to stop
            for thread in self._threads:
                thread.join(timeout=10)
            self.consumer.close()
            self.ingest.close()  # after the consumer, whose close may still revoke partitions
            self.producer.close(timeout=10)
            self.store.close()
            log.info("service_stopped")

    def _start(self, name: str, target: Callable[[], object]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def _relay_forever(
    relay: Relay, stop: threading.Event, wake: threading.Event, interval_s: float
) -> None:
    """Relay until stopped; keep going while there is work, else wait for `wake` or the interval.

    The interval still bounds the wait: another process's decisions (this one may lead
    the relay while another ingests) set no event here.
    """
    while not stop.is_set():
        try:
            sent = relay.relay_once()
        except Exception:
            log.exception("relay_failed")
            sent = 0
        if not sent:
            wake.wait(interval_s)
            wake.clear()
    relay.close()
