"""The faults a round injects, at seeded random moments, each kind as often as the others.

- `kill_service` / `kill_jobs`: SIGKILL one `serve` or `jobs run` process, started again
  at once (a supervisor's restart);
- `cut_database`: every PostgreSQL session of the services terminated by the server;
- `restart_database`: PostgreSQL stopped (fast shutdown) and started again after 1-8 s;
- `broker_outage`: every Kafka connection cut and new ones refused for 1-8 s (the
  clients' view of a broker restart, see proxy.py);
- `clock_jump`: the ticks of a host whose clock stepped, forward by 10-40 s and back by
  up to an hour in turn, produced into every input partition beside the real ticker's.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tests.fault_support import terminate_backends

from reconciler.kafka_io import producer_config
from reconciler.kafka_io._kafka import KafkaProducer
from reconciler.service.ticker import floor_to, tick_for

if TYPE_CHECKING:
    import random
    import threading
    from collections.abc import Callable

    from tests.fault_support import RestartablePostgres

    from chaos.crew import Crew
    from chaos.proxy import FaultProxy

KINDS = (
    "kill_service",
    "kill_jobs",
    "cut_database",
    "restart_database",
    "broker_outage",
    "clock_jump",
)
SECOND = timedelta(seconds=1)


@dataclass
class Target:
    """What the faults act on."""

    crew: Crew
    proxy: FaultProxy
    postgres: RestartablePostgres
    application_names: list[str]
    bootstrap: str
    topic: str
    partitions: int


@dataclass
class Injected:
    """One fault: when (seconds into the round), which, and what it did."""

    at_s: float
    kind: str
    detail: str
    cut: int = 0  # sessions or connections cut
    down_s: float = 0.0  # how long the database or the broker was unreachable


@dataclass
class Disturber:
    """Injects `rounds` of every kind, shuffled, one every `gap_s` (random within)."""

    target: Target
    rng: random.Random
    rounds: int = 2
    gap_s: tuple[float, float] = (1.5, 4.0)
    injected: list[Injected] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _jumps: int = 0

    def run(self, stop: threading.Event) -> None:
        """Inject every planned fault unless told to stop; a fault that fails is noted."""
        started = time.monotonic()
        plan = [kind for _ in range(self.rounds) for kind in self.rng.sample(KINDS, len(KINDS))]
        for kind in plan:
            if stop.wait(self.rng.uniform(*self.gap_s)):
                return
            at = time.monotonic() - started
            try:
                fault = self._actions()[kind]()
            except Exception as error:  # noqa: BLE001 - a fault that fails is a finding
                self.failures.append(f"{kind} at {at:.1f} s: {error!r}")
                continue
            fault.at_s = at
            self.injected.append(fault)

    def counts(self) -> Counter[str]:
        """How many faults of each kind were injected."""
        return Counter(fault.kind for fault in self.injected)

    def _actions(self) -> dict[str, Callable[[], Injected]]:
        return {
            "kill_service": lambda: self._kill("serve-"),
            "kill_jobs": lambda: self._kill("jobs-"),
            "cut_database": self._cut_database,
            "restart_database": self._restart_database,
            "broker_outage": self._broker_outage,
            "clock_jump": self._clock_jump,
        }

    def _kill(self, prefix: str) -> Injected:
        name = self.rng.choice(self.target.crew.names(prefix))
        self.target.crew.kill(name)
        kind = "kill_service" if prefix == "serve-" else "kill_jobs"
        return Injected(0.0, kind, f"SIGKILL {name}, restarted")

    def _cut_database(self) -> Injected:
        names = self.target.application_names
        cut = sum(terminate_backends(self.target.postgres.dsn, name) for name in names)
        return Injected(0.0, "cut_database", f"{cut} sessions terminated", cut=cut)

    def _restart_database(self) -> Injected:
        # Up to 8 s: past the connection pool's 5 s wait, a batch fails and is retried.
        down = self.rng.uniform(1.0, 8.0)
        self.target.postgres.restart(down_s=down)
        return Injected(0.0, "restart_database", f"down {down:.1f} s", down_s=down)

    def _broker_outage(self) -> Injected:
        down = self.rng.uniform(1.0, 8.0)
        cut = self.target.proxy.outage(down)
        detail = f"{cut} connections cut, refused {down:.1f} s"
        return Injected(0.0, "broker_outage", detail, cut=cut, down_s=down)

    def _clock_jump(self) -> Injected:
        self._jumps += 1
        forward = self._jumps % 2 == 1  # forward, then back, in turn
        seconds = self.rng.uniform(10, 40) if forward else -self.rng.uniform(60, 3600)
        at = floor_to(datetime.now(UTC) + timedelta(seconds=seconds), SECOND)
        producer = KafkaProducer(**producer_config(self.target.bootstrap))
        try:
            for partition in range(self.target.partitions):
                tick = tick_for(self.target.topic, partition, at).model_dump_json().encode()
                producer.send(self.target.topic, value=tick, partition=partition)
            producer.flush(timeout=30)
        finally:
            producer.close(timeout=5)
        return Injected(0.0, "clock_jump", f"ticks at {seconds:+.0f} s")
