"""The service under faults: exactly once, and the same end state as an undisturbed run.

Each test runs the service over a Kafka topic holding a small demo day, disturbs it
(SIGKILLed processes, a process lost from a group of three, cut database connections, a
restarted database), lets it finish, and proves from outside, as an auditor would:

- no fact lost or logged twice: each source's facts are the distinct event_ids of its
  partition, in partition order;
- no command lost or published twice: the commands topic holds every command of the
  log's decisions exactly once;
- the end state is an undisturbed run's: one service, on a schema, consumer group and
  commands topic of its own over the same input topic, logged the same facts and
  decisions, byte for byte, source by source; and the log's hash chain holds.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.kafka_io import create_topics
from reconciler.store import PostgresLogStore
from tests.fault_support import (
    RestartablePostgres,
    TopicWatch,
    advisory_lock_holders,
    demo_events,
    drop_schema,
    input_done,
    log_contents,
    logged_commands,
    logged_events,
    published_commands,
    read_input,
    sources,
    terminate_backends,
    unique_name,
    verify_log,
    wait_caught_up,
    with_application_name,
)
from tests.service_support import (
    produce_lines,
    service_in_thread,
    service_process,
    service_settings,
    wait_until,
)

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.fault_support import LogContents, PartitionInput

pytestmark = pytest.mark.postgres

KILLS = 20
SEED = 20_240_904
FINISH_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Rig:
    """What every fault test uses: PostgreSQL, a fresh schema, Kafka, and a folder."""

    pg_dsn: str
    schema: str
    bootstrap: str
    new_topic: Callable[[str, int], str]
    tmp_path: Path


@pytest.fixture
def rig(  # noqa: PLR0913, PLR0917 - the fixtures it bundles
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Rig:
    """Give the test's PostgreSQL, schema, broker and folder; service logs unbuffered."""
    # A SIGKILLed process's log is then complete, and the tests can read logs live.
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    return Rig(pg_dsn, pg_schema, kafka_bootstrap, kafka_topic_factory, tmp_path)


@pytest.fixture
def restartable_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartablePostgres]:
    """Give an embedded PostgreSQL of this test's own, which the test may restart."""
    server = RestartablePostgres(tmp_path_factory.mktemp("restartable-postgres"))
    try:
        yield server
    finally:
        server.close()


# -- the runs ----------------------------------------------------------------------------


def _demo_topic(
    rig: Rig, partitions: int, tick_seconds: int = 60
) -> tuple[str, dict[str, PartitionInput]]:
    """A new topic holding a small demo day, and what each of its partitions holds."""
    topic = rig.new_topic("faults", partitions)
    lines = demo_events(rig.tmp_path / "events.jsonl", tick_seconds=tick_seconds)
    produce_lines(rig.bootstrap, topic, lines, partitions=partitions)
    return topic, read_input(rig.bootstrap, topic, partitions)


def _undisturbed(rig: Rig, topic: str, inputs: dict[str, PartitionInput]) -> dict[str, LogContents]:
    """What one service, never disturbed, logs from `topic`: on its own schema and group."""
    schema = unique_name("test_reference_")
    reference = topic + ".reference"
    settings = service_settings(
        rig.pg_dsn,
        schema,
        rig.bootstrap,
        topic,
        input_partitions=len(inputs),
        group_id=reference + ".group",
        commands_topic=reference + ".commands",
        dead_letter_topic=reference + ".dead",
    )
    try:
        with service_in_thread(settings):
            wait_caught_up(rig.pg_dsn, schema, _ends(inputs), FINISH_TIMEOUT_S)
        return log_contents(rig.pg_dsn, schema, list(inputs))
    finally:
        drop_schema(rig.pg_dsn, schema)


def _ends(inputs: dict[str, PartitionInput]) -> dict[str, int]:
    return {source: partition.end for source, partition in inputs.items()}


def _stop(process: subprocess.Popen[bytes]) -> int:
    """Stop a service process as an operator would (SIGTERM); its exit status."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def _kill(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL a service process: no clean-up of any kind; its exit status."""
    process.send_signal(signal.SIGKILL)
    return process.wait(timeout=30)


