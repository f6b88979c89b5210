"""Helpers for the end-to-end remediation test: the day's outside facts, the jobs, the audit.

The test runs the demo day through every part (Kafka, the `serve` service on
PostgreSQL, the jobs, both HTTP simulators). These helpers feed it the facts only the
outside world can produce, start the jobs as a process, and read the log back as an
auditor would: each partition's facts replayed through a fresh decider, money checked
after every fact, decisions compared with what was recorded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from reconciler.demo.config import DemoConfig
from reconciler.demo.generator import generate_day
from reconciler.domain.accounting import debit_money, order_money, total_money
from reconciler.domain.decider import Decider
from reconciler.domain.decisions import IssuanceCommanded, RefundCommanded
from reconciler.domain.events import (
    ClockTicked,
    OrderCancelled,
    OrderPlaced,
    PaymentDebited,
    StampIssuanceFailed,
    StampIssued,
)
from reconciler.domain.rules import Rules
from reconciler.domain.state import RefundStatus, State
from reconciler.ingest.validation import Rejected, parse_record
from reconciler.jobs.handlers import result_event_id
from reconciler.kafka_io import producer_config
from reconciler.kafka_io._kafka import KafkaProducer
from tests.service_support import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

    from reconciler.domain.accounting import Money
    from reconciler.domain.events import Fact
    from reconciler.store import LogStore

# Deadlines of seconds, so that the live ticker (one tick a second) brings every one of
# them due within the test. The attempt timeout leaves room for the jobs' own retries
# (see `JobsProcessSettings`) behind a queue of commands.
E2E_RULES = Rules(
    issue_sla=timedelta(seconds=2),
    issue_attempt_timeout=timedelta(seconds=10),
    max_issue_attempts=3,
    orphan_window=timedelta(seconds=4),
    payment_grace=timedelta(seconds=4),
    refund_retry_interval=timedelta(seconds=2),
    max_refund_attempts=5,
    # The flood guard on, tight enough that every partition floods: its held refunds
    # wait for the operator (the test approves each incident it sees open) or for the
    # issuer's next delivery.
    refund_flood_limit=3,
    refund_flood_window=timedelta(seconds=600),
)

# The outside world's facts: what the portal, the buyers and the payment provider's
# callbacks and settlement files report. Not ticks, and not the answers to the engine's
# commands: in this test the real jobs and the real simulators give those.
OUTSIDE_TYPES: tuple[type[Fact], ...] = (
    OrderPlaced,
    OrderCancelled,
    PaymentDebited,
    StampIssued,
    StampIssuanceFailed,
)


def rules_environment(rules: Rules) -> dict[str, str]:
    """The `RECONCILER_<NAME>` variables that give a process the rules set in `rules`.

    Only the settings given when `rules` was made: the others keep their defaults.
    """
    values: dict[str, str] = {}
    for name, value in rules.model_dump(exclude_unset=True).items():
        seconds = value.total_seconds() if isinstance(value, timedelta) else value
        values[f"RECONCILER_{name.upper()}"] = (
            f"{seconds:g}" if isinstance(seconds, float) else str(seconds)
        )
    return values


# -- the day's outside facts -------------------------------------------------------------


@dataclass(frozen=True)
class Outside:
    """One outside fact as a producer sends it: when (seconds into the feed), key, value."""

    offset_s: float
    event_id: str
    key: bytes | None
    value: bytes


def troubled_day(orders: int, seed: int) -> DemoConfig:
    """A demo day with more of what goes wrong than a real one.

    So that a few hundred orders meet every rule: wrong amounts, orphan debits, orders
    arriving after their debit, double debits, late payments, stamps delivered unpaid,
    serials delivered twice.
    """
    return DemoConfig(
        orders=orders,
        seed=seed,
        amount_mismatch_rate=0.03,
        orphan_debit_rate=0.03,
        order_event_late_rate=0.03,
        double_debit_rate=0.05,
        late_payment_rate=0.03,
        delivered_unpaid_rate=0.01,
        duplicate_serial_rate=0.01,
    )


def outside_facts(config: DemoConfig, seconds_per_demo_hour: float) -> list[Outside]:
    """The demo day's outside facts in arrival order, its hours squeezed into seconds.

    Each is keyed as producers key it: by order, or by payment when it names no order.
    """
    arrivals = generate_day(config).arrivals
    if not arrivals:
        return []
    first = arrivals[0].arrives_at
    facts: list[Outside] = []
    for arrival in arrivals:
        fact = arrival.fact
        if not isinstance(fact, OUTSIDE_TYPES):  # pragma: no cover - the generator's types
            msg = f"the demo generator made a {fact.type}, not an outside fact"
            raise TypeError(msg)
        if getattr(fact, "command_id", None) is not None:  # pragma: no cover - idem
            msg = f"{fact.event_id} answers a command; the jobs must give it here"
            raise TypeError(msg)
        key = getattr(fact, "order_id", None) or getattr(fact, "payment_id", None)
        hours = (arrival.arrives_at - first).total_seconds() / 3600
        facts.append(
            Outside(
                hours * seconds_per_demo_hour,
                fact.event_id,
                key.encode() if isinstance(key, str) else None,
                fact.model_dump_json().encode(),
            )
        )
    return facts


def feed(bootstrap: str, topic: str, facts: Sequence[Outside], wave_s: float) -> int:
    """Produce the facts in waves of `wave_s` seconds, each at its time; how many were sent.

    The default partitioner puts each key where `reconciler.kafka_io.partition_for`
    says, as producers' clients do.
    """
    producer = KafkaProducer(**producer_config(bootstrap))
    sent = 0
    try:
        started = time.monotonic()
        pending = list(facts)
        while pending:
            horizon = time.monotonic() - started + wave_s
            wave = [fact for fact in pending if fact.offset_s < horizon]
            pending = pending[len(wave) :]
            futures = [producer.send(topic, key=fact.key, value=fact.value) for fact in wave]
            producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)
            sent += len(futures)
            if pending:
                # Pacing the feed, not asserting anything: the next wave is due then.
                time.sleep(max(0.0, started + pending[0].offset_s - time.monotonic()))
    finally:
        producer.close()
    return sent


# -- the jobs as a process ---------------------------------------------------------------


@dataclass(frozen=True)
class JobsProcessSettings:
    """Where the jobs read and write and whom they call, with patience for a test.

    A call times out sooner than a slow answer comes (1.5 s in the test), so the job
    asks again with the same key. Its retries span more than a second's 5xx burst after
    such a timeout: a job that gave up on an answer the provider had already decided
    would report a failure for stamps that were in fact issued.
    """

    bootstrap: str
    commands_topic: str
    input_topic: str
    issuer_url: str
    psp_url: str
    group: str
    timeout_s: float = 1.0
    attempts: int = 6
    deadline_s: float = 6.0
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 1.0


def jobs_process(settings: JobsProcessSettings, log_path: Path) -> subprocess.Popen[bytes]:
    """Start `reconciler jobs run` with these settings in its `RECONCILER_JOBS_*` variables."""
    env = dict(os.environ)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "RECONCILER_JOBS_BOOTSTRAP": settings.bootstrap,
            "RECONCILER_JOBS_COMMANDS_TOPIC": settings.commands_topic,
            "RECONCILER_JOBS_INPUT_TOPIC": settings.input_topic,
            "RECONCILER_JOBS_ISSUER_URL": settings.issuer_url,
            "RECONCILER_JOBS_PSP_URL": settings.psp_url,
            "RECONCILER_JOBS_GROUP": settings.group,
            "RECONCILER_JOBS_TIMEOUT": str(settings.timeout_s),
            "RECONCILER_JOBS_ATTEMPTS": str(settings.attempts),
            "RECONCILER_JOBS_DEADLINE": str(settings.deadline_s),
            "RECONCILER_JOBS_BACKOFF_BASE": str(settings.backoff_base_s),
            "RECONCILER_JOBS_BACKOFF_CAP": str(settings.backoff_cap_s),
        }
    )
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "reconciler", "jobs", "run"], env=env, stdout=log, stderr=log
        )


def ensure_running(processes: Mapping[Path, subprocess.Popen[bytes]]) -> None:
    """Fail at once, with the end of its log, if a process has exited."""
    for log_path, process in processes.items():
        if process.poll() is not None:
            tail = log_path.read_text("utf-8", errors="replace")[-2000:]
            msg = f"{log_path.name}: exited with status {process.returncode}:\n{tail}"
            raise AssertionError(msg)


# -- the log, read back as an auditor does -----------------------------------------------


@dataclass(frozen=True)
class Logged:
    """One record of the log: fact or decision, its id, type and payload."""

    kind: str
    record_id: str
    type: str
    payload: bytes


def logged_sources(store: LogStore) -> set[str]:
    """The sources whose input position the log holds (none while its tables are missing)."""
    try:
        return set(store.positions())
    except Exception:  # noqa: BLE001 - the service creates the tables as it starts
        return set()


def read_log(store: LogStore) -> dict[str, list[Logged]]:
    """Every record of the log, source by source, each source's records in log order."""
    by_source: dict[str, list[Logged]] = {}
    for record in store.read():
        by_source.setdefault(record.source, []).append(
            Logged(record.kind, record.record_id, record.type, record.payload)
        )
    return by_source


