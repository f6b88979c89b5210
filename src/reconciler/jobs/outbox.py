"""The jobs on the embedded default: the log's commands in, result facts back into the log.

In production the relay publishes the engine's commands to the commands topic and the
jobs consume it (`runner`). Where there is no Kafka (a SQLite log written by `demo` or
`reconcile --store`), the decisions in the log are the outbox, and the jobs read it
directly. After a cursor kept in the log itself (the position `jobs:outbox`), in log
order and by pages, the runner:

1. decodes each decision; those that carry no command, and `Escalate` commands (they go
   to people), are passed over, with one log line per command;
2. hands each `IssueStamps` and `RefundPayment` to the `Dispatcher` (the provider calls,
   with their retries; the command's deterministic id is the idempotency key);
3. appends the result fact (event_id `<command_id>/result`) through the `Engine`, into
   the shard of the decision's source, which it first rebuilds from the log, and stores
   the cursor past the command in the same transaction.

A runner killed between 2 and 3 asks the provider again after its restart and gets the
first answer (nothing is issued or paid twice); one killed after 3 never asks again. The
engine reacts to each result as it would to any fact: stamps make the order fulfilled,
a retryable failure commands the next attempt, which the runner reaches later in the
same pass, since it lies further on in the log. Every transaction is fenced on the
cursor: of two runners on one log, the one that falls behind has its append refused,
and goes on from where the other got to.

The engine's deciders hold state in memory, so the runner must be the only writer of
the log while it runs (the embedded store has one writer by design; next to `serve`,
use the commands topic). If the log grows under it anyway, say the next `reconcile`
step appended between two polls, it rebuilds its shards before answering into them.
Nothing here moves the clock: commands that fall due with time (a refund retried after
`REFUND_RETRY_INTERVAL`) appear only once something appends the ticks.

An issue command whose outcome stayed unknown (see `handlers`) is answered like any
other, with a retryable failure, and the runner remembers the shard of its decision.
At the start of every poll it asks the dispatcher to `recover` such commands: each late
`StampIssued` found is appended through the engine into that same shard (fenced on the
cursor, which stays where it is), and acknowledged once it is in the log. The decisions
it leads to (an OVER_ISSUED or DOUBLE_REMEDY escalation) lie after the cursor, and the
same poll passes over them. Parked commands, and which shard each belongs to, live in
this process's memory: `drain` (`jobs run --once`) returns once the outbox is empty,
whatever is still parked, and says so (`issuance_still_parked`); `run` says so when it
stops (`issuance_parked_forgotten`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.domain.decisions import DECISION_MODELS
from reconciler.engine import StaleBatchError
from reconciler.ingest.source import InputRecord
from reconciler.jobs.handlers import InvalidCommandError

if TYPE_CHECKING:
    import threading
    from collections import Counter
    from collections.abc import Callable

    from reconciler.engine import Engine
    from reconciler.jobs.handlers import Dispatched, Dispatcher
    from reconciler.store import StoredRecord

log = structlog.get_logger("reconciler.jobs")

OUTBOX_POSITION = "jobs:outbox"
PAGE_SIZE = 100
POLL_INTERVAL_S = 1.0
_FAILURE_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class UnknownDecisionError(Exception):
    """A decision type these jobs do not know: it may carry a command, so it is not skipped."""


@dataclass(frozen=True)
class OutboxHooks:
    """Test seams: called after the provider call (before the append) and after the commit.

    A hook that raises stops the runner right there, as a crash would: nothing after it
    happens; raised from `after_handle`, the cursor has not moved.
    """

    after_handle: Callable[[StoredRecord, Dispatched], None] | None = None
    after_append: Callable[[StoredRecord, Dispatched], None] | None = None


class OutboxRunner:
    """Answers the commands in the log after its cursor, one transaction per result."""

    def __init__(  # noqa: PLR0913 - the loop's collaborators and knobs, each injectable
        self,
        engine: Engine,
        dispatcher: Dispatcher,
        *,
        cursor: str = OUTBOX_POSITION,
        page_size: int = PAGE_SIZE,
        hooks: OutboxHooks | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read `engine`'s log after the position named `cursor`; answer through `dispatcher`.

        `engine` must hold the rules the log was written with. Any write to the log but
        the runner's own (through this engine or another) makes it rebuild the shards.
        """
        if page_size < 1:
            msg = f"page_size must be at least 1, got {page_size}"
            raise ValueError(msg)
        self._engine = engine
        self._store = engine.store
        self._dispatcher = dispatcher
        self._cursor = cursor
        self._page_size = page_size
        self._hooks = hooks or OutboxHooks()
        self._monotonic = monotonic
        self._rebuilt: set[str] = set()
        self._head: int | None = None  # the log's last position as this runner left it
        self._failures = 0
        # Parked issue commands: command id -> the source and position of its decision.
        self._parked: dict[str, tuple[str, int]] = {}
        self.handled = 0
        self.recovered = 0

    @property
    def counts(self) -> Counter[str]:
        """The dispatcher's counts of commands answered and ignored, by type and result."""
        return self._dispatcher.counts

    def cursor(self) -> int:
        """The log position of the last decision passed over (0: none yet)."""
        return self._store.positions().get(self._cursor, 0)

    def poll_once(self, stop: threading.Event | None = None) -> int:
        """Go through one page of decisions after the cursor; how many were read.

        First appends the late results `recover` finds, if any. 0 means the outbox is
        empty. Stops between two commands once `stop` is set.
        Raises what the store or an unexpected failure raised; the cursor then stays
        before the command at fault, so it is tried again.
        """
        self.recover()
        committed = self.cursor()
        records = list(self._store.read(after=committed, limit=self._page_size, kind="decision"))
        passed = committed
        try:
            for record in records:
                if stop is not None and stop.is_set():
                    break
                command = _command_of(record)
                if command is not None and self._answer(record, command, committed):
                    committed = record.position
                passed = record.position
            if passed > committed:  # decisions without a result to append: move on past them
                self._engine.process([], {self._cursor: passed}, {self._cursor: committed})
        except StaleBatchError:
            log.warning("outbox_fenced", cursor=self._cursor, at=committed)
            self._rebuilt.clear()
        return len(records)

    def drain(self, stop: threading.Event | None = None) -> int:
        """Answer every command in the log, the ones the answers lead to included.

        Returns the number of commands answered by this call; raises as `poll_once`.
        """
        before = self.handled
        while not (stop is not None and stop.is_set()) and self.poll_once(stop):
            pass
        if self._dispatcher.parked:
            # Answered, but not settled: a process that stops now forgets these.
            log.warning("issuance_still_parked", command_ids=list(self._dispatcher.parked))
        return self.handled - before

    def run(self, stop: threading.Event, *, interval_s: float = POLL_INTERVAL_S) -> None:
        """Drain, then poll every `interval_s` until `stop` is set; back off on failures."""
        log.info("outbox_started", cursor=self._cursor, at=self.cursor())
        try:
            while not stop.is_set():
                try:
                    read = self.poll_once(stop)
                except Exception:
                    log.exception("outbox_poll_failed", cursor=self._cursor)
                    self._failures += 1
                    step = min(self._failures, len(_FAILURE_BACKOFF_S)) - 1
                    stop.wait(_FAILURE_BACKOFF_S[step])
                    continue
                self._failures = 0
                if not read:
                    stop.wait(interval_s)
        finally:
            log.info(
                "outbox_stopped",
                handled=self.handled,
                recovered=self.recovered,
                counts=dict(self.counts),
            )
            if self._dispatcher.parked:
                log.warning("issuance_parked_forgotten", command_ids=list(self._dispatcher.parked))

    def _answer(self, record: StoredRecord, command: dict[str, Any], committed: int) -> bool:
        """Dispatch one command; True if its result was appended with the cursor past it."""
        started = self._monotonic()
        where = {"position": record.position, "source": record.source}
        try:
            dispatched = self._dispatcher.dispatch(command)
        except InvalidCommandError as error:
            log.error("command_invalid", reason=str(error), **where)  # noqa: TRY400 - expected
            return False
        fact = dispatched.fact
        if fact is None:
            log.info(
                "command_ignored",
                command_id=dispatched.command_id,
                type=dispatched.command_type,
                **where,
            )
            return False
        if dispatched.parked and dispatched.command_id is not None:
            self._parked[dispatched.command_id] = (record.source, record.position)
        if self._hooks.after_handle is not None:
            self._hooks.after_handle(record, dispatched)
        self._ensure_shard(record.source)
        outcome = self._engine.process(
            [InputRecord.from_fact(record.source, record.position, fact)],
            positions={self._cursor: record.position},
            expected={self._cursor: committed},
        )
        self._head = self._store.last_position()
        self.handled += 1
        if self._hooks.after_append is not None:
            self._hooks.after_append(record, dispatched)
        log.info(
            "command_handled",
            **dispatched.log_fields(),
            duplicate=outcome.duplicates > 0,
            decisions=[decision.type for decision in outcome.decisions],
            ms=round((self._monotonic() - started) * 1000),
            **where,
        )
        return True

    def recover(self) -> int:
        """Append the late results of issuances whose outcome was unknown; how many.

        Each goes into the shard of its command's decision, fenced on the cursor (which
        it leaves where it is). One that could not be appended stays with the
        dispatcher, offered again on a later call. Never raises: a failure is logged.
        """
        try:
            found = self._dispatcher.recover()
        except Exception:
            log.exception("issuance_recovery_failed")
            return 0
        appended = 0
        for dispatched in found:
            command_id = dispatched.command_id
            if command_id is None or command_id not in self._parked:
                # Parked by another caller of the dispatcher: no shard to answer into.
                log.error("issuance_recovery_unrouted", command_id=command_id)
                continue
            where = self._parked[command_id]
            try:
                duplicate = self._append_late(dispatched, *where)
            except Exception:
                log.exception("issuance_recovery_retry_later", command_id=command_id)
                continue
            self._dispatcher.acknowledge(dispatched)
            del self._parked[command_id]
            appended += 1
            fact = dispatched.fact
            log.info(
                "issuance_recovered",
                command_id=command_id,
                order_id=dispatched.key,
                event_id=fact.event_id if fact is not None else None,
                serials=len(getattr(fact, "serial_numbers", ())),
                inquiries=dispatched.attempts,
                duplicate=duplicate,
                source=where[0],
            )
        # Let go of what the dispatcher let go of (refused, or never settled).
        for command_id in [c for c in self._parked if not self._dispatcher.is_parked(c)]:
            del self._parked[command_id]
        self.recovered += appended
        return appended

    def _append_late(self, dispatched: Dispatched, source: str, position: int) -> bool:
        """Append a late fact into `source`, fenced on the cursor; True if already there."""
        fact = dispatched.fact
        assert fact is not None  # noqa: S101 - recover gives facts
        committed = self.cursor()
        self._ensure_shard(source)
        try:
            outcome = self._engine.process(
                [InputRecord.from_fact(source, position, fact)],
                positions={self._cursor: committed},
                expected={self._cursor: committed},
            )
        except StaleBatchError:
            self._rebuilt.clear()
            raise
        self._head = self._store.last_position()
        return outcome.duplicates > 0

    def _ensure_shard(self, source: str) -> None:
        """Rebuild `source`'s decider from the log unless it is known to be current."""
        head = self._store.last_position()
        if self._head is not None and head != self._head:
            log.info("outbox_log_moved", expected=self._head, found=head)
            self._rebuilt.clear()
        self._head = head
        if source in self._rebuilt and source in self._engine.sources():
            return
        started = self._monotonic()
        facts = self._engine.restore(source)
        self._rebuilt.add(source)
        ms = round((self._monotonic() - started) * 1000)
        log.info("outbox_shard_rebuilt", source=source, facts=facts, ms=ms)


def _command_of(record: StoredRecord) -> dict[str, Any] | None:
    """The command a decision carries, None if it carries none."""
    model = DECISION_MODELS.get(record.type)
    if model is None:
        msg = f"decision {record.record_id!r} at {record.position} has unknown type {record.type!r}"
        raise UnknownDecisionError(msg)
    return model.model_validate_json(record.payload).command()
