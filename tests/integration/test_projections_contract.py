"""The finance read models on a real log: they equal the report, exactly once, rebuildable.

`ProjectionContract` holds the tests; `SQLiteBackend` and `PostgresBackend` supply the
database through `open_store_on_database` (a new store on the test's database, as
another process would open it) and `store_url`/`schema` (for the command line). The
query tests in test_projections_queries.py run on the same two backends.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer
from typer.testing import CliRunner

from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.projections import (
    DivergedError,
    Projector,
    ProjectorHooks,
    ReadModels,
    StaleProjectionError,
)
from reconciler.projections.cli import project
from reconciler.projections.database import TRACKING, view_database
from reconciler.projections.sql import TABLES
from reconciler.reconcile import reconcile_file
from reconciler.report import build_report
from reconciler.store import PostgresLogStore, SQLiteLogStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from reconciler.store import LogStore
    from tests.builders import Log

    OpenStore = Callable[[], LogStore]

SCENARIO = Path(__file__).parents[2] / "replay" / "casn-peak-500" / "events.jsonl"
RULES = Rules()
SOURCE = "events.jsonl"
REPORTED = ("status", "quantity", "delivered", "debited", "kept", "refunded", "refund_pending")


def feed(store: LogStore, log: Log, *, source: str = SOURCE, batch: int = 3) -> None:
    """Run a log's facts through the engine into the store, a few per transaction."""
    engine = Engine(RULES, store)
    engine.restore(source)
    facts = [InputRecord.from_fact(source, n, fact) for n, fact in enumerate(log.facts, 1)]
    for start in range(0, len(facts), batch):
        engine.process(facts[start : start + batch])


def dump(store: LogStore) -> dict[str, list[str]]:
    """Every read-model table's rows, in a fixed order, to compare two projections."""
    with view_database(store).read() as session:
        return {
            table: sorted(map(repr, session.rows(f"SELECT * FROM {{schema}}.{table}")))  # noqa: S608 - fixed names
            for table in TABLES
        }


def all_orders(views: ReadModels) -> list[dict[str, Any]]:
    """Every order row, walking the pages, in the report's shape."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = views.orders(limit=97, cursor=cursor)
        rows.extend(
            row.model_dump(include={"order_id", "cases", "at_risk", *REPORTED})
            for row in page.items
        )
        if (cursor := page.next_cursor) is None:
            return rows


class CrashError(Exception):
    """A failure injected between a page's row writes and its commit."""


class SQLiteBackend:
    """The read models in a SQLite file beside the log."""

    @pytest.fixture
    def database(self, tmp_path: Path) -> Path:
        """Give the path of the test's SQLite database file."""
        return tmp_path / "log.sqlite"

    @pytest.fixture
    def open_store_on_database(self, database: Path) -> Iterator[OpenStore]:
        """Open stores on the test's database, and close them all afterwards."""
        opened: list[LogStore] = []

        def open_store() -> LogStore:
            store = SQLiteLogStore(database)
            store.create_tables()
            opened.append(store)
            return store

        yield open_store
        for store in opened:
            store.close()

    @pytest.fixture
    def store_url(self, database: Path) -> str:
        """Give the command line's URL of the test's database."""
        return f"sqlite:///{database}"

    @pytest.fixture
    def schema(self) -> str:
        """Give the schema the command line is told (SQLite has none)."""
        return "reconciler"


@pytest.mark.postgres
class PostgresBackend:
    """The read models in the log's PostgreSQL schema."""

    @pytest.fixture
    def open_store_on_database(self, pg_dsn: str, pg_schema: str) -> Iterator[OpenStore]:
        """Open stores on the test's schema, and close them all afterwards."""
        opened: list[LogStore] = []

        def open_store() -> LogStore:
            store = PostgresLogStore(pg_dsn, schema=pg_schema)
            store.create_tables()
            opened.append(store)
            return store

        yield open_store
        for store in opened:
            store.close()

    @pytest.fixture
    def store_url(self, pg_dsn: str) -> str:
        """Give the command line's URL of the test's server."""
        return pg_dsn

    @pytest.fixture
    def schema(self, pg_schema: str) -> str:
        """Give the test's schema."""
        return pg_schema