@dataclass
class Replay:
    """One partition's facts through a fresh decider, checked after every fact."""

    source: str
    state: State
    recorded: list[bytes] = field(default_factory=list)
    derived: list[bytes] = field(default_factory=list)
    fact_ids: set[str] = field(default_factory=set)
    ticks: int = 0
    unbalanced: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def replay(
    source: str, records: Sequence[Logged], rules: Rules, *, check_money: bool = True
) -> Replay:
    """Replay a source's facts; with `check_money`, note every moment money is not conserved.

    After every fact (every `ClockTicked` among them), the total of the partition and
    each of its orders must balance: debited = kept + refunded + refund_pending +
    at_risk, with no figure negative (SPEC rule 11).
    """
    decider = Decider(rules, State())
    result = Replay(source, decider.state)
    for record in records:
        if record.kind == "decision":
            result.recorded.append(record.payload)
            continue
        fact = parse_record(record.payload)
        if isinstance(fact, Rejected):
            result.unbalanced.append(f"{record.record_id}: logged fact invalid: {fact.reason}")
            continue
        result.fact_ids.add(fact.event_id)
        for decision in decider.decide(fact):
            result.derived.append(decision.model_dump_json().encode())
            if isinstance(decision, IssuanceCommanded | RefundCommanded):
                result.commands.append(decision.command_id)
        if isinstance(fact, ClockTicked):
            result.ticks += 1
        if check_money:
            clock = decider.state.clock
            when = f"{fact.event_id} (clock {clock.isoformat() if clock else None})"
            result.unbalanced.extend(_unbalanced(decider.state, when))
    return result


