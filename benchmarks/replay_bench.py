"""The auditors' replay over a PostgreSQL log, beside raw reading of the same rows.

A realistic log is built first, in a fresh schema: registration-peak facts (the stream
`workload.peak_stream` makes, one at a time) keyed by order into 4 sources, as
the service's partitions hold them, each tick copied into every source, run through
the real `Engine` into a `PostgresLogStore` in batches of 20,000 input records. The
build is timed, then the table vacuumed and analyzed (a log at rest: autovacuum would
otherwise scan it during the measurements). Then, in the same run, over the same rows:

- the baseline: a bare psycopg connection reading every row of that `records` table
  in position order (keyset pages of 5,000, binary, the columns the store reads) and
  `json.loads` of each payload;
- `replay (verify decisions)`: `replay_log(store, InMemory(rules))` over the whole
  log, which must find no difference;
- `replay into shadow`: `replay_log(store, IntoShadow(rules, shadow))` into a second,
  empty schema, i.e. the engine re-run over the log's facts, writing facts and
  decisions to the shadow (no difference either);
- `read models rebuild`: `Projector(shadow, rules).rebuild()` over that shadow.

The baseline and the in-memory replay are run five times, alternately; the best of
each counts, on the wall clock and (steadier on shared cores) on this process's CPU
time. The shadow and the rebuild are run once (each needs a fresh schema).

The memory benchmark builds a log of `--events` facts the same way, then replays it
(in memory) in a child process that reads its own resident set size at checkpoints,
from the progress callback, and its peak (`VmHWM`). `--trace` also runs tracemalloc in
the child and prints the top allocation sites (slow: use a smaller log).

`python benchmarks/replay_bench.py [rates|memory] [--facts N] [--events N] [--trace]`
runs it alone. PostgreSQL comes from `servers.py`. Every schema is dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from psycopg import sql

from reconciler.domain.events import ClockTicked
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.projections.projector import Projector
from reconciler.replay.deciders import InMemory, IntoShadow
from reconciler.replay.rederive import ReplayResult, replay_log
from reconciler.runtime import tune_for_throughput
from reconciler.store import PostgresLogStore
from servers import fresh_schema, postgres_dsn
from terminal import progress
from workload import peak_stream

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from reconciler.domain.events import Fact
    from reconciler.domain.state import State
    from reconciler.replay.deciders import Rederiver

LOG_FACTS = 300_000
MEMORY_EVENTS = 10_000_000  # issue 7's figure: peak memory of a 10-million-event replay
SOURCES = 4
BUILD_BATCH = 20_000
READ_PAGE = 5_000
RUNS = 5
CHILD_DSN = "RECONCILER_REPLAY_BENCH_DSN"
BYTES_PER_MB = 1 << 20


# -- the log ------------------------------------------------------------------------------


def input_batches(count: int, size: int = BUILD_BATCH) -> Iterator[list[InputRecord]]:
    """`count` peak facts as input records of 4 sources, keyed by order, in batches.

    A tick goes to every source, with the source in its event_id, since every source
    keeps its own clock (as `tests.service_support.produce_lines` does for Kafka).
    """
    offsets = [0] * SOURCES
    batch: list[InputRecord] = []

    def add(number: int, fact: Fact) -> None:
        offsets[number] += 1
        raw = fact.model_dump_json().encode()
        batch.append(InputRecord(f"bench:{number}", offsets[number], raw, fact))

    for fact in peak_stream(count):
        if isinstance(fact, ClockTicked):
            for number in range(SOURCES):
                add(number, fact.model_copy(update={"event_id": f"{fact.event_id}/p{number}"}))
        else:
            order_id: str = getattr(fact, "order_id", "")
            add(zlib.crc32(order_id.encode()) % SOURCES, fact)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True)
class BuiltLog:
    """A log built through the engine, and how long that took."""

    facts: int  # peak facts generated (ticks counted once)
    records: int  # facts (ticks once per source) and decisions in the log
    decisions: int
    seconds: float

    @property
    def rate(self) -> float:
        """Records logged per second, generation included."""
        return self.records / self.seconds


def build_log(dsn: str, schema: str, facts: int) -> BuiltLog:
    """Run `facts` peak facts through the engine into a new log in `schema`."""
    store = PostgresLogStore(dsn, schema=schema)
    try:
        store.create_tables()
        engine = Engine(Rules(), store)
        decisions = 0
        started = time.perf_counter()
        for batch in input_batches(facts):
            decisions += len(engine.process(batch).recorded)
            logged = store.last_position()
            elapsed = time.perf_counter() - started
            progress(
                f"building the log in {schema}: {logged:,} records ({logged / elapsed:,.0f}/s)"
            )
        seconds = time.perf_counter() - started
        records = store.last_position()
    finally:
        store.close()
    # A log at rest: autovacuum would otherwise scan the new table during the measurements.
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, "records")))
    progress(f"built {records:,} records ({decisions:,} decisions) in {seconds:.1f} s\n")
    return BuiltLog(facts, records, decisions, seconds)


# -- rates --------------------------------------------------------------------------------


def raw_read(dsn: str, schema: str) -> int:
    """The baseline: every row in position order, keyset pages, and `json.loads` of each payload."""
    query = sql.SQL(
        "SELECT position, kind, record_id, type, payload, source, recorded_hash"
        " FROM {} WHERE position > %s ORDER BY position LIMIT %s"
    ).format(sql.Identifier(schema, "records"))
    rows = 0
    with psycopg.connect(dsn, autocommit=True) as connection:
        after = 0
        while page := connection.execute(query, (after, READ_PAGE), binary=True).fetchall():
            for row in page:
                json.loads(row[4])
            rows += len(page)
            after = page[-1][0]
    return rows


def replay(store: PostgresLogStore, rederiver: Rederiver, records: int) -> ReplayResult:
    """Replay the whole log; refuse a replay that read less or found a difference."""
    result = replay_log(store, rederiver)
    if result.records_read != records or not result.honest:
        message = (
            f"the replay read {result.records_read:,} of {records:,} records and found"
            f" {len(result.differences):,} differences: it measures nothing"
        )
        raise RuntimeError(message)
    return result


@dataclass(frozen=True)
class ReplayRates:
    """Records per second of each, over the same log, measured in the same run."""

    log: BuiltLog
    raw_rate: float
    verify_rate: float
    shadow_rate: float
    rebuild_rate: float
    # The same pair on this process's CPU time: steadier when other work shares the cores.
    raw_cpu_rate: float
    verify_cpu_rate: float

    @property
    def records(self) -> int:
        """The records of the log."""
        return self.log.records


class Best:
    """The shortest wall and CPU times (of this process) among the calls timed."""

    def __init__(self) -> None:
        """Nothing timed yet."""
        self.wall = self.cpu = float("inf")

    def time(self, work: Callable[[], object]) -> float:
        """Call `work` once; return its wall time in seconds."""
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        self.wall, self.cpu = min(self.wall, wall), min(self.cpu, cpu)
        return wall


def measure_rates(dsn: str, facts: int = LOG_FACTS) -> ReplayRates:
    """Build a log, then time raw reading, the replay, the shadow replay and the rebuild."""
    rules = Rules()
    with fresh_schema(dsn, "bench_replay") as schema:
        log = build_log(dsn, schema, facts)
        records = log.records
        store = PostgresLogStore(dsn, schema=schema)
        try:
            raw, verify = Best(), Best()
            for run in range(1, RUNS + 1):
                progress(f"raw read vs replay: run {run} of {RUNS}, {records:,} records each")
                raw.time(lambda: raw_read(dsn, schema))
                verify.time(lambda: replay(store, InMemory(rules), records))
            progress(f"replay into a shadow schema: {records:,} records")
            with fresh_schema(dsn, "bench_replay_shadow") as shadow_schema:
                shadow = PostgresLogStore(dsn, schema=shadow_schema)
                try:
                    shadow.create_tables()
                    shadow_seconds = Best().time(
                        lambda: replay(store, IntoShadow(rules, shadow), records)
                    )
                    progress(f"read models rebuilt from the shadow: {records:,} records")
                    rebuild_seconds = Best().time(lambda: Projector(shadow, rules).rebuild())
                finally:
                    shadow.close()
        finally:
            store.close()
    progress(f"replay benchmarks done over {records:,} records\n")
    return ReplayRates(
        log,
        records / raw.wall,
        records / verify.wall,
        records / shadow_seconds,
        records / rebuild_seconds,
        records / raw.cpu,
        records / verify.cpu,
    )


# -- memory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryProfile:
    """The replaying process's resident set at checkpoints, its peak, and what it held."""

    log: BuiltLog
    checkpoints: list[tuple[int, float, float]]  # (records replayed, RSS MB, seconds)
    start_mb: float  # before the first page
    peak_mb: float
    seconds: float
    orders: int  # orders the deciders know at the end, archived ones included
    payments: int
    serials: int
    resident_orders: int  # of those, the ones still in memory (the rest in the cold tier)

    @property
    def slope(self) -> float:
        """MB per million records, least squares over the checkpoints."""
        if len(self.checkpoints) < 2:
            return 0.0
        xs = [records / 1e6 for records, _, _ in self.checkpoints]
        ys = [rss for _, rss, _ in self.checkpoints]
        mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
        spread = sum((x - mean_x) ** 2 for x in xs)
        return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread

    def projected_mb(self, records: int) -> float:
        """The RSS a replay of `records` records would reach at this slope."""
        return self.start_mb + self.slope * records / 1e6

    @property
    def bytes_per_order(self) -> float:
        """What the replay grew by, per order its deciders hold."""
        return (self.peak_mb - self.start_mb) * BYTES_PER_MB / max(self.orders, 1)

    @property
    def bytes_per_record(self) -> float:
        """What the replay grew by, per record of the log."""
        return (self.peak_mb - self.start_mb) * BYTES_PER_MB / max(self.log.records, 1)


