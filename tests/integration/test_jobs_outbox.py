"""The jobs reading the outbox of a real log, calling the simulators as real processes.

Each test writes a log through the engine (SQLite, and PostgreSQL where marked), answers
its commands with an `OutboxRunner` (or `reconciler jobs run --store` as a process)
against the issuer and PSP simulators, and reads the engine's view back from the log.
The simulators live for the module; every test names its orders with its own prefix.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from structlog.testing import capture_logs

from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.jobs.clients import IssuerClient, PspClient
from reconciler.jobs.handlers import Dispatcher, IssuanceJob, RefundJob
from reconciler.jobs.outbox import OUTBOX_POSITION, OutboxHooks, OutboxRunner
from reconciler.jobs.retry import BackoffPolicy, Retrier
from reconciler.report import build_report
from reconciler.store import PostgresLogStore, SQLiteLogStore
from tests.builders import UNIT, Log
from tests.provider_support import running_simulator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from reconciler.jobs.handlers import Dispatched
    from reconciler.store import LogStore, StoredRecord
    from tests.provider_support import Simulator

SOURCE = "events.jsonl"
RULES = Rules()
SLA_S = RULES.issue_sla.total_seconds()


class Crash(BaseException):
    """A simulated kill: not an Exception, so nothing in the runner catches it."""


# --- simulators, stores, runners ---------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """A healthy issuer: every stamp asked for, no outage."""
    log = tmp_path_factory.mktemp("issuer") / "simulator.log"
    with running_simulator("issuer", "--seed=3", log=log) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def quota_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """An issuer that refuses every issue QUOTA_EXCEEDED (retryable)."""
    log = tmp_path_factory.mktemp("quota-issuer") / "simulator.log"
    with running_simulator("issuer", "--seed=3", "--quota-rate=1.0", log=log) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def slow_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """An issuer that issues, then holds every answer back longer than the jobs wait."""
    log = tmp_path_factory.mktemp("slow-issuer") / "simulator.log"
    with running_simulator(
        "issuer", "--seed=3", "--slow-rate=1.0", "--slow-seconds=1.0", log=log
    ) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def psp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """A PSP that pays every refund: no blackout, no bank refusing refunds."""
    log = tmp_path_factory.mktemp("psp") / "simulator.log"
    with running_simulator(
        "psp", "--seed=3", "--blackout=none", "--not-supported-rate=0", log=log
    ) as simulator:
        yield simulator


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def log_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """An empty log on each backend: a SQLite file, or a fresh PostgreSQL schema."""
    store: LogStore
    if request.param == "sqlite":
        store = SQLiteLogStore(tmp_path / "log.sqlite")
    else:
        dsn = request.getfixturevalue("pg_dsn")
        store = PostgresLogStore(dsn, schema=request.getfixturevalue("pg_schema"))
    store.create_tables()
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteLogStore]:
    """An empty SQLite log file."""
    store = SQLiteLogStore(tmp_path / "log.sqlite")
    store.create_tables()
    yield store
    store.close()


@pytest.fixture
def prefix() -> str:
    """A prefix for this test's ids: the simulators are shared by the module."""
    return f"T{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """One HTTP client for the test's runners."""
    with httpx.Client() as client:
        yield client


def _dispatcher(http: httpx.Client, issuer: Simulator, psp: Simulator) -> Dispatcher:
    retrier = Retrier(BackoffPolicy(attempts=3, base_s=0.01, cap_s=0.05, deadline_s=10.0))
    return Dispatcher(
        IssuanceJob(IssuerClient(http, issuer.url, timeout_s=5.0), retrier),
        RefundJob(PspClient(http, psp.url, timeout_s=5.0), retrier),
    )


def _runner(
    store: LogStore,
    http: httpx.Client,
    issuer: Simulator,
    psp: Simulator,
    hooks: OutboxHooks | None = None,
) -> OutboxRunner:
    """A runner as a fresh process would have it: its own engine, nothing restored."""
    return OutboxRunner(Engine(RULES, store), _dispatcher(http, issuer, psp), hooks=hooks)


def _write(store: LogStore, log: Log, rules: Rules = RULES) -> None:
    """Record the log's facts not yet recorded (the store keeps one of each event_id)."""
    engine = Engine(rules, store)
    engine.restore(SOURCE)
    engine.process([InputRecord.from_fact(SOURCE, n, f) for n, f in enumerate(log.facts, 1)])


