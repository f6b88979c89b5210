"""Running the service in tests: in a thread of the test process, or as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from reconciler.bootstrap import build_service
from reconciler.domain.decisions import DECISION_MODELS
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.kafka_io import partition_for, produce_all
from reconciler.report import build_report
from reconciler.service.settings import ServiceSettings
from reconciler.store import PostgresLogStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from pathlib import Path

    from reconciler.domain.decisions import AnyDecision
    from reconciler.service.app import Service


def service_settings(
    pg_dsn: str, schema: str, bootstrap: str, topic: str, **overrides: Any
) -> ServiceSettings:
    """Settings for a test service: its own schema, topics and group; no ticker, no /metrics."""
    values: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "input_topics": [topic],
        "commands_topic": topic + ".commands",
        "dead_letter_topic": topic + ".dead",
        "group_id": topic + ".group",
        "store_url": pg_dsn,
        "store_schema": schema,
        "ticker": False,
        "metrics_port": 0,
        "log_json": True,
        "batch_max_records": 500,
        "session_timeout_ms": 6000,
    }
    values.update(overrides)
    return ServiceSettings(**values)


@contextmanager
def service_in_thread(settings: ServiceSettings, rules: Rules | None = None) -> Iterator[Service]:
    """Run the service in a thread; stop it and wait for it on leaving."""
    service = build_service(settings, rules or Rules())
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(timeout=30)


def service_process(
    settings: ServiceSettings, log_path: Path, extra_env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `reconciler serve` as a real process with these settings in its environment.

    `extra_env` is set after the settings: a variable in both takes its value from it.
    """
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        text = (
            json.dumps(value)
            if isinstance(value, list)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        env[f"RECONCILER_{name.upper()}"] = text
    env.update(extra_env or {})
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "reconciler", "serve"], env=env, stdout=log, stderr=log
        )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 0.2 s; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    msg = f"timed out after {timeout} s waiting for {what}"
    raise AssertionError(msg)


def produce_lines(bootstrap: str, topic: str, lines: Iterable[bytes], partitions: int) -> int:
    """Produce JSONL events as producers would: keyed by order (payment when no order).

    A ClockTicked goes to every partition, with the partition in its event_id, since
    every partition keeps its own clock.
    """
    per_partition: list[list[tuple[bytes | None, bytes, list[tuple[str, bytes]] | None]]] = [
        [] for _ in range(partitions)
    ]
    orders_of_payments: dict[str, str] = {}
    for line in lines:
        event = json.loads(line)
        if event.get("type") == "ClockTicked" and partitions > 1:
            for number, target in enumerate(per_partition):
                copy = dict(event, event_id=f"{event['event_id']}/p{number}")
                target.append((None, json.dumps(copy).encode(), None))
            continue
        key = _key_of(event, orders_of_payments)
        partition = partition_for(key, partitions) if key else 0
        per_partition[partition].append((key, line, None))
    total = 0
    for number, records in enumerate(per_partition):
        total += produce_all(bootstrap, topic, records, partition=number)
    return total


def _key_of(event: dict[str, Any], orders_of_payments: dict[str, str]) -> bytes | None:
    """The order id, or the order a payment was for, or the payment id."""
    payment_id = event.get("payment_id")
    order_id = event.get("order_id")
    if order_id and payment_id:
        orders_of_payments.setdefault(payment_id, order_id)
    if not order_id and payment_id:
        order_id = orders_of_payments.get(payment_id)
    key = order_id or payment_id
    return key.encode() if isinstance(key, str) else None


def logged_report(
    pg_dsn: str, schema: str, source: str, rules: Rules | None = None
) -> dict[str, Any]:
    """The report an auditor rebuilds from one source's facts and decisions in the log."""
    store = PostgresLogStore(pg_dsn, schema=schema)
    try:
        engine = Engine(rules or Rules(), store)
        engine.restore(source)
        decisions = logged_decisions(store, source)
        return build_report(engine.state(source), decisions, [])
    finally:
        store.close()


def logged_decisions(store: PostgresLogStore, source: str | None = None) -> list[AnyDecision]:
    """The decisions recorded in the log, in log order."""
    return [
        DECISION_MODELS[record.type].model_validate_json(record.payload)  # type: ignore[misc]
        for record in store.read(kind="decision", source=source)
    ]
