"""The errors the Kafka helpers raise themselves (kafka-python's own pass through)."""

from __future__ import annotations


class KafkaIoError(RuntimeError):
    """A Kafka helper could not do what it was asked."""


class TopicMismatchError(KafkaIoError):
    """A topic exists with another partition count than the one asked for."""


class TopicNotReadyError(KafkaIoError):
    """A topic's partitions did not all appear, with leaders, in time."""


class ProduceError(KafkaIoError):
    """At least one record was not acknowledged by the broker."""