def _incident(prefix: str) -> Log:
    """Order A paid and never issued, order C paid then cancelled, order E over-issued."""
    log = Log()
    log.tick()
    log.order(f"{prefix}A", quantity=2)
    log.debit(f"{prefix}PA", f"{prefix}A", amount=2 * UNIT)
    log.order(f"{prefix}C")
    log.debit(f"{prefix}PC", f"{prefix}C")
    log.cancel(f"{prefix}C")
    log.order(f"{prefix}E")
    log.debit(f"{prefix}PE", f"{prefix}E")
    log.stamps(f"{prefix}E", f"{prefix}S1", f"{prefix}S2")
    log.tick(SLA_S + 1)
    return log


def _report(store: LogStore, rules: Rules = RULES) -> dict[str, Any]:
    """The engine's report, rebuilt from the log alone."""
    engine = Engine(rules, store)
    engine.restore(SOURCE)
    return build_report(engine.state(SOURCE), [], [])


def _statuses(store: LogStore, rules: Rules = RULES) -> dict[str, str]:
    return {order["order_id"]: order["status"] for order in _report(store, rules)["orders"]}


def _results(store: LogStore) -> list[str]:
    """The event ids of the result facts the jobs appended, in log order."""
    return [
        r.record_id
        for r in store.read(source=SOURCE, kind="fact")
        if r.record_id.endswith("/result")
    ]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _payouts(psp: Simulator, refund_ids: list[str]) -> dict[str, int]:
    paid: dict[str, int] = psp.stats()["paid_out_by_refund"]
    return {refund_id: paid[refund_id] for refund_id in refund_ids if refund_id in paid}


# --- the outbox answered -----------------------------------------------------------------


def test_pending_commands_are_answered_and_the_engine_reacts(
    log_store: LogStore, http: httpx.Client, issuer: Simulator, psp: Simulator, prefix: str
) -> None:
    """Issue and refund commands get results in the log; orders end FULFILLED and REFUNDED.

    The Escalate is passed over with a log line, and the cursor ends past every decision.
    """
    _write(log_store, _incident(prefix))
    assert _statuses(log_store) == {
        f"{prefix}A": "PAID",
        f"{prefix}C": "REFUND_PENDING",
        f"{prefix}E": "ESCALATED",
    }
    runner = _runner(log_store, http, issuer, psp)
    with capture_logs() as logs:
        answered = runner.drain()
    assert answered == 2
    assert _statuses(log_store) == {
        f"{prefix}A": "FULFILLED",
        f"{prefix}C": "REFUNDED",
        f"{prefix}E": "ESCALATED",
    }
    assert _results(log_store) == [
        f"{prefix}PC/CANCELLED_ORDER_DEBIT/1/result",
        f"{prefix}A/issue/1/result",
    ]
    assert len(issuer.stats()["issues_by_key"][f"{prefix}A/issue/1"]) == 2
    assert _payouts(psp, [f"{prefix}PC/CANCELLED_ORDER_DEBIT"]) == {
        f"{prefix}PC/CANCELLED_ORDER_DEBIT": UNIT
    }
    lines = [(line["event"], line.get("command_id")) for line in logs if "command" in line["event"]]
    assert lines == [
        ("command_handled", f"{prefix}PC/CANCELLED_ORDER_DEBIT/1"),
        ("command_ignored", f"{prefix}E/OVER_ISSUED"),
        ("command_handled", f"{prefix}A/issue/1"),
    ]
    last_decision = max(r.position for r in log_store.read(kind="decision"))
    assert runner.cursor() == last_decision
    assert log_store.positions()[OUTBOX_POSITION] == last_decision
    assert log_store.verify().ok


def test_a_second_run_answers_nothing(
    log_store: LogStore, http: httpx.Client, issuer: Simulator, psp: Simulator, prefix: str
) -> None:
    """The cursor is durable: a new runner on the same log calls no provider again."""
    _write(log_store, _incident(prefix))
    assert _runner(log_store, http, issuer, psp).drain() == 2
    issues, refunds = issuer.stats()["requests"], psp.stats()["requests"]
    records = log_store.last_position()
    assert _runner(log_store, http, issuer, psp).drain() == 0
    assert (issuer.stats()["requests"], psp.stats()["requests"]) == (issues, refunds)
    assert log_store.last_position() == records


