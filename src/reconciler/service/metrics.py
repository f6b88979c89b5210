"""The service's Prometheus metrics, on a registry of their own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    """Counters and gauges for ingest, decisions, dead letters, batches, lag and the relay."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """Register every metric on `registry` (a fresh one if none is given)."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.records_in = Counter(
            "reconciler_records_in", "Input records received, by topic.", ["topic"], registry=r
        )
        self.facts_appended = Counter(
            "reconciler_facts_appended", "Facts appended to the log (new event_ids).", registry=r
        )
        self.duplicates = Counter(
            "reconciler_duplicate_facts", "Records dropped: their event_id was logged.", registry=r
        )
        self.decisions = Counter(
            "reconciler_decisions", "Decisions taken, by type.", ["type"], registry=r
        )
        self.dead_letters = Counter(
            "reconciler_dead_letters", "Records rejected to the dead letters.", registry=r
        )
        self.batch_seconds = Histogram(
            "reconciler_batch_seconds",
            "Time to log and decide one batch, transaction included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.consumer_lag = Gauge(
            "reconciler_consumer_lag",
            "Records in a partition not yet logged.",
            ["topic", "partition"],
            registry=r,
        )
        self.store_errors = Counter(
            "reconciler_store_errors",
            "Batches that failed on the store and were retried.",
            registry=r,
        )
        self.kafka_errors = Counter(
            "reconciler_kafka_errors",
            "Polls that failed because the broker could not be reached, and were retried.",
            registry=r,
        )
        self.commands_published = Counter(
            "reconciler_commands_published",
            "Commands the relay published, by type.",
            ["type"],
            registry=r,
        )
        self.refund_flood_incidents = Counter(
            "reconciler_refund_flood_incidents",
            "Refund-flood incidents opened: refunds past the limit are being held.",
            registry=r,
        )
        self.refunds_held = Gauge(
            "reconciler_refunds_held", "Refunds held by the flood guard now.", registry=r
        )
        self.refunds_held_rupiah = Gauge(
            "reconciler_refunds_held_rupiah",
            "Money in refunds held by the flood guard now, in rupiah.",
            registry=r,
        )
        self.ticks_produced = Counter(
            "reconciler_ticks_produced", "ClockTicked facts the ticker produced.", registry=r
        )
