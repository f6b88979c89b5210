"""The composition root: settings in, a wired service out. Nothing connects at import."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING

from reconciler.engine import Engine
from reconciler.kafka_io import consumer_config, create_topics
from reconciler.kafka_io._kafka import KafkaConsumer, KafkaProducer
from reconciler.service.app import Service
from reconciler.service.ingest import IngestLoop
from reconciler.service.leader import AlwaysLeader, LeaderLock, PostgresLeaderLock
from reconciler.service.metrics import ServiceMetrics
from reconciler.service.relay import Relay, RelayTopics
from reconciler.service.ticker import Ticker
from reconciler.store import open_store

if TYPE_CHECKING:
    from reconciler.domain.rules import Rules
    from reconciler.service.settings import ServiceSettings


def service_topics(settings: ServiceSettings) -> dict[str, int]:
    """The topics the service needs, with their partition counts, as it creates them."""
    partitions = settings.input_partitions
    return dict.fromkeys(settings.input_topics, partitions) | {
        settings.commands_topic: partitions,
        settings.dead_letter_topic: 1,
    }


def build_service(
    settings: ServiceSettings, rules: Rules, metrics: ServiceMetrics | None = None
) -> Service:
    """Open the store, make sure the topics exist, and wire the loop, ticker and relay."""
    metrics = metrics if metrics is not None else ServiceMetrics()
    store = open_store(settings.store_url, schema=settings.store_schema)
    create_topics(settings.kafka_bootstrap, service_topics(settings))
    consumer = KafkaConsumer(
        **consumer_config(settings.kafka_bootstrap, settings.group_id)
        | {"session_timeout_ms": settings.session_timeout_ms}
    )
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        linger_ms=5,
        # One request in flight keeps each partition's order, which the relay relies on.
        max_in_flight_requests_per_connection=1,
    )
    # Set by the ingest loop when a batch committed decisions: the relay sends them at once.
    decided = threading.Event()
    ingest = IngestLoop(
        Engine(rules, store, cold_after=settings.state_cold_after or None),
        store,
        consumer,
        metrics,
        max_records=settings.batch_max_records,
        poll_timeout_ms=settings.poll_timeout_ms,
        retry_max_s=settings.retry_max_s,
        on_decided=decided.set,
    )
    ticker = None
    if settings.ticker:
        ticker = Ticker(
            producer,
            settings.input_topics,
            _leader_lock(settings, "ticker"),
            metrics,
            interval=timedelta(seconds=settings.tick_interval_s),
        )
    relay = None
    if settings.relay:
        topics = RelayTopics(
            settings.kafka_bootstrap, settings.commands_topic, settings.dead_letter_topic
        )
        relay = Relay(store, producer, topics, _leader_lock(settings, "relay"), metrics)
    return Service(
        settings, store, consumer, producer, ingest, metrics, ticker, relay, relay_wake=decided
    )


def _leader_lock(settings: ServiceSettings, role: str) -> LeaderLock:
    """An advisory lock per role and schema on PostgreSQL; SQLite means one process."""
    if settings.store_url.startswith("sqlite"):
        return AlwaysLeader()
    return PostgresLeaderLock(settings.store_url, f"reconciler/{settings.store_schema}/{role}")