def test_the_commands_the_results_lead_to_are_answered_in_the_same_pass(
    sqlite_store: SQLiteLogStore,
    http: httpx.Client,
    quota_issuer: Simulator,
    psp: Simulator,
    prefix: str,
) -> None:
    """Every attempt refused retryably commands the next; after the last, the refund is paid."""
    log = Log()
    log.tick()
    log.order(f"{prefix}A")
    log.debit(f"{prefix}PA", f"{prefix}A")
    log.tick(SLA_S + 1)
    _write(sqlite_store, log)
    answered = _runner(sqlite_store, http, quota_issuer, psp).drain()
    attempts = RULES.max_issue_attempts
    assert answered == attempts + 1
    assert _results(sqlite_store) == [
        *(f"{prefix}A/issue/{n}/result" for n in range(1, attempts + 1)),
        f"{prefix}PA/PAID_NOT_ISSUED/1/result",
    ]
    assert _statuses(sqlite_store) == {f"{prefix}A": "REFUNDED"}
    assert _payouts(psp, [f"{prefix}PA/PAID_NOT_ISSUED"]) == {f"{prefix}PA/PAID_NOT_ISSUED": UNIT}


# --- crashes, fences, other writers ------------------------------------------------------


def test_a_crash_between_the_call_and_the_append_pays_once_on_rerun(
    log_store: LogStore, http: httpx.Client, issuer: Simulator, psp: Simulator, prefix: str
) -> None:
    """Killed after the PSP paid, before the append: the rerun asks again and is paid once."""
    log = Log()
    log.tick()
    log.order(f"{prefix}C")
    log.debit(f"{prefix}PC", f"{prefix}C")
    log.cancel(f"{prefix}C")
    _write(log_store, log)
    refund_id = f"{prefix}PC/CANCELLED_ORDER_DEBIT"

    def crash(_record: StoredRecord, _dispatched: Dispatched) -> None:
        raise Crash

    first = _runner(log_store, http, issuer, psp, OutboxHooks(after_handle=crash))
    with pytest.raises(Crash):
        first.drain()
    assert _payouts(psp, [refund_id]) == {refund_id: UNIT}
    assert first.cursor() == 0
    assert _results(log_store) == []
    payouts = psp.stats()["payouts"]

    assert _runner(log_store, http, issuer, psp).drain() == 1
    assert psp.stats()["payouts"] == payouts
    assert _payouts(psp, [refund_id]) == {refund_id: UNIT}
    assert psp.stats()["payouts_by_refund"][refund_id] == 1  # asked twice, paid once
    assert _results(log_store) == [f"{refund_id}/1/result"]
    assert _statuses(log_store) == {f"{prefix}C": "REFUNDED"}


def test_a_crash_after_the_append_never_calls_again(
    sqlite_store: SQLiteLogStore,
    http: httpx.Client,
    issuer: Simulator,
    psp: Simulator,
    prefix: str,
) -> None:
    """The result and the cursor commit together: after them, a rerun has nothing to do."""
    _write(sqlite_store, _incident(prefix))

    def crash(_record: StoredRecord, _dispatched: Dispatched) -> None:
        raise Crash

    with pytest.raises(Crash):
        _runner(sqlite_store, http, issuer, psp, OutboxHooks(after_append=crash)).drain()
    assert _results(sqlite_store) == [f"{prefix}PC/CANCELLED_ORDER_DEBIT/1/result"]
    refunds = psp.stats()["requests"]
    assert _runner(sqlite_store, http, issuer, psp).drain() == 1  # the issuance only
    assert psp.stats()["requests"] == refunds
    assert _statuses(sqlite_store)[f"{prefix}C"] == "REFUNDED"