def status_mb(field: str) -> float:
    """A size from /proc/self/status (VmRSS, VmHWM) in MB; ru_maxrss where there is none."""
    try:
        lines = Path("/proc/self/status").read_text(encoding="ascii").splitlines()
    except OSError:  # pragma: no cover - not Linux
        import resource  # noqa: PLC0415 - Unix only, and only without /proc

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    message = f"no {field} in /proc/self/status"
    raise RuntimeError(message)


def archived_orders(state: State) -> int:
    """The orders a state moved to its cold tier (domain/archive.py)."""
    return 0 if state.archive is None else state.archive.archived_orders


def child_replay(schema: str, every: int, *, trace: bool) -> None:
    """In the child: replay in memory, print RSS checkpoints and the state's size as JSON."""
    tune_for_throughput()
    dsn = os.environ[CHILD_DSN]
    if trace:
        import tracemalloc  # noqa: PLC0415 - only when asked: it slows the replay down

        tracemalloc.start()
    store = PostgresLogStore(dsn, schema=schema)
    checkpoints: list[tuple[int, float, float]] = []
    next_checkpoint = every
    started = time.perf_counter()

    def checkpoint(position: int) -> None:
        nonlocal next_checkpoint
        if position >= next_checkpoint:
            rss = status_mb("VmRSS")
            checkpoints.append((position, rss, time.perf_counter() - started))
            next_checkpoint += every
            progress(f"replayed {position:,} records: RSS {rss:,.0f} MB")

    try:
        start_mb = status_mb("VmRSS")
        started = time.perf_counter()
        result = replay_log(store, InMemory(Rules()), progress=checkpoint)
        seconds = time.perf_counter() - started
        checkpoints.append((result.records_read, status_mb("VmRSS"), seconds))
    finally:
        store.close()
    progress(f"replayed {result.records_read:,} records in {seconds:.1f} s\n")
    if not result.honest:
        message = f"the replay found {len(result.differences):,} differences"
        raise RuntimeError(message)
    states = result.states.values()
    report = {
        "checkpoints": checkpoints,
        "start_mb": start_mb,
        "peak_mb": status_mb("VmHWM"),
        "seconds": seconds,
        "orders": sum(len(state.orders) + archived_orders(state) for state in states),
        "payments": sum(len(state.payments) for state in states),
        "serials": sum(len(state.serials) for state in states),
        "resident_orders": sum(len(state.orders) for state in states),
    }
    if trace:
        snapshot = tracemalloc.take_snapshot()
        for stat in snapshot.statistics("lineno")[:12]:
            sys.stderr.write(f"{stat.size / BYTES_PER_MB:9.1f} MB {stat.count:>10,} {stat}\n")
        traced, _ = tracemalloc.get_traced_memory()
        sys.stderr.write(f"{traced / BYTES_PER_MB:9.1f} MB traced in all\n")
    print(json.dumps(report))


