"""The remediation jobs as the demo runs them: the real job code, in simulated time.

Every command the engine takes goes through `reconciler.jobs` unchanged: the
`Dispatcher` hands it to the `IssuanceJob` or the `RefundJob`, which call the stamp
issuer or the payment provider over HTTP with the command's idempotency key, retry
transient failures, and build the result fact. The demo adds only time:

- every request carries `X-Simulated-Time`, the moment in the demo's day the job sends
  it, and the simulators (run with `--clock request`) judge their outage, blackout and
  5xx bursts by it;
- the jobs' retrier waits in simulated time: its backoff moves the job's clock, not the
  wall clock (the HTTP calls themselves keep a real timeout);
- a result reaches the engine `result_lag` after the job has it, as it would through
  the input topic, so the engine's attempt timeouts still fall due in the day;
- a few jobs die after the provider answered and before the result went out; restarted
  minutes later, they ask again with the same key and are told the same answer.

Each command's draws (backoff jitter, lag, restart) come from the demo seed and the
command id, and the simulators' from their seed and the request key, so the same day
gives the same answers however the commands interleave.

The jobs run in their own processes, as `reconciler jobs run` does beside the service:
the engine and the HTTP calls then use separate cores. A `JobDesk` handles commands one
at a time in one process; `DemoJobs` spreads a batch's commands over a few processes,
each with its desk, while the engine takes the next batch. The lag is never shorter
than a batch, so no answer is due before the driver waits for it.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from random import Random
from typing import TYPE_CHECKING, Any

import httpx

from reconciler.demo.facts import Arrival
from reconciler.demo.loopback import LoopbackTransport
from reconciler.jobs.clients import IssuerClient, PspClient
from reconciler.jobs.handlers import Dispatcher, IssuanceJob, RefundJob
from reconciler.jobs.retry import BackoffPolicy, Retrier
from reconciler.logging import configure_logging
from reconciler.providers.clock import SIMULATED_TIME_HEADER

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from reconciler.demo.config import DemoConfig
    from reconciler.jobs.clients import IssueAnswer, RefundAnswer

PROVIDER_COMMANDS = frozenset({"IssueStamps", "RefundPayment"})
HTTP_TIMEOUT_S = 30.0
"""Real seconds one HTTP call may take; a loopback simulator answers in milliseconds."""


class JobClock:
    """One command's time: it starts when the job takes the command and moves as it waits."""

    def __init__(self, start: datetime) -> None:
        """A clock reading `start`."""
        self._start = start
        self.now = start

    def __call__(self) -> datetime:
        """The job's current moment."""
        return self.now

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of simulated time (at once)."""
        self.now += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        """Seconds since the job took the command, for the retrier's deadline."""
        return (self.now - self._start).total_seconds()


class _IssuerClient(IssuerClient):
    """The jobs' issuer client; its calls keep their real timeout.

    The retrier bounds each call by what is left of its deadline, which here is
    simulated time: as a real timeout it could cut a loopback call short.
    """

    def issue(
        self, command_id: str, order_id: str, quantity: int, *, timeout_s: float | None = None
    ) -> IssueAnswer:
        del timeout_s
        return super().issue(command_id, order_id, quantity)


class _PspClient(PspClient):
    """The jobs' PSP client; its calls keep their real timeout (see `_IssuerClient`)."""

    def refund(
        self,
        refund_id: str,
        payment_id: str,
        amount: int,
        reason: str,
        *,
        timeout_s: float | None = None,
    ) -> RefundAnswer:
        del timeout_s
        return super().refund(refund_id, payment_id, amount, reason)


_MS = timedelta(milliseconds=1)


def _between(rng: Random, bounds: tuple[timedelta, timedelta]) -> timedelta:
    low, high = bounds
    return timedelta(milliseconds=round(rng.uniform(low / _MS, high / _MS)))


@dataclass(frozen=True)
class JobResult:
    """One command handled: its answer and when it reaches the engine, and what it took."""

    command_type: str
    arrival: Arrival
    requests: int
    restarted: bool


