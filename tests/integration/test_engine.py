"""The engine over a real log store: dedupe by event_id, dead letters, both backends."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.accounting import total_money
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.reconcile import reconcile_file
from reconciler.report import build_report
from reconciler.store import PostgresLogStore, SQLiteLogStore, open_store
from tests.strategies import logs

if TYPE_CHECKING:
    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.events import Fact
    from reconciler.store import LogStore
    from tests.builders import Log

SCENARIO = Path(__file__).parents[2] / "replay" / "casn-peak-500" / "events.jsonl"


def run(facts: list[Fact], batch_size: int) -> tuple[list[AnyDecision], Engine]:
    """Feed facts through an engine on an in-memory SQLite log, in batches."""
    store = open_store("sqlite://:memory:")
    engine = Engine(Rules(), store)
    decisions: list[AnyDecision] = []
    records = [InputRecord.from_fact("test", n, fact) for n, fact in enumerate(facts, 1)]
    for start in range(0, len(records), batch_size):
        decisions.extend(engine.process(records[start : start + batch_size]).decisions)
    store.close()
    return decisions, engine


@given(logs(), st.data())
def test_redelivering_any_event_changes_nothing(log: Log, data: st.DataObject) -> None:
    """Any event delivered again (same event_id), anywhere later, changes no decision."""
    facts = list(log.facts)
    redelivered = list(facts)
    for _ in range(data.draw(st.integers(1, 5))):
        if not facts:
            break
        fact = facts[data.draw(st.integers(0, len(facts) - 1))]
        first_delivery = next(i for i, seen in enumerate(redelivered) if seen is fact)
        position = data.draw(st.integers(first_delivery + 1, len(redelivered)))
        redelivered.insert(position, fact)
    batch_size = data.draw(st.sampled_from((1, 3, 1000)))
    expected, first = run(facts, 1000)
    got, second = run(redelivered, batch_size)
    assert [d.model_dump_json() for d in got] == [d.model_dump_json() for d in expected]
    assert total_money(second.state("test")) == total_money(first.state("test"))


def test_rejected_records_are_dead_lettered_with_reason_and_bytes() -> None:
    """A record failing the contract is kept in the store with its reason and raw bytes."""
    store = open_store("sqlite://:memory:")
    engine = Engine(Rules(), store)
    outcome = engine.process([InputRecord.from_raw("feed.jsonl", 7, b'{"type": 1}')])
    assert [(r.position, r.reason) for r in outcome.rejections] == [
        (7, "field 'type': expected a string, got int")
    ]
    [letter] = store.dead_letters()
    assert letter.source == "feed.jsonl"
    assert letter.raw == b'{"type": 1}'
    assert "type" in letter.reason
    store.close()


def test_facts_and_decisions_are_logged_once_each(tmp_path: Path) -> None:
    """The log holds every fact once, then the decisions it caused, hash-chained."""
    store = SQLiteLogStore(tmp_path / "log.sqlite")
    store.create_tables()
    run_ = reconcile_file(SCENARIO, Rules(), store)
    kinds = [record.kind for record in store.read()]
    assert kinds.count("decision") == len(run_.decisions)
    assert store.verify().ok
    store.close()


@pytest.mark.postgres
def test_postgres_engine_takes_the_same_decisions_as_sqlite(
    pg_dsn: str, pg_schema: str, tmp_path: Path
) -> None:
    """The same scenario through PostgreSQL and SQLite logs gives the same report and log."""
    reports = []
    logs_by_backend = []
    stores: list[LogStore] = [
        PostgresLogStore(pg_dsn, schema=pg_schema),
        SQLiteLogStore(tmp_path / "log.sqlite"),
    ]
    for store in stores:
        store.create_tables()
        result = reconcile_file(SCENARIO, Rules(), store)
        reports.append(build_report(result.state, result.decisions, result.rejections))
        logs_by_backend.append([(r.kind, r.record_id, r.recorded_hash) for r in store.read()])
        assert store.verify().ok
        store.close()
    assert reports[0] == reports[1]
    assert logs_by_backend[0] == logs_by_backend[1]
