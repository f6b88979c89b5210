"""Creating topics idempotently, and waiting until their partitions can be used."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from reconciler.kafka_io._kafka import KafkaAdminClient, TopicAlreadyExistsError, for_code
from reconciler.kafka_io.errors import KafkaIoError, TopicMismatchError, TopicNotReadyError

if TYPE_CHECKING:
    from collections.abc import Mapping

READY_TIMEOUT_S = 15.0
_POLL_INTERVAL_S = 0.05


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = -1,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> None:
    """Make sure each topic exists with its partition count, and wait until all are usable.

    Idempotent: a topic that already exists with the asked partition count is fine,
    also when another process creates it at the same moment. A topic that exists
    with a different count raises `TopicMismatchError`, because keyed routing
    (`partition_for`) depends on the count. `replication_factor=-1` takes the broker's
    default. Returns once metadata shows every partition of every topic with a leader.
    """
    if not topics:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        existing = _partition_counts(admin, list(topics))
        for name, count in existing.items():
            if count != topics[name]:
                message = f"topic {name!r} has {count} partitions, not {topics[name]}"
                raise TopicMismatchError(message)
        missing = {name: n for name, n in topics.items() if name not in existing}
        if missing:
            _create(admin, missing, replication_factor)
        _wait_until_ready(admin, topics, ready_timeout_s)
    finally:
        admin.close()


def _create(admin: Any, topics: Mapping[str, int], replication_factor: int) -> None:  # noqa: ANN401 - kafka-python is untyped
    request = {
        name: {"num_partitions": partitions, "replication_factor": replication_factor}
        for name, partitions in topics.items()
    }
    response = admin.create_topics(request, raise_errors=False)
    for result in response["topics"]:
        error = for_code(result["error_code"])
        if result["error_code"] != 0 and error is not TopicAlreadyExistsError:
            message = f"could not create topic {result['name']!r}: {error.__name__}"
            raise KafkaIoError(message)


def _partition_counts(admin: Any, names: list[str]) -> dict[str, int]:  # noqa: ANN401 - kafka-python is untyped
    """Each named topic that exists, with the number of partitions metadata shows for it."""
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        if topic["error_code"] == 0:
            counts[topic["name"]] = len(topic["partitions"] or [])
    return counts


def _ready(admin: Any, topics: Mapping[str, int]) -> bool:  # noqa: ANN401 - kafka-python is untyped
    """Whether metadata shows each topic with its partitions 0..n-1, each with a leader."""
    described = {topic["name"]: topic for topic in admin.describe_topics(list(topics))}
    for name, partitions in topics.items():
        topic = described.get(name)
        if topic is None or topic["error_code"] != 0:
            return False
        led = {
            p["partition_index"]
            for p in topic["partitions"] or []
            if p["error_code"] == 0 and p["leader_id"] >= 0
        }
        if len(topic["partitions"] or []) > partitions:
            message = f"topic {name!r} has {len(topic['partitions'])} partitions, not {partitions}"
            raise TopicMismatchError(message)
        if led != set(range(partitions)):
            return False
    return True


def _wait_until_ready(admin: Any, topics: Mapping[str, int], timeout_s: float) -> None:  # noqa: ANN401 - kafka-python is untyped
    deadline = time.monotonic() + timeout_s
    while not _ready(admin, topics):
        if time.monotonic() >= deadline:
            message = f"topics not ready after {timeout_s:g} s: {sorted(topics)}"
            raise TopicNotReadyError(message)
        time.sleep(_POLL_INTERVAL_S)
