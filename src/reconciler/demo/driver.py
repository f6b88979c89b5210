"""Run the simulated day through an engine: ticks, facts in arrival order, commands, answers.

The driver owns simulated time. It walks the engine's clock forward one tick at a time,
delivers every fact that arrives before the next tick, hands a batch of ticks and facts
to the engine, and passes the commands the engine took to the simulated issuer and
payment provider, whose answers join the queue of facts still to arrive. The day closes
when every answer is in and a quiet period has let every deadline fall due.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from reconciler.demo.facts import build
from reconciler.demo.generator import generate_day
from reconciler.demo.simulators import PaymentProviderSimulator, StampIssuerSimulator
from reconciler.domain.events import ClockTicked, Fact

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime

    from reconciler.demo.config import DemoConfig
    from reconciler.demo.facts import Arrival
    from reconciler.demo.generator import GeneratedDay

EngineStep: TypeAlias = Callable[[Sequence[Fact]], Sequence[dict[str, Any]]]
"""The engine as the demo sees it: a batch of facts in, the commands it took out, in order."""
Progress: TypeAlias = Callable[[int, int], None]

# An engine that keeps commanding forever must not keep the demo running forever.
_OVERTIME = timedelta(hours=24)


@dataclass
class DemoRun:
    """What happened on the simulated day: every fact fed to the engine, and the counts."""

    config: DemoConfig
    facts: list[Fact]
    issuer: StampIssuerSimulator
    psp: PaymentProviderSimulator
    modes: Counter[str]
    portal_stamps_issued: int
    commands: Counter[str] = field(default_factory=Counter)
    unanswered: int = 0

    @property
    def closed_at(self) -> datetime:
        """The engine clock's last tick."""
        last_tick = next(fact for fact in reversed(self.facts) if isinstance(fact, ClockTicked))
        return last_tick.at

    def facts_by_type(self) -> Counter[str]:
        """How many facts of each type were fed to the engine."""
        return Counter(type(fact).__name__ for fact in self.facts)

    def lines(self) -> Iterator[str]:
        """The facts as JSONL lines, in the order the engine received them."""
        return (fact.model_dump_json() for fact in self.facts)

    def summary(self) -> dict[str, Any]:
        """The counts a person wants to see after the run."""
        return {
            "orders": self.config.orders,
            "seed": self.config.seed,
            "orders_by_mode": dict(sorted(self.modes.items())),
            "facts_by_type": dict(sorted(self.facts_by_type().items())),
            "commands_by_type": dict(sorted(self.commands.items())),
            "psp_paid_out": self.psp.paid_out_total,
            "psp_refunds_paid": self.psp.payouts,
            "issuer_stamps_issued": self.issuer.stamps_issued,
            "portal_stamps_issued": self.portal_stamps_issued,
            "unanswered": self.unanswered,
            "closed_at": self.closed_at.isoformat(),
        }


def run_day(
    config: DemoConfig,
    engine_step: EngineStep,
    progress: Progress | None = None,
) -> DemoRun:
    """Simulate `config`'s day, feeding `engine_step` and answering the commands it returns.

    `progress`, if given, is called after every batch with (simulated seconds done,
    simulated seconds the day is expected to last); the second number can grow while
    answers keep arriving.
    """
    day = generate_day(config)
    issuer = StampIssuerSimulator(config, day.serials)
    psp = PaymentProviderSimulator(config, day.payments)
    run = DemoRun(
        config=config,
        facts=[],
        issuer=issuer,
        psp=psp,
        modes=day.modes,
        portal_stamps_issued=day.portal_stamps,
    )
    _Driver(config, day, run, engine_step, progress).run()
    return run


def write_jsonl(facts: Iterable[Fact], path: Path | str) -> int:
    """Write facts as JSON lines, in order, creating the folder; return how many."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with target.open("w", encoding="utf-8", newline="\n") as out:
        for fact in facts:
            out.write(fact.model_dump_json())
            out.write("\n")
            count += 1
    return count


def _tick(at: datetime) -> ClockTicked:
    return build(ClockTicked, event_id=f"tick-{at.isoformat()}", occurred_at=at, at=at)


class _Driver:
    def __init__(
        self,
        config: DemoConfig,
        day: GeneratedDay,
        run: DemoRun,
        engine_step: EngineStep,
        progress: Progress | None,
    ) -> None:
        self._config = config
        self._timeline = day.arrivals
        self._next = 0
        self._answers: list[tuple[datetime, int, Fact]] = []
        self._answer_seq = 0
        self._run = run
        self._engine_step = engine_step
        self._progress = progress
        self._tick = timedelta(seconds=config.tick_seconds)
        last_arrival = self._timeline[-1].arrives_at if self._timeline else config.opening
        self._close_at = max(last_arrival, config.opening) + config.quiet_period

    def run(self) -> None:
        clock = self._config.opening
        ticks_per_batch = self._config.batch_seconds // self._config.tick_seconds
        hard_stop = self._close_at + _OVERTIME
        while True:
            batch: list[Fact] = []
            for _ in range(ticks_per_batch):
                batch.append(_tick(clock))
                clock += self._tick
                self._deliver_before(clock, batch)
            self._run.facts.extend(batch)
            # The simulators take the batch's commands at its end, so no answer can reach
            # the engine before the fact that caused its command.
            for command in self._engine_step(batch):
                self._dispatch(command, clock)
            if self._progress is not None:
                self._progress(self._elapsed(clock), self._elapsed(self._close_at))
            if self._done(clock) or clock > hard_stop:
                break
        self._run.unanswered = len(self._answers)

    def _deliver_before(self, horizon: datetime, batch: list[Fact]) -> None:
        """Append every fact due before horizon, from the day or the simulators, by arrival."""
        timeline, answers = self._timeline, self._answers
        while True:
            from_day = self._next < len(timeline) and timeline[self._next].arrives_at < horizon
            from_sim = bool(answers) and answers[0][0] < horizon
            if from_day and (not from_sim or timeline[self._next].arrives_at <= answers[0][0]):
                batch.append(timeline[self._next].fact)
                self._next += 1
            elif from_sim:
                arrives_at, _, fact = heapq.heappop(answers)
                self._close_at = max(self._close_at, arrives_at + self._config.quiet_period)
                batch.append(fact)
            else:
                return

    def _dispatch(self, command: dict[str, Any], at: datetime) -> None:
        kind = str(command.get("type"))
        self._run.commands[kind] += 1
        answers: list[Arrival]
        if kind == "IssueStamps":
            answers = self._run.issuer.receive(command, at)
        elif kind == "RefundPayment":
            answers = self._run.psp.receive(command, at)
        else:
            return  # escalations go to people, not to a simulator
        for arrives_at, fact in answers:
            self._answer_seq += 1
            heapq.heappush(self._answers, (arrives_at, self._answer_seq, fact))

    def _done(self, clock: datetime) -> bool:
        day_over = self._next >= len(self._timeline) and not self._answers
        return day_over and clock - self._tick >= self._close_at

    def _elapsed(self, moment: datetime) -> int:
        return int((moment - self._config.opening).total_seconds())
