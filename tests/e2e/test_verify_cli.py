"""`reconciler verify`: an intact log passes; tampering in the database is named and located."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.store import PostgresLogStore, SQLiteLogStore
from tests.builders import Log

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from reconciler.store import LogStore

ALTER = "UPDATE {records} SET payload = {forged} WHERE position = 3"
REMOVE = "DELETE FROM {records} WHERE position = 3"


def fill(store: LogStore) -> None:
    """A small day through the engine: facts and decisions, hash-chained."""
    log = Log()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")
    log.tick(400)
    engine = Engine(Rules(), store)
    engine.process([InputRecord.from_fact("day.jsonl", n, f) for n, f in enumerate(log.facts)])


def run_verify(*args: str) -> tuple[int, dict[str, object]]:
    """Run `verify --format json`; its exit status and its report."""
    result = CliRunner().invoke(app, ["verify", *args, "--format", "json"])
    return result.exit_code, json.loads(result.output)


@pytest.fixture
def sqlite_log(tmp_path: Path) -> tuple[str, Callable[[str], None]]:
    """A filled SQLite log's URL, and a way to run raw SQL on its file."""
    path = tmp_path / "log.sqlite"
    store = SQLiteLogStore(path)
    store.create_tables()
    fill(store)
    store.close()

    def tamper(statement: str) -> None:
        with sqlite3.connect(path) as connection:
            connection.execute(statement.format(records="records", forged="x'7b7d'"))

    return f"sqlite:///{path}", tamper


@pytest.mark.postgres
def test_verify_passes_an_intact_postgresql_log(pg_dsn: str, pg_schema: str) -> None:
    """Every record chains to the one before: exit 0, and the head hash to keep."""
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    store.create_tables()
    fill(store)
    total = store.last_position()
    store.close()
    status, report = run_verify("--store", pg_dsn, "--schema", pg_schema)
    assert status == 0
    assert report["ok"] is True
    assert report["records_checked"] == total > 5
    assert len(str(report["head_hash"])) == 64


@pytest.mark.postgres
@pytest.mark.parametrize(("statement", "fault"), [(ALTER, "altered"), (REMOVE, "gap")])
def test_verify_locates_tampering_in_postgresql(
    pg_dsn: str, pg_schema: str, statement: str, fault: str
) -> None:
    """A row changed or deleted with SQL, behind the store's back, is named at position 3."""
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    store.create_tables()
    fill(store)
    store.close()
    records = sql.Identifier(pg_schema, "records")
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL(statement).format(records=records, forged=sql.Literal(b"{}")))
    status, report = run_verify("--store", pg_dsn, "--schema", pg_schema)
    assert status == 1
    assert report["ok"] is False
    assert (report["first_bad_position"], report["fault"]) == (3, fault)
    # An altered record is still there to name; a removed one left its position empty.
    assert (report["record"] is None) == (fault == "gap")


@pytest.mark.parametrize(("statement", "fault"), [(ALTER, "altered"), (REMOVE, "gap")])
def test_verify_locates_tampering_in_sqlite(
    sqlite_log: tuple[str, Callable[[str], None]], statement: str, fault: str
) -> None:
    """The same tampering in the embedded log is found at the same place."""
    url, tamper = sqlite_log
    assert run_verify("--store", url)[0] == 0
    tamper(statement)
    status, report = run_verify("--store", url)
    assert status == 1
    assert (report["first_bad_position"], report["fault"]) == (3, fault)


def test_verify_prints_the_break_for_a_person(
    sqlite_log: tuple[str, Callable[[str], None]],
) -> None:
    """The text form names the position, the fault and the record stored there now."""
    url, tamper = sqlite_log
    tamper(ALTER)
    result = CliRunner().invoke(app, ["verify", "--store", url])
    assert result.exit_code == 1
    assert "chain BROKEN at position 3: altered" in result.output
    assert "record there now:" in result.output


def test_verify_of_an_unusable_store_exits_2() -> None:
    """A store URL of an unknown kind is refused with status 2, naming it."""
    result = CliRunner().invoke(app, ["verify", "--store", "mysql://nowhere"])
    assert result.exit_code == 2
    assert "unsupported store URL" in result.output