def test_a_runner_overtaken_by_another_is_fenced_and_goes_on_after_it(
    sqlite_store: SQLiteLogStore,
    http: httpx.Client,
    issuer: Simulator,
    psp: Simulator,
    prefix: str,
) -> None:
    """Two runners on one log: the one behind has its append refused, and the result is once."""
    _write(sqlite_store, _incident(prefix))
    other = _runner(sqlite_store, http, issuer, psp)
    overtaken: list[int] = []

    def overtake(_record: StoredRecord, _dispatched: Dispatched) -> None:
        if not overtaken:
            overtaken.append(other.drain())

    slow = _runner(sqlite_store, http, issuer, psp, OutboxHooks(after_handle=overtake))
    with capture_logs() as logs:
        assert slow.drain() == 0
    assert overtaken == [2]
    assert [line["event"] for line in logs].count("outbox_fenced") == 1
    assert _results(sqlite_store) == [
        f"{prefix}PC/CANCELLED_ORDER_DEBIT/1/result",
        f"{prefix}A/issue/1/result",
    ]
    assert _payouts(psp, [f"{prefix}PC/CANCELLED_ORDER_DEBIT"]) == {
        f"{prefix}PC/CANCELLED_ORDER_DEBIT": UNIT
    }


def test_facts_written_by_another_between_passes_are_taken_into_account(
    sqlite_store: SQLiteLogStore,
    http: httpx.Client,
    issuer: Simulator,
    psp: Simulator,
    prefix: str,
) -> None:
    """The log grew under the runner: it rebuilds its shard, and the new order is fulfilled."""
    log = _incident(prefix)
    _write(sqlite_store, log)
    runner = _runner(sqlite_store, http, issuer, psp)
    assert runner.drain() == 2
    log.order(f"{prefix}B")
    log.debit(f"{prefix}PB", f"{prefix}B")
    log.tick(SLA_S + 1)
    _write(sqlite_store, log)  # another engine, as the next offline step would be
    with capture_logs() as logs:
        assert runner.drain() == 1
    assert "outbox_log_moved" in [line["event"] for line in logs]
    assert _statuses(sqlite_store)[f"{prefix}B"] == "FULFILLED"


def test_polling_answers_what_appears_until_stopped(
    sqlite_store: SQLiteLogStore,
    http: httpx.Client,
    issuer: Simulator,
    psp: Simulator,
    prefix: str,
) -> None:
    """`run` drains the outbox, answers commands recorded later, and returns once stopped."""
    log = _incident(prefix)
    _write(sqlite_store, log)
    runner = _runner(sqlite_store, http, issuer, psp)
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, args=(stop,), kwargs={"interval_s": 0.05})
    with capture_logs() as logs:
        thread.start()
        try:
            _wait_for(lambda: len(_results(sqlite_store)) == 2)
            log.order(f"{prefix}B")
            log.debit(f"{prefix}PB", f"{prefix}B")
            log.tick(SLA_S + 1)
            _write(sqlite_store, log)
            _wait_for(lambda: f"{prefix}B/issue/1/result" in _results(sqlite_store))
        finally:
            stop.set()
            thread.join(timeout=30)
    assert not thread.is_alive()
    assert runner.handled == 3
    assert [line["event"] for line in logs][-1] == "outbox_stopped"
    assert _statuses(sqlite_store)[f"{prefix}B"] == "FULFILLED"


# --- the command line --------------------------------------------------------------------


def test_jobs_run_once_answers_the_outbox_of_a_sqlite_file_under_its_rules(
    sqlite_store: SQLiteLogStore,
    tmp_path: Path,
    quota_issuer: Simulator,
    psp: Simulator,
    prefix: str,
) -> None:
    """`jobs run --store FILE --config RULES --once` answers each command by the log's rules.

    The log was written allowing one issuance attempt: the refused attempt is refunded at
    once, with no second attempt. The process logs each command and exits 0.
    """
    log = Log()
    log.tick()
    log.order(f"{prefix}A")
    log.debit(f"{prefix}PA", f"{prefix}A")
    log.tick(SLA_S + 1)
    rules = Rules(max_issue_attempts=1)
    _write(sqlite_store, log, rules)
    config = tmp_path / "rules.toml"
    config.write_text("MAX_ISSUE_ATTEMPTS = 1\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "reconciler",
        "jobs",
        "run",
        f"--store={tmp_path / 'log.sqlite'}",
        f"--config={config}",
        "--once",
        f"--issuer-url={quota_issuer.url}",
        f"--psp-url={psp.url}",
    ]
    done = subprocess.run(command, capture_output=True, check=False, timeout=120)  # noqa: S603 - our module
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stderr.decode().splitlines()]
    handled = [
        (line["command_id"], line["result"]) for line in lines if line["event"] == "command_handled"
    ]
    assert handled == [
        (f"{prefix}A/issue/1", "StampIssuanceFailed"),
        (f"{prefix}PA/PAID_NOT_ISSUED/1", "RefundSucceeded"),
    ]
    assert (lines[-1]["event"], lines[-1]["answered"]) == ("outbox_drained", 2)
    assert _statuses(sqlite_store, rules) == {f"{prefix}A": "REFUNDED"}


