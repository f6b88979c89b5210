from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.demo import DemoConfig, DemoRun, run_day, write_jsonl
from reconciler.demo.driver import EarlyAnswerError
from reconciler.demo.facts import Arrival
from reconciler.domain.events import (
    FACT_MODELS,
    ClockTicked,
    OrderPlaced,
    PaymentDebited,
    RefundSucceeded,
    StampIssued,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from reconciler.domain.events import Fact

SMALL = DemoConfig(
    orders=300,
    seed=42,
    tick_seconds=5,
    batch_seconds=30,
    orphan_debit_rate=0.03,
    double_debit_rate=0.05,
)
ISSUE_SLA = timedelta(minutes=5)
LAG = timedelta(seconds=45)


class FakeEngine:
    """Just enough of an engine to give the jobs real work.

    Five minutes after an order's first debit without stamps it commands issuance; it
    refunds orphan debits and second debits on an order, and escalates each orphan.
    """

    def __init__(self) -> None:
        """Start knowing nothing, before the first tick."""
        self.clock: datetime | None = None
        self.quantities: dict[str, int] = {}
        self.paid_by: dict[str, str] = {}
        self.due: dict[str, datetime] = {}
        self.delivered: set[str] = set()

    def __call__(self, batch: Sequence[Fact]) -> list[dict[str, Any]]:
        """Take a batch of facts; return the commands they lead to."""
        commands: list[dict[str, Any]] = []
        for fact in batch:
            if isinstance(fact, ClockTicked):
                self.clock = fact.at
                commands += self._issue_overdue()
            elif isinstance(fact, OrderPlaced):
                self.quantities[fact.order_id] = fact.quantity
            elif isinstance(fact, PaymentDebited):
                commands += self._debit(fact)
            elif isinstance(fact, StampIssued):
                self.delivered.add(fact.order_id)
        return commands

    def _now(self) -> datetime:
        assert self.clock is not None
        return self.clock

    def _issue_overdue(self) -> list[dict[str, Any]]:
        overdue = [order_id for order_id, due in self.due.items() if due <= self._now()]
        commands = []
        for order_id in overdue:
            del self.due[order_id]
            if order_id in self.delivered or order_id not in self.quantities:
                continue
            commands.append(
                {
                    "command_id": f"{order_id}/issue/1",
                    "type": "IssueStamps",
                    "order_id": order_id,
                    "quantity": self.quantities[order_id],
                    "attempt": 1,
                }
            )
        return commands

    def _debit(self, fact: PaymentDebited) -> list[dict[str, Any]]:
        if fact.order_id is None:
            escalate = {
                "command_id": f"{fact.payment_id}/ORPHAN",
                "type": "Escalate",
                "reason": "ORPHAN",
            }
            return [*self._refund(fact, "ORPHAN_DEBIT"), escalate]
        first = self.paid_by.setdefault(fact.order_id, fact.payment_id)
        if first == fact.payment_id:
            self.due.setdefault(fact.order_id, self._now() + ISSUE_SLA)
            return []
        return self._refund(fact, "DUPLICATE_DEBIT")

    def _refund(self, fact: PaymentDebited, reason: str) -> list[dict[str, Any]]:
        refund_id = f"{fact.payment_id}/{reason}"
        return [
            {
                "command_id": f"{refund_id}/1",
                "type": "RefundPayment",
                "refund_id": refund_id,
                "order_id": fact.order_id,
                "payment_id": fact.payment_id,
                "amount": fact.amount,
                "reason": reason,
                "attempt": 1,
            }
        ]


class FakeJobs:
    """Jobs that deliver every stamp and pay every refund, `lag` after the command.

    A command id is answered once (a repeat gets nothing), and escalations never.
    """

    def __init__(self, lag: timedelta = LAG) -> None:
        """Answer `lag` after each batch's end."""
        self.lag = lag
        self.taken: list[tuple[Mapping[str, Any], datetime]] = []
        self.answered: dict[str, Fact] = {}

    def submit(
        self, commands: Sequence[Mapping[str, Any]], at: datetime
    ) -> Callable[[], list[Arrival]]:
        """Answer the batch's commands at once; the driver collects them when it must."""
        answers = []
        for command in commands:
            self.taken.append((command, at))
            command_id = command["command_id"]
            fact = self._answer(command, at + self.lag)
            if fact is not None and command_id not in self.answered:
                self.answered[command_id] = fact
                answers.append(Arrival(at + self.lag, fact))
        return lambda: answers

    @staticmethod
    def _answer(command: Mapping[str, Any], when: datetime) -> Fact | None:
        command_id = command["command_id"]
        if command["type"] == "IssueStamps":
            serials = tuple(f"SIM-{command_id}-{n}" for n in range(command["quantity"]))
            return StampIssued(
                event_id=f"{command_id}/result",
                version=1,
                occurred_at=when,
                order_id=command["order_id"],
                serial_numbers=serials,
                command_id=command_id,
            )
        if command["type"] == "RefundPayment":
            return RefundSucceeded(
                event_id=f"{command_id}/result",
                version=1,
                occurred_at=when,
                refund_id=command["refund_id"],
                payment_id=command["payment_id"],
                amount=command["amount"],
                psp_refund_ref=f"REF-{command_id}",
            )
        return None


@pytest.fixture(scope="module")
def jobs_and_run() -> tuple[FakeJobs, DemoRun]:
    """One small day through the fake engine and jobs, shared by the tests that only read it."""
    jobs = FakeJobs()
    return jobs, run_day(SMALL, FakeEngine(), jobs)


@pytest.fixture(scope="module")
def run(jobs_and_run: tuple[FakeJobs, DemoRun]) -> DemoRun:
    """The shared day's run."""
    return jobs_and_run[1]


def test_same_seed_gives_identical_jsonl(run: DemoRun, tmp_path: Path) -> None:
    """Two runs of one seed and engine write byte-identical files; another seed does not."""
    again = run_day(SMALL, FakeEngine(), FakeJobs())
    other_config = DemoConfig(orders=300, seed=43, tick_seconds=5, batch_seconds=30)
    other = run_day(other_config, FakeEngine(), FakeJobs())
    paths = [tmp_path / "a" / "day.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"]
    for result, path in zip((run, again, other), paths, strict=True):
        assert write_jsonl(result.facts, path) == len(result.facts)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_every_line_is_a_valid_event(run: DemoRun) -> None:
    """Every JSONL line validates against the SPEC event model of its type and version."""
    for line in run.lines():
        shape = json.loads(line)
        model = FACT_MODELS[shape["type"], shape["version"]]
        assert model.model_validate_json(line).model_dump_json() == line


def test_ticks_are_regular_and_event_ids_unique(run: DemoRun) -> None:
    """The log opens with a tick, ticks advance one tick_seconds at a time, ids never repeat."""
    assert isinstance(run.facts[0], ClockTicked)
    ticks = [fact.at for fact in run.facts if isinstance(fact, ClockTicked)]
    steps = {later - earlier for earlier, later in pairwise(ticks)}
    assert steps == {timedelta(seconds=SMALL.tick_seconds)}
    assert ticks[0] == SMALL.opening
    ids = [fact.event_id for fact in run.facts]
    assert len(ids) == len(set(ids))


def test_facts_arrive_before_the_next_tick(run: DemoRun) -> None:
    """A fact that happened at the source is never fed before the tick preceding it."""
    clock = None
    for fact in run.facts:
        if isinstance(fact, ClockTicked):
            clock = fact.at
        else:
            assert clock is not None
            # Debits are reported late (webhook, inquiry, settlement file), never early.
            assert fact.occurred_at < clock + timedelta(seconds=SMALL.tick_seconds)


def test_the_day_closes_quiet_with_every_answer_in(run: DemoRun) -> None:
    """The run goes on a quiet period past the last fact, with no answer left undelivered."""
    assert run.unanswered == 0
    last_tick_before_last_fact = None
    for fact in run.facts:
        if isinstance(fact, ClockTicked):
            tick = fact.at
        else:
            last_tick_before_last_fact = tick
    assert last_tick_before_last_fact is not None
    assert run.closed_at >= last_tick_before_last_fact + SMALL.quiet_period


def test_every_command_goes_to_the_jobs_at_its_batch_end(
    jobs_and_run: tuple[FakeJobs, DemoRun],
) -> None:
    """The jobs get every command, escalations too, at the end of the batch that took it."""
    jobs, run = jobs_and_run
    assert run.commands == Counter(command["type"] for command, _ in jobs.taken)
    assert set(run.commands) == {"IssueStamps", "RefundPayment", "Escalate"}
    ticks = {fact.at for fact in run.facts if isinstance(fact, ClockTicked)}
    batch = timedelta(seconds=SMALL.batch_seconds)
    for _, at in jobs.taken:
        assert at - batch in ticks
        assert (at - SMALL.opening) % batch == timedelta(0)


def test_answers_reach_the_engine_when_they_arrive(
    jobs_and_run: tuple[FakeJobs, DemoRun],
) -> None:
    """Each answer is fed after the last tick before its arrival, never before its command."""
    jobs, run = jobs_and_run
    taken_at: dict[str, datetime] = {}
    for command, at in jobs.taken:
        taken_at.setdefault(command["command_id"], at)
    answer_ids = {fact.event_id for fact in jobs.answered.values()}
    tick_seconds = timedelta(seconds=SMALL.tick_seconds)
    clock = None
    fed = 0
    for fact in run.facts:
        if isinstance(fact, ClockTicked):
            clock = fact.at
        elif fact.event_id in answer_ids:
            assert isinstance(fact, StampIssued | RefundSucceeded)
            command_id = fact.event_id.removesuffix("/result")
            arrival = taken_at[command_id] + LAG
            assert clock is not None
            assert clock <= arrival < clock + tick_seconds
            fed += 1
    assert fed == len(jobs.answered) > 0


def test_an_answer_due_sooner_than_the_result_lag_is_refused() -> None:
    """Jobs that answer within the config's result lag break the pipeline: the run stops."""
    hasty = FakeJobs(lag=SMALL.result_lag[0] - timedelta(seconds=1))
    with pytest.raises(EarlyAnswerError, match="too soon"):
        run_day(SMALL, FakeEngine(), hasty)


def test_answers_still_on_their_way_keep_the_day_open() -> None:
    """Answers that come hours after their commands are still fed, then a quiet period runs."""
    slow = FakeJobs(lag=SMALL.quiet_period + timedelta(hours=1))
    run = run_day(SMALL, FakeEngine(), slow)
    assert run.unanswered == 0
    fed = {fact.event_id for fact in run.facts}
    assert {fact.event_id for fact in slow.answered.values()} <= fed
    last_arrival = max(at for _, at in slow.taken) + slow.lag
    assert run.closed_at >= last_arrival + SMALL.quiet_period


def test_summary_counts_the_day(run: DemoRun) -> None:
    """The summary counts orders by mode, facts by type and commands by type."""
    summary = run.summary()
    assert summary["orders"] == 300
    assert summary["facts_by_type"]["OrderPlaced"] == 300
    assert summary["orders_by_mode"]["healthy"] > 100
    assert set(summary["commands_by_type"]) == {"IssueStamps", "RefundPayment", "Escalate"}
    assert summary["unanswered"] == 0
    assert json.loads(json.dumps(summary)) == summary


def test_progress_reports_simulated_seconds() -> None:
    """Progress is reported after every batch, never going back, and ends at the day's length."""
    reports: list[tuple[int, int]] = []
    config = DemoConfig(orders=20, seed=1, tick_seconds=5, batch_seconds=60)
    run = run_day(
        config,
        lambda _batch: [],
        FakeJobs(),
        lambda done, total: reports.append((done, total)),
    )
    done = [report[0] for report in reports]
    assert done == sorted(done)
    assert done[-1] >= reports[-1][1]
    assert Counter(type(fact).__name__ for fact in run.facts)["OrderPlaced"] == 20