def _wait_for_progress(
    store: PostgresLogStore,
    ends: dict[str, int],
    before: int,
    process: subprocess.Popen[bytes],
    timeout: float,
) -> None:
    """Poll often (a batch takes milliseconds) until the log has taken input past `before`."""
    deadline = time.monotonic() + timeout
    while input_done(store, ends) <= before:
        assert process.poll() is None, f"service exited with {process.returncode}"
        assert time.monotonic() < deadline, f"no progress past {before} in {timeout} s"
        time.sleep(0.01)


def _await_kill_moment(
    store: PostgresLogStore, ends: dict[str, int], relayed: TopicWatch | None, rng: random.Random
) -> None:
    """Wait for a random moment of ingestion; with `relayed`, for the relay publishing.

    The moment is the first of: a random delay, a random number of records logged (so
    that a fast machine does not run out of input), and, when watching the commands
    topic, new commands arriving there: the relay has published them, and the log may
    not yet record that it did.
    """
    limit = input_done(store, ends) + rng.randint(20, 2000 if relayed else 400)
    delay = rng.uniform(0.1, 0.5) if relayed else rng.uniform(0.02, 0.3)
    deadline = time.monotonic() + delay
    if relayed is not None:
        relayed.drain()
    while time.monotonic() < deadline and input_done(store, ends) < limit:
        if relayed is None:
            time.sleep(0.005)
        elif relayed.wait_for_records(timeout=0.005):
            return


# -- the proofs --------------------------------------------------------------------------


def _assert_exactly_once(
    inputs: dict[str, PartitionInput],
    contents: dict[str, LogContents],
    published: list[dict[str, Any]],
) -> None:
    """Facts are the partitions' distinct events in order; commands are published once."""
    for source, partition in inputs.items():
        assert [record_id for record_id, _ in contents[source].facts] == partition.event_ids
    logged = {command["command_id"]: command for command in logged_commands(contents)}
    counts = Counter(command["command_id"] for command in published)
    assert [command_id for command_id, seen in counts.items() if seen > 1] == []
    assert set(counts) == set(logged)
    assert {command["command_id"]: command for command in published} == logged


def _assert_same_state(contents: dict[str, LogContents], reference: dict[str, LogContents]) -> None:
    """Source by source, the same facts and decisions, byte for byte."""
    assert contents.keys() == reference.keys()
    for source, logged in contents.items():
        assert logged.facts == reference[source].facts, source
        assert logged.decisions == reference[source].decisions, source
    assert sum(len(logged.decisions) for logged in contents.values()) > 0


def _assert_all_proofs(
    rig: Rig,
    store: tuple[str, str],
    commands_topic: str,
    inputs: dict[str, PartitionInput],
    reference: dict[str, LogContents],
) -> None:
    """Exactly once, the undisturbed run's state, and an intact hash chain."""
    dsn, schema = store
    contents = log_contents(dsn, schema, list(inputs))
    published = published_commands(rig.bootstrap, commands_topic, len(inputs))
    _assert_exactly_once(inputs, contents, published)
    _assert_same_state(contents, reference)
    assert verify_log(dsn, schema).ok


# -- 1. SIGKILL --------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_sigkilled_again_and_again_the_service_logs_and_publishes_everything_once(
    rig: Rig,
) -> None:
    """SIGKILLed 20+ times mid-ingest, `serve` loses and repeats no fact and no command."""
    # One tick per 15 simulated seconds: enough input (~18,000 records) for 20 kills.
    topic, inputs = _demo_topic(rig, partitions=3, tick_seconds=15)
    ends = _ends(inputs)
    total = sum(ends.values())
    reference = _undisturbed(rig, topic, inputs)
    settings = service_settings(
        rig.pg_dsn,
        rig.schema,
        rig.bootstrap,
        topic,
        input_partitions=3,
        batch_max_records=20,
        # A SIGKILLed member holds its partitions until its session times out: keep
        # that short, so that 20 restarts fit the time budget.
        session_timeout_ms=2000,
        # The relay publishes soon after each decision: a kill as it publishes comes
        # soon, and leaves the input less consumed.
        relay_interval_s=0.05,
    )
    log_path = rig.tmp_path / "serve.log"
    create_topics(rig.bootstrap, {settings.commands_topic: 3})
    relayed = TopicWatch(rig.bootstrap, settings.commands_topic, 3)
    store = PostgresLogStore(rig.pg_dsn, schema=rig.schema)
    rng = random.Random(SEED)  # noqa: S311 - kill timing, not cryptography
    landed: list[tuple[int, int]] = []  # input logged at each start, and at its kill
    try:
        while len(landed) < KILLS:
            before = input_done(store, ends)
            process = service_process(settings, log_path)
            try:
                _wait_for_progress(store, ends, before, process, timeout=30)
                _await_kill_moment(store, ends, relayed if len(landed) % 2 else None, rng)
            finally:
                status = _kill(process)
            assert status == -signal.SIGKILL
            at_kill = input_done(store, ends)
            assert at_kill < total, f"input ran out after {len(landed)} kills"
            landed.append((before, at_kill))
        final = service_process(settings, log_path)
        try:
            wait_caught_up(rig.pg_dsn, rig.schema, ends, FINISH_TIMEOUT_S)
        finally:
            assert _stop(final) == 0
    finally:
        store.close()
        relayed.close()

    assert len(landed) >= KILLS
    assert all(before < at_kill < total for before, at_kill in landed)
    _assert_all_proofs(rig, (rig.pg_dsn, rig.schema), settings.commands_topic, inputs, reference)


