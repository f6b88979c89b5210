"""`reconciler operator`: actions checked against the case's shard, then written to its log."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.kafka_io import TopicPartition
from reconciler.kafka_io._kafka import KafkaConsumer
from reconciler.store import SQLiteLogStore
from tests.builders import Log

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from typer.testing import Result

INCIDENT = "P3/AMOUNT_MISMATCH/REFUND_FLOOD"


def flood_log() -> Log:
    """Four wrong-amount debits at one tick: under a limit of two, two refunds are held."""
    log = Log()
    log.tick()
    for n in range(1, 5):
        log.order(f"A{n}")
        log.debit(f"P{n}", f"A{n}", amount=5_000)
    log.tick(60)
    return log


def failed_refund_log() -> Log:
    """A duplicate debit whose refund the bank refuses for good: escalated REFUND_FAILED."""
    log = Log()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.refund_failed("P2/DUPLICATE_DEBIT", retryable=False)
    log.stamps("A1", "S1")
    log.tick(60)
    return log


def reconciled(tmp_path: Path, log: Log, rules: str = "") -> tuple[str, Path]:
    """Run `reconcile --store` over the log: the embedded default an operator acts on."""
    events = tmp_path / "events.jsonl"
    events.write_text("".join(f.model_dump_json() + "\n" for f in log.facts), encoding="utf-8")
    config = tmp_path / "rules.toml"
    config.write_text(rules, encoding="utf-8")
    store = f"sqlite:///{tmp_path / 'log.sqlite'}"
    result = cli("reconcile", str(events), "--store", store, "--config", str(config))
    assert result.exit_code == 0, result.output
    return store, config


def cli(*args: str) -> Result:
    """Invoke the command line in-process."""
    return CliRunner().invoke(app, list(args))


def decisions_in(store: str) -> list[dict[str, object]]:
    """Every decision in the SQLite log, decoded."""
    log = SQLiteLogStore(store.removeprefix("sqlite:///"))
    try:
        return [json.loads(r.payload) for r in log.read(kind="decision")]
    finally:
        log.close()


def test_operator_cases_lists_the_open_escalations(tmp_path: Path) -> None:
    """`cases --format json` names each open escalation, its money and its shard."""
    store, _ = reconciled(tmp_path, failed_refund_log())
    result = cli("operator", "cases", "--store", store, "--format", "json")
    assert result.exit_code == 0, result.output
    (case,) = json.loads(result.output)
    assert case["escalation_id"] == "P2/REFUND_FAILED"
    assert (case["reason"], case["order_id"], case["amount"]) == ("REFUND_FAILED", "A1", 12_500)
    assert case["source"].endswith("events.jsonl")


def test_operator_resolve_appends_the_fact_and_the_engine_closes_the_case(tmp_path: Path) -> None:
    """A refund settled by bank transfer is logged; the case is closed, nothing at risk."""
    store, config = reconciled(tmp_path, failed_refund_log())
    result = cli(
        "operator", "resolve", "P2/REFUND_FAILED", "--outcome", "REFUNDED_OUTSIDE",
        "--reference", "BCA-20240904-17", "--operator", "siti", "--note", "paid by hand",
        "--store", store, "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "CaseResolved" in result.output
    resolved = [d for d in decisions_in(store) if d["type"] == "CaseResolved"]
    assert [(d["escalation_id"], d["outcome"], d["operator"]) for d in resolved] == [
        ("P2/REFUND_FAILED", "REFUNDED_OUTSIDE", "siti")
    ]
    listed = cli("operator", "cases", "--store", store, "--format", "json")
    assert json.loads(listed.output) == []


def test_operator_resolve_refused_by_the_engine_writes_nothing(tmp_path: Path) -> None:
    """Closing a failed refund as NO_MONEY_AT_STAKE is refused with the engine's reason."""
    store, config = reconciled(tmp_path, failed_refund_log())
    before = decisions_in(store)
    result = cli(
        "operator", "resolve", "P2/REFUND_FAILED", "--outcome", "NO_MONEY_AT_STAKE",
        "--operator", "siti", "--note", "looks fine", "--store", store, "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Rp 12500 is still at stake in this case" in result.output
    assert decisions_in(store) == before


def test_operator_resolve_without_a_reference_names_the_field(tmp_path: Path) -> None:
    """REFUNDED_OUTSIDE with no reference exits 2, saying which rule it broke."""
    store, config = reconciled(tmp_path, failed_refund_log())
    result = cli(
        "operator", "resolve", "P2/REFUND_FAILED", "--outcome", "REFUNDED_OUTSIDE",
        "--operator", "siti", "--note", "paid", "--store", store, "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "REFUNDED_OUTSIDE needs the transfer's reference" in result.output


def test_operator_resolve_unknown_escalation_is_refused(tmp_path: Path) -> None:
    """An id that is not an open escalation exits 1 and points to `operator cases`."""
    store, config = reconciled(tmp_path, failed_refund_log())
    result = cli(
        "operator", "resolve", "P9/REFUND_FAILED", "--outcome", "NO_MONEY_AT_STAKE",
        "--operator", "siti", "--note", "?", "--store", store, "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no open escalation 'P9/REFUND_FAILED'" in result.output


def test_operator_approve_releases_the_held_refunds(tmp_path: Path) -> None:
    """Approving a flood incident on the embedded default commands its held refunds."""
    store, config = reconciled(tmp_path, flood_log(), rules="refund_flood_limit = 2\n")
    result = cli(
        "operator", "approve", INCIDENT, "--operator", "siti", "--note", "outage confirmed",
        "--store", store, "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    commanded = [d["payment_id"] for d in decisions_in(store) if d["type"] == "RefundCommanded"]
    assert commanded == ["P1", "P2", "P3", "P4"]


def test_operator_resolve_of_an_incident_is_refused(tmp_path: Path) -> None:
    """An incident is closed by approving or rejecting it, not by `resolve`."""
    store, config = reconciled(tmp_path, flood_log(), rules="refund_flood_limit = 2\n")
    result = cli(
        "operator", "resolve", INCIDENT, "--outcome", "NO_MONEY_AT_STAKE",
        "--operator", "siti", "--note", "x", "--store", store, "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "is a REFUND_FLOOD escalation, not a case (not an incident)" in result.output


def test_operator_action_on_a_kafka_shard_goes_to_its_partition(
    tmp_path: Path, kafka_bootstrap: str, kafka_topic_factory: Callable[[str, int], str]
) -> None:
    """A case held by partition 1 of the input topic gets its fact on partition 1."""
    topic = kafka_topic_factory("operator-input", 2)
    source = f"{topic}:1"
    store = SQLiteLogStore(tmp_path / "log.sqlite")
    store.create_tables()
    engine = Engine(Rules(refund_flood_limit=2), store)
    facts = flood_log().facts
    engine.process([InputRecord.from_fact(source, n, f) for n, f in enumerate(facts)])
    store.close()
    config = tmp_path / "rules.toml"
    config.write_text("refund_flood_limit = 2\n", encoding="utf-8")
    result = cli(
        "operator", "reject", INCIDENT, "--operator", "siti", "--note", "issuing by hand",
        "--store", f"sqlite:///{tmp_path / 'log.sqlite'}", "--config", str(config),
        "--kafka-bootstrap", kafka_bootstrap,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"sent to {source}" in result.output
    assert "P3/REFUND_REJECTED" in result.output  # the decisions the service will take
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, consumer_timeout_ms=10_000)
    try:
        consumer.assign([TopicPartition(topic, 1)])
        consumer.seek_to_beginning()
        (record,) = [next(consumer)]
    finally:
        consumer.close()
    fact = json.loads(record.value)
    assert (fact["type"], fact["incident_id"], fact["operator"]) == (
        "HeldRefundsRejected",
        INCIDENT,
        "siti",
    )
