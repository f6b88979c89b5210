"""The service against a real broker and PostgreSQL: the same decisions as offline."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.config import load_rules
from reconciler.domain.rules import Rules
from reconciler.kafka_io import read_tail
from reconciler.reconcile import reconcile_file
from reconciler.report import build_report
from reconciler.service.relay import POSITION_HEADER
from reconciler.store import PostgresLogStore, open_store
from tests.builders import Log
from tests.fault_support import demo_events
from tests.service_support import (
    logged_report,
    produce_lines,
    service_in_thread,
    service_settings,
    wait_until,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.postgres


def test_demo_day_through_kafka_gives_the_offline_decisions(
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
    tmp_path: Path,
) -> None:
    """The demo day produced into Kafka and served gives exactly `reconcile`'s report."""
    path = tmp_path / "events.jsonl"
    lines = demo_events(path)
    offline_store = open_store("sqlite://:memory:")
    offline = reconcile_file(path, Rules(), offline_store)
    expected = build_report(offline.state, offline.decisions, offline.rejections)
    offline_store.close()

    topic = kafka_topic_factory("demo", 1)
    settings = service_settings(pg_dsn, pg_schema, kafka_bootstrap, topic, input_partitions=1)
    produced = produce_lines(kafka_bootstrap, topic, lines, partitions=1)
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    with service_in_thread(settings):
        wait_until(
            lambda: store.positions().get(f"{topic}:0") == produced, 120, "every record logged"
        )
        last_decision = max((r.position for r in store.read(kind="decision")), default=0)
        wait_until(
            lambda: store.positions().get("relay:commands", 0) >= last_decision,
            60,
            "every command relayed",
        )
    store.close()
    served = logged_report(pg_dsn, pg_schema, f"{topic}:0")
    expected.pop("clock")
    served.pop("clock")
    assert served["commands"] == expected["commands"]
    assert served == expected | {"dead_letters": []}

    published = read_tail(kafka_bootstrap, settings.commands_topic, 0, 100_000)
    relayed = [json.loads(record.value or b"") for record in published]
    assert [c["command_id"] for c in relayed] == [c["command_id"] for c in expected["commands"]]
    assert relayed == expected["commands"]
    positions = [int(dict(record.headers)[POSITION_HEADER]) for record in published]
    assert positions == sorted(positions)


def test_refund_flood_is_held_by_the_service_until_an_operator_approves(
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
    tmp_path: Path,
) -> None:
    """Held refunds are logged, counted and gauged; `operator approve` via Kafka releases them."""
    log = Log()
    log.tick()
    for n in range(1, 6):
        log.order(f"A{n}")
        log.debit(f"P{n}", f"A{n}", amount=5_000)
    lines = [fact.model_dump_json().encode() for fact in log.facts]
    topic = kafka_topic_factory("flood", 1)
    settings = service_settings(pg_dsn, pg_schema, kafka_bootstrap, topic, input_partitions=1)
    produced = produce_lines(kafka_bootstrap, topic, lines, partitions=1)
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    config = tmp_path / "rules.toml"
    config.write_text("REFUND_FLOOD_LIMIT = 2\n", encoding="utf-8")
    incident = "P3/AMOUNT_MISMATCH/REFUND_FLOOD"
    with capture_logs() as logs, service_in_thread(settings, load_rules(config)) as service:
        wait_until(
            lambda: store.positions().get(f"{topic}:0") == produced, 60, "every record logged"
        )
        registry = service.metrics.registry
        wait_until(  # metrics follow the transaction that logged the records
            lambda: registry.get_sample_value("reconciler_refunds_held") == 3, 30, "the gauge"
        )
        assert registry.get_sample_value("reconciler_refund_flood_incidents_total") == 1
        assert registry.get_sample_value("reconciler_refunds_held_rupiah") == 15_000
        approved = CliRunner().invoke(
            app,
            [
                *("operator", "approve", incident, "--operator", "siti", "--note", "outage"),
                *("--store", pg_dsn, "--schema", pg_schema, "--config", str(config)),
                *("--kafka-bootstrap", kafka_bootstrap),
            ],
        )
        assert approved.exit_code == 0, approved.output
        wait_until(
            lambda: registry.get_sample_value("reconciler_refunds_held") == 0, 60, "the release"
        )
    decisions = [(r.type, r.record_id) for r in store.read(kind="decision")]
    store.close()
    held = [record_id for kind, record_id in decisions if kind == "RefundHeld"]
    assert held == ["P3/AMOUNT_MISMATCH/held", "P4/AMOUNT_MISMATCH/held", "P5/AMOUNT_MISMATCH/held"]
    commanded = [record_id for kind, record_id in decisions if kind == "RefundCommanded"]
    assert commanded == [f"P{n}/AMOUNT_MISMATCH/1" for n in range(1, 6)]
    assert ("CaseResolved", f"{incident}/resolved") in decisions
    (opened,) = [line for line in logs if line["event"] == "refund_flood_incident_opened"]
    assert (opened["incident_id"], opened["limit"]) == (incident, 2)
    (closed,) = [line for line in logs if line["event"] == "refund_flood_incident_closed"]
    assert (closed["outcome"], closed["operator"]) == ("APPROVED", "siti")