def test_jobs_run_polls_the_outbox_until_sigterm(
    sqlite_store: SQLiteLogStore, tmp_path: Path, issuer: Simulator, psp: Simulator, prefix: str
) -> None:
    """`jobs run --store FILE` answers the outbox, keeps polling, and exits 0 on SIGTERM."""
    _write(sqlite_store, _incident(prefix))
    command = [
        sys.executable,
        "-m",
        "reconciler",
        "jobs",
        "run",
        f"--store=sqlite:///{tmp_path / 'log.sqlite'}",
        "--poll-interval=0.1",
        f"--issuer-url={issuer.url}",
        f"--psp-url={psp.url}",
    ]
    stderr = tmp_path / "jobs.log"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(command, stderr=sink)  # noqa: S603 - our module
    try:
        _wait_for(lambda: len(_results(sqlite_store)) == 2)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)
    events = [json.loads(line)["event"] for line in stderr.read_text("utf-8").splitlines()]
    assert returncode == 0, events
    assert events[0] == "outbox_started"
    assert events[-1] == "outbox_stopped"
    assert events.count("command_handled") == 2


# --- issuances whose outcome was unknown -------------------------------------------------


def test_late_stamps_found_by_inquiry_are_appended_into_the_commands_shard(
    log_store: LogStore,
    http: httpx.Client,
    slow_issuer: Simulator,
    psp: Simulator,
    prefix: str,
) -> None:
    """Every issue outlasts the job's timeout: each attempt fails, then its stamps turn up.

    The first failure makes the engine command attempt 2, under a new key, so the issuer
    issues twice. Both late `StampIssued` facts, found by inquiry, are appended into the
    order's shard for their own command ids, and the engine escalates OVER_ISSUED.
    """
    log = Log()
    log.tick()
    log.order(f"{prefix}A")
    log.debit(f"{prefix}PA", f"{prefix}A")
    log.tick(SLA_S + 1)
    _write(log_store, log)
    retrier = Retrier(BackoffPolicy(attempts=1, deadline_s=5.0))
    dispatcher = Dispatcher(
        IssuanceJob(
            IssuerClient(http, slow_issuer.url, timeout_s=0.2), retrier, inquiry_interval_s=0
        ),
        RefundJob(PspClient(http, psp.url, timeout_s=5.0), retrier),
    )
    runner = OutboxRunner(Engine(RULES, log_store), dispatcher)
    with capture_logs() as logs:
        assert runner.drain() == 2
    assert runner.recovered == 2
    assert dispatcher.parked == ()
    keys = [f"{prefix}A/issue/1", f"{prefix}A/issue/2"]
    assert _results(log_store) == [
        f"{keys[0]}/result",
        f"{keys[0]}/late/result",
        f"{keys[1]}/result",
        f"{keys[1]}/late/result",
    ]
    facts = {r.record_id: json.loads(r.payload) for r in log_store.read(kind="fact")}
    issued = slow_issuer.stats()["issues_by_key"]
    for key in keys:
        assert facts[f"{key}/result"]["type"] == "StampIssuanceFailed"
        late = facts[f"{key}/late/result"]
        assert (late["type"], late["command_id"]) == ("StampIssued", key)
        assert late["serial_numbers"] == issued[key]
    assert {r.source for r in log_store.read(kind="fact")} == {SOURCE}
    (order,) = _report(log_store)["orders"]
    assert (order["status"], order["delivered"]) == ("ESCALATED", 2)
    assert "OVER_ISSUED" in order["cases"]
    recovered = [line["command_id"] for line in logs if line["event"] == "issuance_recovered"]
    assert recovered == keys
    assert log_store.verify().ok
