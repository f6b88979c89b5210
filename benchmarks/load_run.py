"""Sustained load: the service offered tens of thousands of events a second for a bounded time.

Issue 8, point 3: throughput held, lag bounded, memory flat, decisions still correct.

How it runs, on the configured or started broker and PostgreSQL (`servers.py`):

- A fresh input topic (4 partitions) and PostgreSQL schema. `reconciler serve` runs as a
  separate process (`tests.service_support.service_process`: production wiring, relay
  ON, ticker OFF, since the stream carries its own clock, 2,000 records per poll), and the
  offer starts once it has logged `partition_ready` for every partition.
- A producer process (multiprocessing, spawned) first builds every record: registration-
  peak orders with their debits and stamp deliveries (`workload.peak_stream`, ~40 facts
  per stream second), keyed by order and each tick copied into every partition, as
  `tests.service_support.produce_lines` sends them. Only then does the clock start, so
  building records does not limit the offered rate. It sends at a constant target rate
  (`--rate`, default 20,000 records/s) for `--seconds` (default 180) with kafka-python
  (batched, linger 20 ms, acks=all). A send that falls behind is not skipped: the rate
  actually offered is measured and reported, and on 2 cores shared with the service,
  PostgreSQL and the broker it can fall short of the target.
- Every second: records offered so far (the producer's sends), records logged so far
  (the log's stored positions summed over the input partitions), lag = offered - logged,
  the service's RSS (VmRSS from /proc/PID/status) and the CPU share of the service, the
  producer and the whole machine (from /proc).
- After the offer it keeps sampling until the lag is 0 (or `--drain-timeout`), stops the
  service with SIGTERM, then measures, in the same run, a bare kafka-python consumer
  reading the same topic (`kafka_baseline.bare_consume_rate`), and runs
  `reconciler replay --in-memory --format json` over the schema: every recorded
  decision must be re-derived from the logged facts, and no other, with the money
  balanced (debited = kept + refunded + refund pending + at risk).

It prints a summary table and a per-10-second time series, and `--json PATH` writes
both. The verdict is issue 8's: throughput held (logged during the offer at least 95% of
the offered rate), lag bounded (never more than 5 s of the offer), memory flat (RSS over
the second half of the run at most 10 MB per million records), every decision
re-derived, and drained in time. Exit status 1 when any of them fails.

`python benchmarks/load_run.py [--rate N] [--seconds S] [--drain-timeout S]`.
Progress goes to stderr. `--service-env NAME=VALUE` passes a setting to the service
(for example a `RECONCILER_…` setting this script does not know).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.service_support

from rich.console import Console
from rich.table import Table
from tests.service_support import service_process, service_settings

from kafka_baseline import MAX_RECORDS, bare_consume_rate
from reconciler.bootstrap import service_topics
from reconciler.kafka_io import create_topics, partition_for, producer_config
from reconciler.kafka_io._kafka import KafkaProducer
from reconciler.logging import configure_logging
from reconciler.store import PostgresLogStore
from servers import fresh_schema, kafka_bootstrap, postgres_dsn
from terminal import progress
from workload import peak_stream

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from multiprocessing.synchronize import Event

    from reconciler.service.settings import ServiceSettings

RATE = 20_000.0  # records offered per second
SECONDS = 180.0  # how long the offer lasts
PARTITIONS = 4
WINDOW_S = 10.0  # the time series' window
WARM_UP_S = 10.0  # RSS "after warm-up" is taken this long into the offer
SAMPLE_S = 1.0
DRAIN_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 120.0  # the service's join, and the producer's building of records
STOP_TIMEOUT_S = 60.0
REPLAY_TIMEOUT_S = 1_800.0
PRODUCER_LINGER_MS = 20
PRODUCER_BATCH_BYTES = 512 * 1024
SEND_SLICE_S = 0.005  # the producer sends what is due, then sleeps at most this long
MB = 1024 * 1024
# The verdict's thresholds (issue 8: throughput held, lag bounded, memory flat).
HELD_SHARE = 0.95
LAG_BOUND_S = 5.0
FLAT_MB_PER_MILLION = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- pacing ---------------------------------------------------------------------------------


def due(elapsed_s: float, rate: float, total: int) -> int:
    """How many of `total` records are due `elapsed_s` into an offer at `rate` per second."""
    if elapsed_s <= 0:
        return 0
    return min(total, math.floor(elapsed_s * rate))


def wait_before(sent: int, rate: float, elapsed_s: float) -> float:
    """Seconds until record number `sent` (0-based) is due; 0 when it is already late."""
    return max(0.0, (sent + 1) / rate - elapsed_s)


# --- the records ----------------------------------------------------------------------------

Outgoing = tuple[int, bytes | None, bytes]  # partition, key, value


def offer_records(total: int, partitions: int = PARTITIONS, seed: int = 7) -> list[Outgoing]:
    """`total` records as producers send the peak stream: keyed by order, ticks everywhere.

    A ClockTicked goes to every partition, with the partition in its event_id, since
    every partition keeps its own clock; every other fact goes to its order's partition.
    """
    records: list[Outgoing] = []
    for fact in peak_stream(total, seed):
        if fact.type == "ClockTicked":
            for number in range(partitions):
                copy = fact.model_copy(update={"event_id": f"{fact.event_id}/p{number}"})
                records.append((number, None, copy.model_dump_json().encode()))
            if len(records) >= total:
                break
            continue
        order_id = getattr(fact, "order_id", None) or getattr(fact, "payment_id", "")
        key = str(order_id).encode()
        records.append((partition_for(key, partitions), key, fact.model_dump_json().encode()))
        if len(records) >= total:
            break
    return records[:total]


# --- the producer process -------------------------------------------------------------------


@dataclass(frozen=True)
class OfferPlan:
    """What the producer process offers, and where."""

    bootstrap: str
    topic: str
    rate: float
    seconds: float
    partitions: int = PARTITIONS

    @property
    def total(self) -> int:
        """The records of the whole offer."""
        return math.floor(self.rate * self.seconds)


@dataclass(frozen=True)
class OfferDone:
    """What the producer reports at the end: records sent, and the seconds it took."""

    sent: int
    seconds: float  # from the first send to the end of the final flush
    flush_seconds: float
    error: str | None = None


def producer_main(
    plan: OfferPlan,
    sent: Any,  # noqa: ANN401 - a multiprocessing RawValue("q")
    ready: Event,
    go: Event,
    done: Any,  # noqa: ANN401 - a multiprocessing Queue of OfferDone
) -> None:
    """Build every record, say ready, wait for go, then send them at the plan's rate."""
    try:
        records = offer_records(plan.total, plan.partitions)
        config = producer_config(plan.bootstrap) | {
            "linger_ms": PRODUCER_LINGER_MS,
            "batch_size": PRODUCER_BATCH_BYTES,
        }
        producer = KafkaProducer(**config)
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the run
        done.put(OfferDone(0, 0.0, 0.0, repr(error)))
        ready.set()
        return
    ready.set()
    go.wait()
    total = len(records)
    send = producer.send
    topic = plan.topic
    count = 0
    started = time.perf_counter()
    try:
        while count < total:
            elapsed = time.perf_counter() - started
            now_due = due(elapsed, plan.rate, total)
            if now_due <= count:
                time.sleep(min(SEND_SLICE_S, wait_before(count, plan.rate, elapsed)))
                continue
            for partition, key, value in records[count:now_due]:
                send(topic, value=value, key=key, partition=partition)
            count = now_due
            sent.value = count
        flushing = time.perf_counter()
        producer.flush()
        finished = time.perf_counter()
        done.put(OfferDone(count, finished - started, finished - flushing))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which fails the run
        done.put(OfferDone(count, time.perf_counter() - started, 0.0, repr(error)))
    finally:
        producer.close(timeout=30)


