from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.demo import DemoConfig, DemoRun, run_day, write_jsonl
from reconciler.domain.events import (
    FACT_MODELS,
    ClockTicked,
    OrderPlaced,
    PaymentDebited,
    RefundSucceeded,
    StampIssuanceFailed,
    StampIssued,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
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


class FakeEngine:
    """Just enough of an engine to give the simulators real work.

    Five minutes after an order's first debit without stamps it commands issuance; it
    refunds orphan debits and second debits on an order. It is careless the way a relay
    with at-least-once delivery is: when a debit is reported again (settlement after
    webhook), it sends the same issuance command again, and resends a refund command
    along with a second attempt under the same refund_id.
    """

    def __init__(self) -> None:
        """Start knowing nothing, before the first tick."""
        self.clock: datetime | None = None
        self.quantities: dict[str, int] = {}
        self.paid_by: dict[str, str] = {}
        self.due: dict[str, datetime] = {}
        self.delivered: set[str] = set()
        self.commanded_at: dict[str, datetime] = {}
        self.refunds: dict[str, dict[str, Any]] = {}

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
            command_id = f"{order_id}/issue/1"
            self.commanded_at.setdefault(command_id, self._now())
            commands.append(
                {
                    "command_id": command_id,
                    "type": "IssueStamps",
                    "order_id": order_id,
                    "quantity": self.quantities[order_id],
                    "attempt": 1,
                }
            )
        return commands

    def _debit(self, fact: PaymentDebited) -> list[dict[str, Any]]:
        if fact.order_id is None:
            return self._refund(fact, "ORPHAN_DEBIT")
        first = self.paid_by.setdefault(fact.order_id, fact.payment_id)
        if first == fact.payment_id:
            self.due.setdefault(fact.order_id, self._now() + ISSUE_SLA)
            return []
        return self._refund(fact, "DUPLICATE_DEBIT")

    def _refund(self, fact: PaymentDebited, reason: str) -> list[dict[str, Any]]:
        refund_id = f"{fact.payment_id}/{reason}"
        first = self.refunds.get(refund_id)
        command = {
            "command_id": f"{refund_id}/1",
            "type": "RefundPayment",
            "refund_id": refund_id,
            "order_id": fact.order_id,
            "payment_id": fact.payment_id,
            "amount": fact.amount,
            "reason": reason,
            "attempt": 1,
        }
        if first is None:
            self.refunds[refund_id] = command
            return [command]
        return [first, first | {"command_id": f"{refund_id}/2", "attempt": 2}]


@pytest.fixture(scope="module")
def engine_and_run() -> tuple[FakeEngine, DemoRun]:
    """One small day through the fake engine, shared by the tests that only read it."""
    engine = FakeEngine()
    return engine, run_day(SMALL, engine)


@pytest.fixture(scope="module")
def run(engine_and_run: tuple[FakeEngine, DemoRun]) -> DemoRun:
    """The shared day's run."""
    return engine_and_run[1]


def test_same_seed_gives_identical_jsonl(run: DemoRun, tmp_path: Path) -> None:
    """Two runs of one seed and engine write byte-identical files; another seed does not."""
    again = run_day(SMALL, FakeEngine())
    other = run_day(DemoConfig(orders=300, seed=43, tick_seconds=5, batch_seconds=30), FakeEngine())
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


def test_issuer_answers_the_commands_by_their_id(
    engine_and_run: tuple[FakeEngine, DemoRun],
) -> None:
    """Every issuer answer names a command the engine sent, and comes after it was sent."""
    engine, run = engine_and_run
    answers = [
        fact
        for fact in run.facts
        if isinstance(fact, StampIssued | StampIssuanceFailed) and fact.command_id is not None
    ]
    assert answers
    repeated = run.commands["IssueStamps"] - len(engine.commanded_at)
    assert repeated == run.issuer.repeated_commands > 0
    for fact in answers:
        assert fact.command_id is not None
        assert fact.occurred_at > engine.commanded_at[fact.command_id]
        assert run.issuer.answer_for(fact.command_id) == fact
    issued = sum(len(f.serial_numbers) for f in answers if isinstance(f, StampIssued))
    assert issued == run.issuer.stamps_issued > 0


def test_provider_pays_each_refund_id_once(engine_and_run: tuple[FakeEngine, DemoRun]) -> None:
    """Repeated refund commands in a whole day still pay every refund_id at most once."""
    engine, run = engine_and_run
    psp = run.psp
    assert psp.repeated_commands > 0
    assert psp.paid_out_by_refund
    for refund_id, paid in psp.paid_out_by_refund.items():
        assert paid == engine.refunds[refund_id]["amount"]
    assert psp.paid_out_total == sum(psp.paid_out_by_refund.values())
    succeeded: dict[str, set[int]] = defaultdict(set)
    for fact in run.facts:
        if isinstance(fact, RefundSucceeded):
            succeeded[fact.refund_id].add(fact.amount)
    assert psp.paid_out_total == sum(amount for (amount,) in succeeded.values())


def test_summary_counts_the_day(run: DemoRun) -> None:
    """The summary counts orders by mode, facts by type and commands by type."""
    summary = run.summary()
    assert summary["orders"] == 300
    assert summary["facts_by_type"]["OrderPlaced"] == 300
    assert summary["orders_by_mode"]["healthy"] > 100
    assert set(summary["commands_by_type"]) == {"IssueStamps", "RefundPayment"}
    assert summary["psp_paid_out"] == run.psp.paid_out_total > 0
    assert json.loads(json.dumps(summary)) == summary


def test_progress_reports_simulated_seconds() -> None:
    """Progress is reported after every batch, never going back, and ends at the day's length."""
    reports: list[tuple[int, int]] = []
    config = DemoConfig(orders=20, seed=1, tick_seconds=5, batch_seconds=60)
    run = run_day(config, lambda _batch: [], lambda done, total: reports.append((done, total)))
    done = [report[0] for report in reports]
    assert done == sorted(done)
    assert done[-1] >= reports[-1][1]
    assert Counter(type(fact).__name__ for fact in run.facts)["OrderPlaced"] == 20