def measure_memory(dsn: str, events: int = MEMORY_EVENTS, *, trace: bool = False) -> MemoryProfile:
    """Build a log of `events` peak facts, then replay it in a child process, watched."""
    every = max(events // 10, READ_PAGE)
    with fresh_schema(dsn, "bench_replay_memory") as schema:
        log = build_log(dsn, schema, events)
        command = [sys.executable, __file__, "child", schema, str(every)]
        if trace:
            command.append("--trace")
        child = subprocess.run(  # noqa: S603 - our own interpreter and script
            command,
            check=True,
            stdout=subprocess.PIPE,
            env={**os.environ, CHILD_DSN: dsn},
        )
    report = json.loads(child.stdout)
    return MemoryProfile(
        log,
        [(int(records), float(rss), float(at)) for records, rss, at in report["checkpoints"]],
        report["start_mb"],
        report["peak_mb"],
        report["seconds"],
        report["orders"],
        report["payments"],
        report["serials"],
        report["resident_orders"],
    )


def memory_table(profile: MemoryProfile) -> str:
    """The checkpoints as a small table, with the slope and bytes per order."""
    lines = [
        "records replayed   RSS MB   seconds   records/s since last",
        f"{0:>16,}   {profile.start_mb:6,.0f}   {0:7.1f}",
    ]
    last_records, last_at = 0, 0.0
    for records, rss, at in profile.checkpoints:
        rate = (records - last_records) / (at - last_at) if at > last_at else 0.0
        lines.append(f"{records:>16,}   {rss:6,.0f}   {at:7.1f}   {rate:>20,.0f}")
        last_records, last_at = records, at
    lines.append(
        f"peak {profile.peak_mb:,.0f} MB; slope {profile.slope:,.0f} MB per million records;"
        f" {profile.orders:,} orders known ({profile.resident_orders:,} in memory):"
        f" {profile.bytes_per_order:,.0f} bytes per order,"
        f" {profile.bytes_per_record:,.0f} per record;"
        f" at this slope 10M records would need {profile.projected_mb(10_000_000):,.0f} MB"
    )
    return "\n".join(lines)


def memory_json(profile: MemoryProfile) -> dict[str, object]:
    """What results.json keeps of a memory profile."""
    return asdict(profile) | {
        "slope_mb_per_million_records": profile.slope,
        "bytes_per_order": profile.bytes_per_order,
        "bytes_per_record": profile.bytes_per_record,
        "build_rate": profile.log.rate,
    }


def main() -> None:
    """Run the rates, the memory profile, or both; print what they found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=("rates", "memory", "both", "child"))
    parser.add_argument("schema", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("every", nargs="?", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--facts", type=int, default=LOG_FACTS, help="facts in the rates' log")
    parser.add_argument("--events", type=int, default=MEMORY_EVENTS, help="facts in the memory log")
    parser.add_argument("--trace", action="store_true", help="tracemalloc's top sites (slow)")
    arguments = parser.parse_args()
    what = arguments.what or "both"
    if what == "child":
        child_replay(arguments.schema, arguments.every, trace=arguments.trace)
        return
    tune_for_throughput()
    with postgres_dsn() as dsn:
        if what in {"rates", "both"}:
            rates = measure_rates(dsn, arguments.facts)
            print(
                f"log: {rates.records:,} records ({rates.log.decisions:,} decisions)"
                f" built through the engine in {rates.log.seconds:.1f} s"
                f" ({rates.log.rate:,.0f} records/s)\n"
                f"raw SELECT + json.loads: {rates.raw_rate:,.0f} records/s\n"
                f"replay (verify decisions): {rates.verify_rate:,.0f} records/s,"
                f" ratio {rates.verify_rate / rates.raw_rate:.2f} (target >= 0.5);"
                f" on CPU time {rates.verify_cpu_rate:,.0f} vs {rates.raw_cpu_rate:,.0f},"
                f" ratio {rates.verify_cpu_rate / rates.raw_cpu_rate:.2f}\n"
                f"replay into shadow: {rates.shadow_rate:,.0f} records/s,"
                f" ratio {rates.shadow_rate / rates.raw_rate:.2f}\n"
                f"read models rebuild: {rates.rebuild_rate:,.0f} records/s,"
                f" ratio {rates.rebuild_rate / rates.raw_rate:.2f}"
            )
        if what in {"memory", "both"}:
            profile = measure_memory(dsn, arguments.events, trace=arguments.trace)
            print(
                f"memory: {profile.log.records:,} records built in {profile.log.seconds:.1f} s,"
                f" replayed in {profile.seconds:.1f} s\n{memory_table(profile)}"
            )


if __name__ == "__main__":
    main()