class JobDesk:
    """The issuance and refund jobs of one process, in simulated time; one command at a time."""

    def __init__(
        self, config: DemoConfig, http: httpx.Client, issuer_url: str, psp_url: str
    ) -> None:
        """Call the issuer and the PSP at these URLs through `http`.

        Adds a request hook to `http` that sets `X-Simulated-Time` on every request.
        """
        self._config = config
        self._policies = [
            BackoffPolicy(
                attempts=attempts,
                base_s=config.job_backoff_base.total_seconds(),
                cap_s=config.job_backoff_cap.total_seconds(),
                deadline_s=config.job_deadline.total_seconds(),
            )
            for attempts in (config.issue_job_attempts, config.refund_job_attempts)
        ]
        self._clock = JobClock(config.opening)
        hooks = http.event_hooks
        http.event_hooks = {**hooks, "request": [*hooks["request"], self._stamp]}
        self._issuer = _IssuerClient(http, issuer_url, timeout_s=HTTP_TIMEOUT_S)
        self._psp = _PspClient(http, psp_url, timeout_s=HTTP_TIMEOUT_S)

    def _stamp(self, request: httpx.Request) -> None:
        request.headers[SIMULATED_TIME_HEADER] = self._clock().isoformat()

    def handle(self, command: Mapping[str, Any], at: datetime) -> JobResult:
        """Handle an `IssueStamps` or `RefundPayment` command the engine took at `at`.

        Each command gets jobs of its own, so an issuance the job parks (its outcome
        unknown) is not inquired about later: here it only ever means the issuer
        refused every try with a 5xx, and issued nothing.
        """
        rng = Random(f"{self._config.seed}/jobs/{command['command_id']}")  # noqa: S311
        self._clock = clock = JobClock(at)
        issuance, refunds = (
            Retrier(policy, rng=rng, sleep=clock.sleep, monotonic=clock.monotonic)
            for policy in self._policies
        )
        dispatcher = Dispatcher(
            IssuanceJob(self._issuer, issuance, clock=clock),
            RefundJob(self._psp, refunds, clock=clock),
        )
        handled = dispatcher.dispatch(command)
        requests = handled.attempts
        restarted = rng.random() < self._config.job_restart_rate
        if restarted:
            # The job died before it published: restarted, it asks again with the same key.
            clock.sleep(_between(rng, self._config.job_restart_after).total_seconds())
            handled = dispatcher.dispatch(command)
            requests += handled.attempts
        if handled.fact is None:
            msg = f"not a command for a provider: {command.get('type')!r}"
            raise ValueError(msg)
        arrival = Arrival(clock() + _between(rng, self._config.result_lag), handled.fact)
        return JobResult(handled.command_type, arrival, requests, restarted)


_WORKER: dict[str, JobDesk] = {}
"""The job desk of a worker process, set up once when the process starts."""


def _start_worker(config: DemoConfig, issuer_url: str, psp_url: str) -> None:
    # The jobs' own log lines (a parked issuance for each one the outage refused, ...)
    # would bury the demo's output; the summary counts what they did.
    configure_logging(json=False, level=logging.ERROR)
    # Loopback: the lean transport, and no proxy from the environment.
    http = httpx.Client(transport=LoopbackTransport(HTTP_TIMEOUT_S), trust_env=False)
    _WORKER["desk"] = JobDesk(config, http, issuer_url, psp_url)


def _handle_in_worker(commands: Sequence[Mapping[str, Any]], at: datetime) -> list[JobResult]:
    desk = _WORKER["desk"]
    return [desk.handle(command, at) for command in commands]


@dataclass(frozen=True)
class JobStats:
    """What the jobs did, by command type: HTTP requests, retries, restarts."""

    commands: dict[str, int]
    requests: dict[str, int]
    restarts: dict[str, int]

    def repeats(self, command_type: str) -> int:
        """Requests beyond the first per command: retries of transient failures, restarts."""
        return self.requests.get(command_type, 0) - self.commands.get(command_type, 0)

    def retries(self) -> int:
        """Requests the jobs' retriers made after a transient failure, all commands."""
        extra = sum(self.requests.values()) - sum(self.commands.values())
        return extra - sum(self.restarts.values())


class DemoJobs:
    """The jobs between the engine and the simulators: `processes` worker processes.

    `submit` starts on a batch's commands and returns the call that waits for their
    answers; `stats` counts what the jobs did. The processes are spawned, so the
    program's main module must be safe to import (the `reconciler` command is).
    """

    def __init__(
        self, config: DemoConfig, issuer_url: str, psp_url: str, *, processes: int = 2
    ) -> None:
        """Call the issuer and the PSP at these URLs from `processes` job processes."""
        self._processes = processes
        self._pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(config, issuer_url, psp_url),
        )
        self._commands: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()
        self._restarts: Counter[str] = Counter()

    def submit(
        self, commands: Sequence[Mapping[str, Any]], at: datetime
    ) -> Callable[[], list[Arrival]]:
        """Start handling the commands the engine took at `at`; return the wait for answers.

        The answers come in command order. Escalations get none: they go to people.
        """
        todo = [command for command in commands if command.get("type") in PROVIDER_COMMANDS]
        # One share of the batch per process: fewer, larger tasks cost less to pass around.
        share = -(-len(todo) // self._processes)
        futures = [
            self._pool.submit(_handle_in_worker, todo[start : start + share], at)
            for start in range(0, len(todo), share or 1)
        ]

        def answers() -> list[Arrival]:
            arrivals = []
            for future in futures:
                for result in future.result():
                    self._commands[result.command_type] += 1
                    self._requests[result.command_type] += result.requests
                    self._restarts[result.command_type] += result.restarted
                    arrivals.append(result.arrival)
            return arrivals

        return answers

    def stats(self) -> JobStats:
        """The counts of the answers collected so far."""
        return JobStats(dict(self._commands), dict(self._requests), dict(self._restarts))

    def close(self) -> None:
        """Stop the job processes; a command in hand is finished, queued ones are dropped."""
        self._pool.shutdown(wait=True, cancel_futures=True)