# -- 2. one of three processes lost --------------------------------------------------------


def _last_assignment(log_path: Path) -> list[str]:
    """The partitions a service process was last assigned, per its log (none yet: [])."""
    assigned: list[str] = []
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            logged = json.loads(line)
        except ValueError:
            continue
        if isinstance(logged, dict) and logged.get("event") == "partitions_assigned":
            assigned = list(logged.get("sources", []))
    return assigned


def _group_formed(logs: list[Path], names: list[str]) -> bool:
    """Whether each process holds partitions, and together all of them."""
    assignments = [_last_assignment(log) for log in logs]
    held = sorted(name for assigned in assignments for name in assigned)
    return all(assignments) and held == sorted(names)


@pytest.mark.timeout(240)
def test_a_group_of_three_that_loses_its_relay_leader_ends_as_one_process_would(
    rig: Rig,
) -> None:
    """Three processes, the relay leader SIGKILLed mid-run: one process's log, commands once."""
    partitions = 6
    topic = rig.new_topic("faults-group", partitions)
    application = unique_name("reconciler-test-")
    create_topics(rig.bootstrap, {topic + ".commands": partitions})
    relayed = TopicWatch(rig.bootstrap, topic + ".commands", partitions)
    logs = [rig.tmp_path / f"serve-{number}.log" for number in range(3)]
    processes = [
        service_process(
            service_settings(
                with_application_name(rig.pg_dsn, f"{application}-{number}"),
                rig.schema,
                rig.bootstrap,
                topic,
                input_partitions=partitions,
                batch_max_records=5,
            ),
            log_path,
        )
        for number, log_path in enumerate(logs)
    ]
    try:
        # The group forms on the empty topic: then all three ingest from the start.
        wait_until(
            lambda: _group_formed(logs, sources(topic, partitions)), 60, "the group of three"
        )
        lines = demo_events(rig.tmp_path / "events.jsonl")
        produce_lines(rig.bootstrap, topic, lines, partitions=partitions)
        inputs = read_input(rig.bootstrap, topic, partitions)
        ends = _ends(inputs)
        wait_until(
            lambda: all(logged_events(log, "batch") for log in logs), 60, "all three ingesting"
        )
        # The ticker is off: the only advisory lock of these processes is the relay's.
        holders = [
            name for name in advisory_lock_holders(rig.pg_dsn) if name.startswith(application)
        ]
        assert len(holders) == 1, f"one relay leader, not {holders}"
        relay_leader = int(holders[0].rpartition("-")[2])
        # Killed as it publishes: Kafka may hold commands the log does not count as sent.
        relayed.drain()
        assert relayed.wait_for_records(timeout=5.0), "the relay leader published nothing"
        assert _kill(processes[relay_leader]) == -signal.SIGKILL
        store = PostgresLogStore(rig.pg_dsn, schema=rig.schema)
        try:
            at_kill = input_done(store, ends)
        finally:
            store.close()
        assert at_kill < sum(ends.values()), "the kill came after the input was all logged"
        wait_caught_up(rig.pg_dsn, rig.schema, ends, FINISH_TIMEOUT_S)
    finally:
        relayed.close()
        statuses = [
            _stop(process) if process.poll() is None else process.returncode
            for process in processes
        ]
    assert sorted(statuses) == sorted([0, 0, -signal.SIGKILL])
    reference = _undisturbed(rig, topic, inputs)
    _assert_all_proofs(rig, (rig.pg_dsn, rig.schema), topic + ".commands", inputs, reference)