def _unbalanced(state: State, when: str) -> Iterator[str]:
    total = total_money(state)
    if not total.balanced:
        yield f"at {when}: total {total}"
    for order in state.orders.values():
        money = order_money(order)
        if not money.balanced:
            yield f"at {when}: order {order.order_id} {money}"


def replay_all(
    log: Mapping[str, Sequence[Logged]], rules: Rules, *, check_money: bool = True
) -> dict[str, Replay]:
    """Every source of the log replayed (the relay's and others without facts are skipped)."""
    return {
        source: replay(source, records, rules, check_money=check_money)
        for source, records in log.items()
        if any(record.kind == "fact" for record in records)
    }


def unsettled(replays: Mapping[str, Replay], expected_ids: set[str]) -> list[str]:
    """Why the engine is not quiet yet; empty once it is.

    Quiet: every outside fact is logged, every command has its result logged, and no
    partition has a deadline still to fall due, an issuance attempt open, a refund
    pending or a fact waiting for the first tick. Then only ticks can come, and they
    change nothing.
    """
    reasons: list[str] = []
    logged = set().union(*(r.fact_ids for r in replays.values())) if replays else set()
    if missing := len(expected_ids - logged):
        reasons.append(f"{missing} outside facts not logged yet")
    for source, result in sorted(replays.items()):
        state = result.state
        unanswered = [c for c in result.commands if result_event_id(c) not in result.fact_ids]
        open_attempts = sum(1 for o in state.orders.values() if o.open_attempt is not None)
        pending = sum(1 for r in state.refunds.values() if r.pending)
        waiting = len(state.before_first_tick) + sum(map(len, state.orphans.values()))
        flood = state.incident is not None
        if unanswered or state.timers or open_attempts or pending or waiting or flood:
            reasons.append(
                f"{source}: {len(unanswered)} commands unanswered, {len(state.timers)} timers,"
                f" {open_attempts} attempts open, {pending} refunds pending, {waiting} waiting,"
                f" refund-flood incident open: {flood}"
            )
    return reasons


# -- where the money ended ---------------------------------------------------------------


@dataclass(frozen=True)
class AtRisk:
    """A debit with money at risk, and whether an open escalation covers it."""

    source: str
    payment_id: str
    order_id: str | None
    amount: int
    escalations: tuple[str, ...]


def money_at_risk(replays: Mapping[str, Replay]) -> list[AtRisk]:
    """Every debit whose money is neither kept, refunded nor on its way back.

    An escalation covers it when it is open on the debit's order, or names the payment
    itself as its subject (a refund that failed for good on an orphan debit).
    """
    found: list[AtRisk] = []
    for source, result in replays.items():
        state = result.state
        for debit in state.payments.values():
            order = None
            if not debit.orphan and debit.order_id is not None:
                order = state.orders.get(debit.order_id)
            money = debit_money(debit, order)
            if money.at_risk == 0:
                continue
            covering = [e for e in state.open_escalations if e.startswith(f"{debit.payment_id}/")]
            if debit.refund is not None and debit.refund.escalation in state.open_escalations:
                covering.append(debit.refund.escalation)  # a held or rejected refund's case
            if order is not None:
                covering.extend(order.escalations)
            found.append(
                AtRisk(
                    source,
                    debit.payment_id,
                    debit.order_id,
                    money.at_risk,
                    tuple(sorted(set(covering))),
                )
            )
    return found