class ProjectionContract:
    """What the projector must do on every backend."""

    @pytest.fixture
    def store(self, open_store_on_database: OpenStore) -> LogStore:
        """Give a store with its tables created on the test's own database."""
        return open_store_on_database()

    @pytest.fixture
    def casn(self, store: LogStore) -> dict[str, Any]:
        """Reconcile the recorded CASN peak day into the store; give its report."""
        run = reconcile_file(SCENARIO, RULES, store)
        return build_report(run.state, run.decisions, run.rejections)

    def test_read_models_equal_the_reconcile_report(
        self, store: LogStore, casn: dict[str, Any]
    ) -> None:
        """Every order row, the totals, the statuses and the clock are the report's."""
        Projector(store, RULES).catch_up()
        views = ReadModels(store)
        expected = sorted(casn["orders"], key=lambda order: order["order_id"])
        assert all_orders(views) == expected
        summary = views.summary()
        assert summary.totals.model_dump() == casn["totals"]
        assert summary.clock == datetime.fromisoformat(casn["clock"])
        statuses = Counter(order["status"] for order in casn["orders"])
        assert {k: v for k, v in summary.orders_by_status.items() if v} == dict(statuses)
        assert (summary.position, summary.log_position) == (store.last_position(),) * 2

    def test_pages_restarts_and_a_crash_give_the_rows_of_one_pass(
        self, store: LogStore, casn: dict[str, Any], open_store_on_database: OpenStore
    ) -> None:
        """Small pages, a crash before a commit and a restart elsewhere: the rows of one pass."""
        del casn

        def crash(position: int) -> None:
            raise CrashError(position)

        projector = Projector(store, RULES, page_size=300)
        projector.catch_up(limit=900)
        before_crash = dump(store)
        crashing = Projector(store, RULES, page_size=300, hooks=ProjectorHooks(crash))
        with pytest.raises(CrashError):
            crashing.catch_up()
        assert dump(store) == before_crash
        assert store.positions()[TRACKING] == 900
        projector.catch_up(limit=1100)
        Projector(open_store_on_database(), RULES, page_size=701).catch_up()
        stepwise = dump(store)
        Projector(store, RULES, page_size=10_000).rebuild()
        assert dump(store) == stepwise

    def test_rebuild_gives_the_same_rows_from_the_log_alone(
        self, store: LogStore, casn: dict[str, Any]
    ) -> None:
        """Dropping the views (even damaged ones) and projecting again gives the same rows."""
        del casn
        projector = Projector(store, RULES)
        projector.catch_up()
        projected = dump(store)
        with view_database(store).write() as session:
            session.run("DELETE FROM {schema}.rm_orders WHERE status = ?", ("FULFILLED",))
            session.run("UPDATE {schema}.rm_outcomes SET count = count + ?", (5,))
        assert projector.rebuild() == store.last_position()
        assert dump(store) == projected

    def test_a_projector_that_fell_behind_another_is_fenced(
        self, store: LogStore, open_store_on_database: OpenStore
    ) -> None:
        """A projector whose position another moved refuses its page, then starts from there."""
        log = _orders_log(6)
        first = Projector(store, RULES)
        feed(store, _head(log, 10))
        first.catch_up()
        feed(store, _head(log, 20))
        Projector(open_store_on_database(), RULES).catch_up()
        feed(store, log)
        with pytest.raises(StaleProjectionError):
            first.catch_up()
        first.catch_up()
        assert store.positions()[TRACKING] == store.last_position()
        fenced = dump(store)
        first.rebuild()
        assert dump(store) == fenced

    def test_other_rules_than_the_engines_are_refused(self, store: LogStore) -> None:
        """The projector stops at the first decision its rules do not lead to; nothing moves."""
        feed(store, _orders_log(3))
        with pytest.raises(DivergedError, match="does not follow"):
            Projector(store, Rules(issue_sla=timedelta(hours=1))).catch_up()
        assert TRACKING not in store.positions()

    def test_the_command_line_projects_and_rebuilds(
        self, store: LogStore, store_url: str, schema: str, tmp_path: Path
    ) -> None:
        """`project` catches up, `--rebuild` starts over; other rules exit 1, a bad URL 2."""
        feed(store, _orders_log(3))
        app = typer.Typer()
        app.command()(project)
        runner = CliRunner()
        total = store.last_position()
        first = runner.invoke(app, ["--store", store_url, "--schema", schema])
        assert first.exit_code == 0, first.output
        assert f"read models at log position {total}: {total} records projected" in first.output
        again = runner.invoke(app, ["--store", store_url, "--schema", schema, "--rebuild"])
        assert f"{total} records projected" in again.output
        rules = tmp_path / "rules.json"
        rules.write_text(json.dumps({"ISSUE_SLA": 3600}))
        options = ["--store", store_url, "--schema", schema, "--config", str(rules)]
        diverged = runner.invoke(app, [*options, "--rebuild"])
        assert (diverged.exit_code, "does not follow" in diverged.output) == (1, True)
        assert runner.invoke(app, ["--store", "mysql://nowhere"]).exit_code == 2


def _orders_log(count: int) -> Log:
    """Paid orders, half delivered at once, the rest left to ISSUE_SLA and then expiry."""
    from tests.builders import Log  # noqa: PLC0415 - the builders are for tests only

    log = Log()
    log.tick()
    for number in range(count):
        order_id = f"A{number}"
        log.order(order_id)
        log.debit(f"P{number}", order_id)
        if number % 2 == 0:
            log.stamps(order_id, f"S{number}")
        log.tick(100)
    log.tick(300)
    log.tick(3600)
    return log


def _head(log: Log, count: int) -> Log:
    """The first `count` facts of a log, as a log of their own."""
    from tests.builders import Log  # noqa: PLC0415 - the builders are for tests only

    head = Log()
    head.facts = log.facts[:count]
    return head


class TestProjectionOnSQLite(ProjectionContract, SQLiteBackend):
    """The contract on a SQLite file beside the log."""


class TestProjectionOnPostgres(ProjectionContract, PostgresBackend):
    """The contract in the log's PostgreSQL schema."""