# -- 3. connections cut; 4. the database restarted ----------------------------------------


def _disturb_while_ingesting(
    store: tuple[str, str], ends: dict[str, int], disturb: Callable[[], None], times: int
) -> list[int]:
    """Disturb the store `times` times, each after the log took more input; input at each."""
    dsn, schema = store
    rng = random.Random(SEED)  # noqa: S311 - fault timing, not cryptography
    total = sum(ends.values())
    at_faults: list[int] = []
    log = PostgresLogStore(dsn, schema=schema)
    try:
        done = 0
        for _ in range(times):

            def past(after: int = done) -> bool:
                return input_done(log, ends) > after

            wait_until(past, 60, "input logged past a fault")
            time.sleep(rng.uniform(0.05, 0.3))
            done = input_done(log, ends)
            assert done < total, f"input ran out after {len(at_faults)} faults"
            disturb()
            at_faults.append(done)
    finally:
        log.close()
    return at_faults


@pytest.mark.timeout(180)
def test_cut_database_connections_pause_the_service_which_then_loses_nothing(rig: Rig) -> None:
    """Its PostgreSQL sessions killed mid-run, the service retries and ends undisturbed."""
    topic, inputs = _demo_topic(rig, partitions=3)
    application = unique_name("reconciler-test-")
    settings = service_settings(
        with_application_name(rig.pg_dsn, application),
        rig.schema,
        rig.bootstrap,
        topic,
        input_partitions=3,
        batch_max_records=2,
        retry_max_s=1.0,
    )
    cuts: list[int] = []

    def cut() -> None:
        cuts.append(terminate_backends(rig.pg_dsn, application))

    with service_in_thread(settings) as service:
        _disturb_while_ingesting((rig.pg_dsn, rig.schema), _ends(inputs), cut, times=4)
        wait_caught_up(rig.pg_dsn, rig.schema, _ends(inputs), FINISH_TIMEOUT_S)
        store_errors = service.metrics.registry.get_sample_value("reconciler_store_errors_total")
    assert len(cuts) == 4
    assert all(cuts), f"connections cut each time: {cuts}"
    # A cut idle connection is replaced by the pool's ping unseen; one cut in the middle
    # of a batch fails it and the retry path runs. Either way nothing may be lost.
    assert store_errors is not None
    reference = _undisturbed(rig, topic, inputs)
    _assert_all_proofs(rig, (rig.pg_dsn, rig.schema), settings.commands_topic, inputs, reference)


@pytest.mark.timeout(180)
def test_a_restarted_database_pauses_the_service_which_then_loses_nothing(
    rig: Rig, restartable_postgres: RestartablePostgres
) -> None:
    """PostgreSQL restarted twice mid-run: the service retries and ends undisturbed."""
    topic, inputs = _demo_topic(rig, partitions=3)
    store = (restartable_postgres.dsn, unique_name("test_restart_"))
    settings = service_settings(
        store[0],
        store[1],
        rig.bootstrap,
        topic,
        input_partitions=3,
        batch_max_records=2,
        retry_max_s=1.0,
    )
    # The first outage outlasts the connection pool's 5 s wait, so batches fail and the
    # service's own retry path runs; the second is short enough for the pool to absorb.
    outages = iter((6.5, 1.0))
    with service_in_thread(settings) as service:
        restarts = _disturb_while_ingesting(
            store,
            _ends(inputs),
            lambda: restartable_postgres.restart(down_s=next(outages)),
            times=2,
        )
        wait_caught_up(*store, _ends(inputs), FINISH_TIMEOUT_S)
        store_errors = service.metrics.registry.get_sample_value("reconciler_store_errors_total")
    assert len(restarts) == 2
    assert store_errors is not None
    assert store_errors > 0
    reference = _undisturbed(rig, topic, inputs)
    _assert_all_proofs(rig, store, settings.commands_topic, inputs, reference)
