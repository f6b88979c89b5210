"""Run the simulated day through an engine: ticks, facts in arrival order, commands, answers.

The driver owns simulated time. It walks the engine's clock forward one tick at a time,
delivers every fact that arrives before the next tick, hands a batch of ticks and facts
to the engine, and passes the commands the engine took to the remediation jobs, whose
answers join the queue of facts still to arrive. The jobs work on a batch's commands
while the engine takes the next batches: an answer is never due sooner than
`result_lag`'s low end after its command, so the driver waits for a batch's answers only
before it builds the first batch in which one could be due. The day closes when every
answer is in and a quiet period has let every deadline fall due.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from reconciler.demo.facts import Arrival, build
from reconciler.demo.generator import generate_day
from reconciler.domain.events import ClockTicked, Fact

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from reconciler.demo.config import DemoConfig
    from reconciler.demo.generator import GeneratedDay

EngineStep: TypeAlias = Callable[[Sequence[Fact]], Sequence[dict[str, Any]]]
"""The engine as the demo sees it: a batch of facts in, the commands it took out, in order."""
Progress: TypeAlias = Callable[[int, int], None]
Answers: TypeAlias = Callable[[], Sequence[Arrival]]
"""Waits for the answers to a batch's commands, and returns them in command order."""


class Jobs(Protocol):
    """The remediation jobs as the driver sees them."""

    def submit(self, commands: Sequence[Mapping[str, Any]], at: datetime) -> Answers:
        """Start on the commands the engine took at `at`; the returned call waits for answers.

        No answer may arrive sooner than the config's `result_lag` allows.
        """
        ...


class EarlyAnswerError(RuntimeError):
    """An answer was due sooner than `result_lag` allows after its command."""


# An engine that keeps commanding forever must not keep the demo running forever.
_OVERTIME = timedelta(hours=24)


@dataclass
class DemoRun:
    """What happened on the simulated day: every fact fed to the engine, and the counts."""

    config: DemoConfig
    facts: list[Fact]
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
            "portal_stamps_issued": self.portal_stamps_issued,
            "unanswered": self.unanswered,
            "closed_at": self.closed_at.isoformat(),
        }


def run_day(
    config: DemoConfig,
    engine_step: EngineStep,
    jobs: Jobs,
    progress: Progress | None = None,
) -> DemoRun:
    """Simulate `config`'s day, feeding `engine_step` and passing its commands to `jobs`.

    `progress`, if given, is called after every batch with (simulated seconds done,
    simulated seconds the day is expected to last); the second number can grow while
    answers keep arriving.
    """
    return _Driver(config, generate_day(config), engine_step, jobs, progress).run()


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
        engine_step: EngineStep,
        jobs: Jobs,
        progress: Progress | None,
    ) -> None:
        self._config = config
        self._timeline = day.arrivals
        self._next = 0
        self._answers: list[tuple[datetime, int, Fact]] = []
        self._answer_seq = 0
        self._run = DemoRun(
            config=config, facts=[], modes=day.modes, portal_stamps_issued=day.portal_stamps
        )
        self._engine_step = engine_step
        self._jobs = jobs
        self._in_flight: deque[tuple[datetime, Answers]] = deque()
        self._progress = progress
        self._tick = timedelta(seconds=config.tick_seconds)
        self._batch = timedelta(seconds=config.batch_seconds)
        self._min_lag = config.result_lag[0]
        last_arrival = self._timeline[-1].arrives_at if self._timeline else config.opening
        self._close_at = max(last_arrival, config.opening) + config.quiet_period

    def run(self) -> DemoRun:
        clock = self._config.opening
        ticks_per_batch = self._config.batch_seconds // self._config.tick_seconds
        hard_stop = self._close_at + _OVERTIME
        while True:
            # Wait only for the answers that could be due before this batch ends.
            while self._in_flight and self._in_flight[0][0] + self._min_lag < clock + self._batch:
                self._collect()
            batch: list[Fact] = []
            for _ in range(ticks_per_batch):
                batch.append(_tick(clock))
                clock += self._tick
                self._deliver_before(clock, batch)
            self._run.facts.extend(batch)
            # The jobs take the batch's commands at its end, so no answer can reach the
            # engine before the fact that caused its command.
            commands = self._engine_step(batch)
            self._run.commands.update(str(command.get("type")) for command in commands)
            self._in_flight.append((clock, self._jobs.submit(commands, clock)))
            if self._progress is not None:
                self._progress(self._elapsed(clock), self._elapsed(self._close_at))
            if self._done(clock) or clock > hard_stop:
                break
        while self._in_flight:
            self._collect()
        self._run.unanswered = len(self._answers)
        return self._run

    def _collect(self) -> None:
        """Wait for the oldest batch's answers and queue them by arrival."""
        at, answers = self._in_flight.popleft()
        for arrival in answers():
            if arrival.arrives_at < at + self._min_lag:
                msg = f"an answer arrives at {arrival.arrives_at}, too soon after {at}"
                raise EarlyAnswerError(msg)
            self._answer_seq += 1
            heapq.heappush(self._answers, (arrival.arrives_at, self._answer_seq, arrival.fact))

    def _deliver_before(self, horizon: datetime, batch: list[Fact]) -> None:
        """Append every fact due before horizon, from the day or the jobs, by arrival."""
        timeline, answers = self._timeline, self._answers
        while True:
            from_day = self._next < len(timeline) and timeline[self._next].arrives_at < horizon
            from_jobs = bool(answers) and answers[0][0] < horizon
            if from_day and (not from_jobs or timeline[self._next].arrives_at <= answers[0][0]):
                batch.append(timeline[self._next].fact)
                self._next += 1
            elif from_jobs:
                arrives_at, _, fact = heapq.heappop(answers)
                self._close_at = max(self._close_at, arrives_at + self._config.quiet_period)
                batch.append(fact)
            else:
                return

    def _done(self, clock: datetime) -> bool:
        if self._next < len(self._timeline) or clock - self._tick < self._close_at:
            return False
        while self._in_flight:  # the day looks over: are answers still on their way?
            self._collect()
        return not self._answers

    def _elapsed(self, moment: datetime) -> int:
        return int((moment - self._config.opening).total_seconds())