# --- sampling -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One second's reading."""

    t: float  # seconds since the offer started
    offered: int
    logged: int
    rss_mb: float
    service_cpu: float  # percent of one core since the previous sample
    producer_cpu: float
    machine_cpu: float  # percent of all cores (100 = every core busy)

    @property
    def lag(self) -> int:
        """Records offered and not yet logged."""
        return self.offered - self.logged


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS), in MB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process (all its threads), in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def machine_times() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    values = [float(v) for v in Path("/proc/stat").read_text(encoding="ascii").split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


class Sampler:
    """Reads the counters once a second; keeps every sample."""

    def __init__(  # noqa: PLR0913 - what it reads
        self,
        *,
        store: PostgresLogStore,
        topic: str,
        service_pid: int,
        producer_pid: int,
        sent: Any,  # noqa: ANN401 - a multiprocessing RawValue("q")
        started: float,
    ) -> None:
        """Sample `store`'s positions for `topic`, and these processes, from `started`."""
        self._store = store
        self._prefix = f"{topic}:"
        self._pids = (service_pid, producer_pid)
        self._sent = sent
        self.started = started
        self.samples: list[Sample] = []
        self._last = (started, cpu_seconds(service_pid), cpu_seconds(producer_pid))
        self._machine = machine_times()

    def logged(self) -> int:
        """Input records the log holds: the stored positions of the input partitions, summed."""
        positions = self._store.positions()
        return sum(p for source, p in positions.items() if source.startswith(self._prefix))

    def sample(self) -> Sample:
        """Take one sample now."""
        service_pid, producer_pid = self._pids
        now = time.perf_counter()
        offered = int(self._sent.value)
        logged = self.logged()
        service, producer = cpu_seconds(service_pid), cpu_seconds(producer_pid)
        busy, total = machine_times()
        then, service_before, producer_before = self._last
        busy_before, total_before = self._machine
        span = max(now - then, 1e-6)
        reading = Sample(
            t=now - self.started,
            offered=offered,
            logged=logged,
            rss_mb=rss_mb(service_pid),
            service_cpu=100 * (service - service_before) / span,
            producer_cpu=100 * max(0.0, producer - producer_before) / span,
            machine_cpu=100 * (busy - busy_before) / max(total - total_before, 1.0),
        )
        self._last = (now, service, producer or producer_before)
        self._machine = (busy, total)
        self.samples.append(reading)
        return reading

    def wait_next(self) -> None:
        """Sleep until the next whole second of the run."""
        elapsed = time.perf_counter() - self.started
        time.sleep(max(0.0, SAMPLE_S - elapsed % SAMPLE_S))


# --- the figures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One window of the time series."""

    start: float
    end: float
    offered_rate: float
    logged_rate: float
    lag: int  # at the window's end
    rss_mb: float  # at the window's end
    service_cpu: float  # mean over the window
    machine_cpu: float


def windows(samples: Sequence[Sample], width: float = WINDOW_S) -> list[Window]:
    """The samples cut into windows of `width` seconds (the last may be shorter).

    A window runs from the last sample of the window before (t = 0, nothing offered or
    logged, for the first) to its own last sample; a sample taken up to half a sampling
    interval after a boundary still belongs to the window that ends there.
    """
    if not samples:
        return []
    result: list[Window] = []
    origin = Sample(0.0, 0, 0, samples[0].rss_mb, 0.0, 0.0, 0.0)
    first = origin
    bucket: list[Sample] = []
    boundary = width
    for reading in samples:
        while reading.t > boundary + SAMPLE_S / 2:
            if bucket:
                result.append(_window(first, bucket))
                first = bucket[-1]
                bucket = []
            boundary += width
        bucket.append(reading)
    if bucket:
        result.append(_window(first, bucket))
    return result


def _window(before: Sample, bucket: Sequence[Sample]) -> Window:
    last = bucket[-1]
    span = max(last.t - before.t, 1e-9)
    return Window(
        start=before.t,
        end=last.t,
        offered_rate=(last.offered - before.offered) / span,
        logged_rate=(last.logged - before.logged) / span,
        lag=last.lag,
        rss_mb=last.rss_mb,
        service_cpu=sum(s.service_cpu for s in bucket) / len(bucket),
        machine_cpu=sum(s.machine_cpu for s in bucket) / len(bucket),
    )


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of y over x; 0 with fewer than two distinct x."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


@dataclass(frozen=True)
class Replayed:
    """What `reconciler replay` said about the log after the run."""

    exit_code: int
    honest: bool = False
    decisions_recorded: int = 0
    decisions_rederived: int = 0
    differences: int = 0
    facts: int = 0
    balanced: bool = False
    money: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        """Every recorded decision re-derived, and no other."""
        return (
            self.exit_code == 0
            and self.honest
            and self.differences == 0
            and self.decisions_recorded == self.decisions_rederived
        )

    @classmethod
    def of(cls, exit_code: int, document: dict[str, Any] | None, seconds: float) -> Replayed:
        """From the replay's exit code and its JSON document (None when it printed none)."""
        if document is None:
            return cls(exit_code, seconds=seconds)
        return cls(
            exit_code=exit_code,
            honest=bool(document.get("honest")),
            decisions_recorded=int(document.get("decisions_recorded", 0)),
            decisions_rederived=int(document.get("decisions_rederived", 0)),
            differences=len(document.get("differences", [])),
            facts=int(document.get("facts", 0)),
            balanced=bool(document.get("balanced")),
            money={k: int(v) for k, v in document.get("money", {}).items()},
            seconds=seconds,
        )


@dataclass(frozen=True)
class Summary:
    """The run's figures and verdict."""

    target_rate: float
    target_seconds: float
    offered: int
    offer_seconds: float
    logged: int
    drained: bool
    drain_seconds: float  # from the offer's end until the lag was 0 (or the timeout)
    logged_rate_offer: float  # logged during the offer over its seconds
    logged_rate_run: float  # every record logged over the time from start to drained
    logged_rate_drain: float  # during the drain, when the producer was done
    window_min: float  # logged/s over the full windows of the offer
    window_max: float
    lag_max: int
    lag_at_offer_end: int
    rss_idle_mb: float  # before the offer
    rss_warm_mb: float  # WARM_UP_S into the offer
    rss_max_mb: float
    rss_end_mb: float
    rss_slope_mb_per_million: float  # after the warm-up, over records logged
    rss_slope_late_mb_per_million: float  # over the second half of the records logged
    service_cpu_offer: float  # mean percent of one core during the offer
    producer_cpu_offer: float
    machine_cpu_offer: float
    bare_rate: float
    replay: Replayed
    service_exit: int | None
    notes: list[str] = field(default_factory=list)  # printed under the table

    @property
    def offered_rate(self) -> float:
        """The rate actually offered."""
        return self.offered / self.offer_seconds if self.offer_seconds > 0 else 0.0

    @property
    def ratio(self) -> float:
        """The service's logged rate over the run, over the bare consumer's rate."""
        return self.logged_rate_run / self.bare_rate if self.bare_rate > 0 else 0.0

    @property
    def held(self) -> bool:
        """Throughput held: logged during the offer at least HELD_SHARE of the offered rate."""
        return self.logged_rate_offer >= HELD_SHARE * self.offered_rate

    @property
    def lag_bounded(self) -> bool:
        """The lag never exceeded LAG_BOUND_S seconds of the offered rate."""
        return self.lag_max <= LAG_BOUND_S * self.offered_rate

    @property
    def memory_flat(self) -> bool:
        """RSS grew at most FLAT_MB_PER_MILLION per million records over the second half."""
        return self.rss_slope_late_mb_per_million <= FLAT_MB_PER_MILLION

    @property
    def passed(self) -> bool:
        """Issue 8's four: throughput held, lag bounded, memory flat, decisions correct.

        And drained in time. This is the exit status.
        """
        return (
            self.drained
            and self.replay.verified
            and self.held
            and self.lag_bounded
            and self.memory_flat
        )

    def as_json(self) -> dict[str, Any]:
        """For --json."""
        return asdict(self) | {
            "offered_rate": self.offered_rate,
            "ratio": self.ratio,
            "held": self.held,
            "lag_bounded": self.lag_bounded,
            "memory_flat": self.memory_flat,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class RunFacts:
    """What the run observed, before it is summarised."""

    target_rate: float
    target_seconds: float
    offer: OfferDone
    drained: bool
    rss_idle_mb: float
    bare_rate: float
    replay: Replayed
    service_exit: int | None
    notes: list[str] = field(default_factory=list)


def summarize(samples: Sequence[Sample], run: RunFacts) -> Summary:
    """The figures of a run from its samples (t = 0 at the offer's start)."""
    offer_end = run.offer.seconds
    # The offer's end is read at the first sample after the producer's last ack (sampled
    # each second, so up to a second late), or a hair before it.
    ended = next(
        (i for i, s in enumerate(samples) if s.t >= offer_end - SAMPLE_S / 2), len(samples) - 1
    )
    during = list(samples[: ended + 1])
    at_offer_end = during[-1]
    last = samples[-1]
    full = [
        w
        for w in windows(samples)
        if w.end <= offer_end + SAMPLE_S and w.end - w.start >= WINDOW_S - 1.5 * SAMPLE_S
    ]
    warm = next((s for s in samples if s.t >= WARM_UP_S), samples[0])
    after_warm = [s for s in samples if s.t >= warm.t]
    late = [s for s in after_warm if s.logged >= last.logged / 2]
    drain_span = last.t - at_offer_end.t
    return Summary(
        target_rate=run.target_rate,
        target_seconds=run.target_seconds,
        offered=run.offer.sent,
        offer_seconds=run.offer.seconds,
        logged=last.logged,
        drained=run.drained,
        drain_seconds=max(0.0, last.t - offer_end),
        logged_rate_offer=at_offer_end.logged / at_offer_end.t if at_offer_end.t > 0 else 0.0,
        logged_rate_run=last.logged / last.t if last.t > 0 else 0.0,
        logged_rate_drain=(
            (last.logged - at_offer_end.logged) / drain_span if drain_span > 0 else 0.0
        ),
        window_min=min((w.logged_rate for w in full), default=0.0),
        window_max=max((w.logged_rate for w in full), default=0.0),
        lag_max=max(s.lag for s in samples),
        lag_at_offer_end=at_offer_end.lag,
        rss_idle_mb=run.rss_idle_mb,
        rss_warm_mb=warm.rss_mb,
        rss_max_mb=max(s.rss_mb for s in samples),
        rss_end_mb=last.rss_mb,
        rss_slope_mb_per_million=slope([(s.logged / 1e6, s.rss_mb) for s in after_warm]),
        rss_slope_late_mb_per_million=slope([(s.logged / 1e6, s.rss_mb) for s in late]),
        service_cpu_offer=sum(s.service_cpu for s in during) / len(during),
        producer_cpu_offer=sum(s.producer_cpu for s in during) / len(during),
        machine_cpu_offer=sum(s.machine_cpu for s in during) / len(during),
        bare_rate=run.bare_rate,
        replay=run.replay,
        service_exit=run.service_exit,
        notes=list(run.notes),
    )


# --- tables ---------------------------------------------------------------------------------


def summary_table(summary: Summary) -> Table:
    """The figures, one row each."""
    table = Table(title="Sustained load (issue 8, point 3)", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    replay = summary.replay
    money = replay.money
    rows = [
        ("offered rate: target", f"{summary.target_rate:,.0f}/s for {summary.target_seconds:g} s"),
        (
            "offered rate: achieved",
            (
                f"{summary.offered_rate:,.0f}/s ({summary.offered:,} records in "
                f"{summary.offer_seconds:.1f} s)"
            ),
        ),
        ("logged: mean during the offer", f"{summary.logged_rate_offer:,.0f}/s"),
        (
            f"logged: per {WINDOW_S:g} s window of the offer, min / max",
            f"{summary.window_min:,.0f} / {summary.window_max:,.0f}/s",
        ),
        ("logged: mean during the drain", f"{summary.logged_rate_drain:,.0f}/s"),
        (
            "logged: mean over the run (start to drained)",
            f"{summary.logged_rate_run:,.0f}/s ({summary.logged:,} records)",
        ),
        ("bare kafka-python consume, same topic", f"{summary.bare_rate:,.0f}/s"),
        ("ratio, service over bare", f"{summary.ratio:.2f}"),
        ("lag: max", f"{summary.lag_max:,} records"),
        ("lag: at the end of the offer", f"{summary.lag_at_offer_end:,} records"),
        (
            "lag: time to drain after the offer",
            f"{summary.drain_seconds:.0f} s" + ("" if summary.drained else " (TIMED OUT)"),
        ),
        (
            "service RSS: idle / after warm-up / max / end",
            (
                f"{summary.rss_idle_mb:,.0f} / {summary.rss_warm_mb:,.0f} / "
                f"{summary.rss_max_mb:,.0f} / {summary.rss_end_mb:,.0f} MB"
            ),
        ),
        (
            "service RSS slope: after warm-up / second half",
            (
                f"{summary.rss_slope_mb_per_million:,.1f} / "
                f"{summary.rss_slope_late_mb_per_million:,.1f} MB per million records"
            ),
        ),
        (
            "CPU during the offer: service / producer / machine",
            (
                f"{summary.service_cpu_offer:.0f}% / {summary.producer_cpu_offer:.0f}% of a core"
                f" / {summary.machine_cpu_offer:.0f}% of all cores"
            ),
        ),
        (
            "decisions verified (replay)",
            (
                f"{'yes' if replay.verified else 'NO'}: exit {replay.exit_code}, "
                f"{replay.decisions_rederived:,} of {replay.decisions_recorded:,} re-derived, "
                f"{replay.differences} differences, {replay.facts:,} facts ({replay.seconds:.0f} s)"
            ),
        ),
        (
            "money conserved (replay)",
            f"{'yes' if replay.balanced else 'NO'}: " + _money_line(money) if money else "unknown",
        ),
        ("service exit status (SIGTERM)", str(summary.service_exit)),
        (
            f"throughput held (logged >= {HELD_SHARE:.0%} of offered)",
            _yes(summary.held),
        ),
        (f"lag bounded (never over {LAG_BOUND_S:g} s of the offer)", _yes(summary.lag_bounded)),
        (
            f"memory flat (second half <= {FLAT_MB_PER_MILLION:g} MB per million records)",
            _yes(summary.memory_flat),
        ),
        ("verdict", "PASS" if summary.passed else "FAIL"),
    ]
    for figure, value in rows:
        table.add_row(figure, value)
    return table


def _yes(held: bool) -> str:  # noqa: FBT001 - a verdict cell
    return "yes" if held else "NO"


def _money_line(money: dict[str, int]) -> str:
    return ", ".join(f"{name} Rp {amount:,}" for name, amount in money.items())


def series_table(rows: Sequence[Window]) -> Table:
    """The time series, one row per window."""
    table = Table(title=f"Per {WINDOW_S:g} s", title_justify="left")
    for name in ("window (s)", "offered/s", "logged/s", "lag", "RSS MB", "service CPU", "machine"):
        table.add_column(name, justify="right")
    for w in rows:
        table.add_row(
            f"{w.start:.0f}-{w.end:.0f}",
            f"{w.offered_rate:,.0f}",
            f"{w.logged_rate:,.0f}",
            f"{w.lag:,}",
            f"{w.rss_mb:,.0f}",
            f"{w.service_cpu:.0f}%",
            f"{w.machine_cpu:.0f}%",
        )
    return table


# --- the run --------------------------------------------------------------------------------


class RunFailedError(RuntimeError):
    """The run could not be carried out (not a measured failure)."""


def log_events(log_path: Path) -> Iterator[dict[str, Any]]:
    """The service's JSON log lines (others skipped)."""
    with log_path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


def wait_ready(log_path: Path, service: subprocess.Popen[bytes], partitions: int) -> None:
    """Wait until the service has logged `partition_ready` for every partition."""
    deadline = time.perf_counter() + READY_TIMEOUT_S
    while time.perf_counter() < deadline:
        if service.poll() is not None:
            message = f"the service exited with {service.returncode}; see {log_path}"
            raise RunFailedError(message)
        ready = {
            e.get("source") for e in log_events(log_path) if e.get("event") == "partition_ready"
        }
        if len(ready) >= partitions:
            return
        time.sleep(0.5)
    message = f"the service was not ready in {READY_TIMEOUT_S:g} s; see {log_path}"
    raise RunFailedError(message)


def stop_service(service: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM, then wait; kill after STOP_TIMEOUT_S. Its exit status (None if killed)."""
    if service.poll() is None:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
            return None
    return service.returncode


def run_replay(dsn: str, schema: str) -> Replayed:
    """`reconciler replay --in-memory --format json` over the schema."""
    started = time.perf_counter()
    progress("replaying the log: re-deriving every decision")
    completed = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "reconciler",
            "replay",
            "--store",
            dsn,
            "--schema",
            schema,
            "--in-memory",
            "--format",
            "json",
        ],
        capture_output=True,
        check=False,
        timeout=REPLAY_TIMEOUT_S,
    )
    seconds = time.perf_counter() - started
    try:
        document = json.loads(completed.stdout)
    except ValueError:
        sys.stderr.write(completed.stderr.decode(errors="replace")[-4000:])
        document = None
    return Replayed.of(completed.returncode, document, seconds)


@dataclass
class Options:
    """The command line."""

    rate: float = RATE
    seconds: float = SECONDS
    drain_timeout: float = DRAIN_TIMEOUT_S
    service_env: dict[str, str] = field(default_factory=dict)
    json_path: Path | None = None
    keep_log: Path | None = None


def measure(bootstrap: str, dsn: str, options: Options) -> tuple[Summary, list[Sample]]:
    """The whole run on this broker and PostgreSQL."""
    topic = f"load-{uuid.uuid4().hex[:8]}"
    with (
        fresh_schema(dsn, "load") as schema,
        tempfile.TemporaryDirectory(prefix="reconciler-load-") as scratch,
    ):
        log_path = options.keep_log or Path(scratch) / "service.log"
        settings = service_settings(
            dsn,
            schema,
            bootstrap,
            topic,
            input_partitions=PARTITIONS,
            batch_max_records=MAX_RECORDS,
            relay=True,
            ticker=False,
        )
        create_topics(bootstrap, service_topics(settings))
        store = PostgresLogStore(dsn, schema=schema)
        store.create_tables()
        plan = OfferPlan(bootstrap, topic, options.rate, options.seconds)
        context = multiprocessing.get_context("spawn")
        sent = context.RawValue("q", 0)
        ready, go, done = context.Event(), context.Event(), context.Queue()
        producer = context.Process(
            target=producer_main, args=(plan, sent, ready, go, done), name="load producer"
        )
        progress(f"building {plan.total:,} records; starting the service")
        producer.start()
        service = service_process(settings, log_path, options.service_env)
        try:
            wait_ready(log_path, service, PARTITIONS)
            if not ready.wait(READY_TIMEOUT_S * 3):
                message = "the producer did not finish building its records"
                raise RunFailedError(message)
            rss_idle = rss_mb(service.pid)
            started = time.perf_counter()
            go.set()
            sampler = Sampler(
                store=store,
                topic=topic,
                service_pid=service.pid,
                producer_pid=producer.pid or 0,
                sent=sent,
                started=started,
            )
            offer = _offer(sampler, done, plan)
            drained = _drain(sampler, offer.sent, options.drain_timeout)
        finally:
            service_exit = stop_service(service)
            go.set()
            producer.join(timeout=30)
            if producer.is_alive():
                producer.kill()
            store.close()
        progress("service stopped; bare kafka-python consuming the same topic\n")
        bare = bare_consume_rate(bootstrap, topic, offer.sent)
        replay = run_replay(dsn, schema)
        progress("")
        _note_log(log_path)
    summary = summarize(
        sampler.samples,
        RunFacts(
            options.rate,
            options.seconds,
            offer,
            drained,
            rss_idle,
            bare,
            replay,
            service_exit,
            [cold_tier_note(settings, options.service_env), flush_note(offer)],
        ),
    )
    return summary, sampler.samples


def cold_tier_note(settings: ServiceSettings, extra_env: dict[str, str]) -> str:
    """Which cold tier the service ran with: memory is flat only with one."""
    value = extra_env.get(
        "RECONCILER_STATE_COLD_AFTER", settings.model_dump().get("state_cold_after")
    )
    if value is None:
        return "service: this build has no state_cold_after setting (every order in memory)"
    if str(value) == "0":
        return "service: state_cold_after = 0 (cold tier off: every order in memory)"
    return f"service: state_cold_after = {value} (orders a partition keeps in memory)"


def flush_note(offer: OfferDone) -> str:
    """Offered counts records handed to kafka-python; its final flush saw the last acked."""
    return (
        f"offered = records handed to the producer client; its final flush (acks=all) took"
        f" {offer.flush_seconds:.1f} s and is inside the offer's {offer.seconds:.1f} s"
    )


def _offer(sampler: Sampler, done: Any, plan: OfferPlan) -> OfferDone:  # noqa: ANN401 - a Queue
    """Sample until the producer reports its end."""
    while True:
        sampler.wait_next()
        reading = sampler.sample()
        progress(
            f"offer {reading.t:5.0f} s: offered {reading.offered:,} of {plan.total:,},"
            f" logged {reading.logged:,}, lag {reading.lag:,}, RSS {reading.rss_mb:,.0f} MB"
        )
        if not done.empty():
            result: OfferDone = done.get()
            if result.error is not None:
                message = f"the producer failed after {result.sent:,} records: {result.error}"
                raise RunFailedError(message)
            sys.stderr.write("\n")
            return result


def _drain(sampler: Sampler, offered: int, timeout_s: float) -> bool:
    """Sample until everything offered is logged; False on the timeout."""
    deadline = time.perf_counter() + timeout_s
    while True:
        sampler.wait_next()
        reading = sampler.sample()
        progress(
            f"drain {reading.t:5.0f} s: logged {reading.logged:,} of {offered:,},"
            f" lag {reading.lag:,}, RSS {reading.rss_mb:,.0f} MB"
        )
        if reading.logged >= offered:
            sys.stderr.write("\n")
            return True
        if time.perf_counter() > deadline:
            sys.stderr.write("\n")
            return False


def _note_log(log_path: Path) -> None:
    """Say on stderr what the service's own log counted (batches, dead letters, decisions)."""
    totals = {"records": 0, "facts": 0, "duplicates": 0, "dead_letters": 0, "decisions": 0}
    batches = warnings = 0
    for event in log_events(log_path):
        if event.get("event") == "batch":
            batches += 1
            for name in totals:
                totals[name] += int(event.get(name, 0))
        elif event.get("level") in {"warning", "error", "critical"}:
            warnings += 1
    counted = ", ".join(f"{name} {count:,}" for name, count in totals.items())
    sys.stderr.write(f"service log: {batches:,} batches; {counted}; {warnings} warnings\n")


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """The command line, parsed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=RATE, help="records offered per second")
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long the offer runs")
    parser.add_argument(
        "--drain-timeout", type=float, default=DRAIN_TIMEOUT_S, help="longest drain, seconds"
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the service (repeatable)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep-log", type=Path, default=None, help="the service's log file")
    arguments = parser.parse_args(argv)
    extra: dict[str, str] = {}
    for item in arguments.service_env:
        name, separator, value = item.partition("=")
        if not separator:
            parser.error(f"--service-env {item!r}: expected NAME=VALUE")
        extra[name] = value
    return Options(
        arguments.rate,
        arguments.seconds,
        arguments.drain_timeout,
        extra,
        arguments.json,
        arguments.keep_log,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run on the configured or started broker and PostgreSQL; print; 0 only on a pass."""
    options = parse_options(argv)
    configure_logging(level=logging.WARNING)
    with kafka_bootstrap() as bootstrap, postgres_dsn() as dsn:
        summary, samples = measure(bootstrap, dsn, options)
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)
    console.print(summary_table(summary))
    for note in summary.notes:
        console.print(note)
    console.print(series_table(windows(samples)))
    if options.json_path is not None:
        options.json_path.write_text(
            json.dumps(
                {"summary": summary.as_json(), "samples": [asdict(s) for s in samples]}, indent=1
            ),
            encoding="utf-8",
        )
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