def totals(replays: Mapping[str, Replay]) -> Money:
    """The money of every partition together."""
    figures = [total_money(result.state) for result in replays.values()]
    return sum(figures[1:], figures[0]) if figures else total_money(State())


def refunds_paid(replays: Mapping[str, Replay]) -> dict[str, int]:
    """What the engine holds as refunded, by refund id."""
    return {
        refund.refund_id: refund.refunded
        for result in replays.values()
        for refund in result.state.refunds.values()
        if refund.status is RefundStatus.SUCCEEDED
    }


def escalation_reasons(replays: Mapping[str, Replay]) -> Counter[str]:
    """How many escalations of each reason the engine opened."""
    return Counter(
        escalation.rsplit("/", 1)[1]
        for result in replays.values()
        for escalation in result.state.escalated
    )


def issued_serials(log: Mapping[str, Sequence[Logged]]) -> dict[str, list[str]]:
    """The serial numbers of every logged `StampIssued` that answers a command, by command."""
    answered: dict[str, list[str]] = {}
    for records in log.values():
        for record in records:
            if record.kind != "fact" or record.type != "StampIssued":
                continue
            fact = parse_record(record.payload)
            if isinstance(fact, StampIssued) and fact.command_id is not None:
                answered.setdefault(fact.command_id, []).extend(fact.serial_numbers)
    return answered


# -- the operator ------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorDesk:
    """What the operator's command line needs: where the log is, the rules, and Kafka."""

    store_url: str
    schema: str
    bootstrap: str
    rules: Rules
    log_path: Path


def approve_open_incidents(
    replays: Mapping[str, Replay], approved: set[str], desk: OperatorDesk
) -> None:
    """Approve, as an operator would, each refund-flood incident seen open for the first time.

    Runs `reconciler operator approve` as its own process. The issuer's recovery may have
    closed the incident in the meantime: the command then says there is no open
    escalation by that id, which is fine.
    """
    env = dict(os.environ) | rules_environment(desk.rules)
    for result in replays.values():
        incident = result.state.incident
        if incident is None or incident.incident_id in approved:
            continue
        approved.add(incident.incident_id)
        command = [
            *(sys.executable, "-m", "reconciler", "operator", "approve", incident.incident_id),
            *("--operator", "e2e-operator", "--note", "systemic issuer trouble confirmed"),
            *("--store", desk.store_url, "--schema", desk.schema),
            *("--kafka-bootstrap", desk.bootstrap),
        ]
        done = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)  # noqa: S603 - our own CLI
        with desk.log_path.open("ab") as log:
            log.write(done.stdout + done.stderr)
        closed_meanwhile = b"no open escalation" in done.stderr + done.stdout
        if done.returncode != 0 and not closed_meanwhile:
            msg = f"operator approve {incident.incident_id} failed: {done.stderr.decode()}"
            raise AssertionError(msg)


def wait_quiet(  # noqa: PLR0913 - everything the wait watches
    store: LogStore,
    outside_ids: set[str],
    issued_keys: Callable[[], Iterable[str]],
    desk: OperatorDesk,
    *,
    timeout: float,
    each_poll: Callable[[], object],
    logs: Path,
) -> set[str]:
    """Wait until the engine is quiet, replaying the log at most once a second.

    Meanwhile the operator approves every refund-flood incident it sees open, and quiet
    also means that every stamp the issuer issued (`issued_keys`: its idempotency keys)
    has been reported to the engine. `each_poll` runs at every poll, first (to check on
    the processes). Returns the incidents approved; on timeout, fails saying why the
    engine is not quiet and where the logs are.
    """
    approved: set[str] = set()
    reasons = ["not checked yet"]
    last_check = 0.0

    def quiet() -> bool:
        nonlocal reasons, last_check
        each_poll()
        if time.monotonic() - last_check < 1.0:
            return False
        last_check = time.monotonic()
        log = read_log(store)
        replays = replay_all(log, desk.rules, check_money=False)
        approve_open_incidents(replays, approved, desk)
        reasons = unsettled(replays, outside_ids)
        unreported = set(issued_keys()) - set(issued_serials(log))
        if unreported:
            reasons.append(f"{len(unreported)} issuer keys not reported to the engine yet")
        return not reasons

    try:
        wait_until(quiet, timeout, "the engine to settle")
    except AssertionError as error:
        msg = f"{error}: {'; '.join(reasons[:8])} (logs in {logs})"
        raise AssertionError(msg) from error
    return approved
