"""`make bench`: each figure beside a baseline measured in the same run.

These machines are noisy, so only ratios are compared with targets. Results are printed
as a table and written to benchmarks/results.json for the README.

`python benchmarks/run.py [NAME ...]` runs only the named benchmarks (decider,
reconcile, store, service, latency, replay, memory) and then leaves results.json alone. The
store, service, replay and memory benchmarks need PostgreSQL, the service Kafka too:
see servers.py (configured, or started here).
See benchmarks/README.md for what each one measures.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from reconciler.domain.decider import Decider
from reconciler.domain.rules import Rules
from reconciler.domain.state import State
from reconciler.logging import configure_logging
from reconciler.reconcile import reconcile_file
from reconciler.runtime import tune_for_throughput
from reconciler.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
import latency_bench
import replay_bench
import service_bench
import store_bench
from servers import kafka_bootstrap, postgres_dsn
from workload import peak_facts, peak_stream

if TYPE_CHECKING:
    from collections.abc import Callable

DECIDER_FACTS = 300_000
FILE_LINES = 1_000_000  # issue 7: a 1-million-line file


@dataclass(frozen=True)
class Figure:
    """One measured rate beside its baseline and the target ratio or rate."""

    name: str
    rate: float
    unit: str
    baseline_name: str
    baseline_rate: float
    target: str

    @property
    def ratio(self) -> float:
        """How the figure compares with its baseline (higher is better, but for memory, latency)."""
        return self.rate / self.baseline_rate


@dataclass
class Extras:
    """What some benchmarks report beside their rows: lines under the table, JSON details."""

    notes: list[str] = field(default_factory=list)
    details: dict[str, object] = field(default_factory=dict)


def best_of(runs: int, work: object) -> float:
    """The shortest wall time of `runs` calls of `work`, in seconds."""
    assert callable(work)  # noqa: S101 - a programming error, not input
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def decode_each(lines: list[str] | list[bytes]) -> None:
    """The baseline: bare `json.loads` of every line."""
    for line in lines:
        json.loads(line)


def bench_decider() -> Figure:
    """The pure decider alone, against bare json.loads of the same facts."""
    facts = peak_facts(DECIDER_FACTS)
    lines = [fact.model_dump_json() for fact in facts]
    rules = Rules()

    def decide_all() -> None:
        decider = Decider(rules, State())
        for fact in facts:
            decider.decide(fact)

    decide_seconds = best_of(3, decide_all)
    decode_seconds = best_of(3, lambda: decode_each(lines))
    return Figure(
        "decider (one core)",
        len(facts) / decide_seconds,
        "facts/s",
        "json.loads",
        len(lines) / decode_seconds,
        ">= 300,000 facts/s",
    )


def bench_reconcile(directory: Path) -> Figure:
    """`reconcile` of a JSONL file (parse, validate, log, decide) against json.loads."""
    path = directory / "events.jsonl"
    lines = 0
    with path.open("w", encoding="utf-8") as handle:
        # Written as generated: a million facts and their JSON need not be held at once.
        for fact in peak_stream(FILE_LINES):
            handle.write(fact.model_dump_json() + "\n")
            lines += 1

    def reconcile_all() -> None:
        store = open_store("sqlite://:memory:")
        try:
            reconcile_file(path, Rules(), store)
        finally:
            store.close()

    def decode_file() -> None:
        # Read line by line, as reconcile does: the file is not held in memory by either.
        with path.open("rb") as handle:
            for line in handle:
                json.loads(line)

    # Alternated, best of each: the other work on shared cores comes and goes.
    reconcile_seconds = decode_seconds = float("inf")
    for _ in range(2):
        decode_seconds = min(decode_seconds, best_of(2, decode_file))
        reconcile_seconds = min(reconcile_seconds, best_of(1, reconcile_all))
    return Figure(
        "reconcile JSONL file",
        lines / reconcile_seconds,
        "lines/s",
        "json.loads per line",
        lines / decode_seconds,
        "<= 5x slower (ratio >= 0.2)",
    )


def bench_store(dsn: str) -> Figure:
    """The PostgreSQL log's append against raw binary COPY of the same rows."""
    figure = store_bench.measure(dsn)
    return Figure(
        "facts appended to PostgreSQL",
        figure.store_rate,
        "facts/s",
        "raw psycopg COPY of the same rows",
        figure.copy_rate,
        ">= 0.4",
    )


def bench_service(bootstrap: str, dsn: str) -> Figure:
    """Records through the service (Kafka to the log) against bare kafka-python consumption."""
    result = service_bench.measure(bootstrap, dsn)
    return Figure(
        "end to end through Kafka (service)",
        result.service_rate,
        "records/s",
        "bare kafka-python consume",
        result.bare_rate,
        ">= 0.7",
    )


def bench_replay(dsn: str, extras: Extras) -> list[Figure]:
    """The auditors' replay (in memory, into a shadow) and the read models' rebuild."""
    rates = replay_bench.measure_rates(dsn)
    baseline = "raw SELECT + json.loads"
    log = rates.log
    extras.notes.append(
        f"replay: a log of {log.records:,} records ({log.decisions:,} decisions), built through"
        f" the engine in {log.seconds:.1f} s ({log.rate:,.0f} records/s).\nOn this process's"
        f" CPU time (steadier on shared cores) the replay's ratio is"
        f" {rates.verify_cpu_rate / rates.raw_cpu_rate:.2f}."
    )
    extras.details["replay_cpu_time"] = {
        "raw_rate": rates.raw_cpu_rate,
        "verify_rate": rates.verify_cpu_rate,
        "ratio": rates.verify_cpu_rate / rates.raw_cpu_rate,
    }
    extras.details["replay_log"] = asdict(log)
    return [
        Figure(
            "replay (verify decisions)",
            rates.verify_rate,
            "records/s",
            baseline,
            rates.raw_rate,
            ">= 0.5",
        ),
        Figure("replay into shadow", rates.shadow_rate, "records/s", baseline, rates.raw_rate, "-"),
        Figure(
            "read models rebuild", rates.rebuild_rate, "records/s", baseline, rates.raw_rate, "-"
        ),
    ]


def bench_memory(dsn: str, extras: Extras) -> list[Figure]:
    """The replay's resident set over a long log: flat is the target."""
    profile = replay_bench.measure_memory(dsn)
    extras.notes.append(
        f"replay memory: {profile.log.records:,} records (built in {profile.log.seconds:.0f} s,"
        f" replayed in {profile.seconds:.0f} s)\n{replay_bench.memory_table(profile)}"
    )
    extras.details["replay_memory"] = replay_bench.memory_json(profile)
    first = profile.checkpoints[0][1]
    return [
        Figure(
            "replay memory (peak RSS)",
            profile.peak_mb,
            "MB",
            f"RSS after {profile.checkpoints[0][0]:,} records",
            first,
            "<= 500 MB peak (10M-fact log)",
        )
    ]


def bench_latency(bootstrap: str, dsn: str, extras: Extras) -> Figure:
    """Tick to command on the commands topic under a steady load, p99, beside a bare round trip."""
    result = latency_bench.measure(bootstrap, dsn)
    extras.notes.append(latency_bench.report(result))
    extras.details["latency"] = result.as_json()
    return Figure(
        "tick to command latency, p99 (service)",
        result.commands.p99,
        "ms",
        "bare kafka-python produce to consume, p99",
        result.bare.p99,
        "p99 < 1,000 ms (ratio: x the bare p99)",
    )


class Servers:
    """PostgreSQL and Kafka, each resolved (or started) on first use, stopped on leaving."""

    def __init__(self, stack: ExitStack) -> None:
        """Servers that `stack` stops."""
        self._stack = stack
        self._dsn: str | None = None
        self._bootstrap: str | None = None

    def dsn(self) -> str:
        """The PostgreSQL DSN (see servers.postgres_dsn)."""
        if self._dsn is None:
            self._dsn = self._stack.enter_context(postgres_dsn())
        return self._dsn

    def bootstrap(self) -> str:
        """The Kafka bootstrap address (see servers.kafka_bootstrap)."""
        if self._bootstrap is None:
            self._bootstrap = self._stack.enter_context(kafka_bootstrap())
        return self._bootstrap


def run(names: list[str], extras: Extras) -> list[Figure]:
    """Run the named benchmarks (all if none) in table order."""
    with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
        servers = Servers(stack)
        benchmarks: dict[str, Callable[[], list[Figure]]] = {
            "decider": lambda: [bench_decider()],
            "reconcile": lambda: [bench_reconcile(Path(scratch))],
            "store": lambda: [bench_store(servers.dsn())],
            "service": lambda: [bench_service(servers.bootstrap(), servers.dsn())],
            "latency": lambda: [bench_latency(servers.bootstrap(), servers.dsn(), extras)],
            "replay": lambda: bench_replay(servers.dsn(), extras),
            "memory": lambda: bench_memory(servers.dsn(), extras),
        }
        if unknown := sorted(set(names) - set(benchmarks)):
            sys.exit(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(benchmarks)}")
        return [
            figure
            for name, work in benchmarks.items()
            if not names or name in names
            for figure in work()
        ]


def main() -> None:
    """Run every benchmark (or those named), print the table, write results.json."""
    tune_for_throughput()
    # Warnings only: the service's line per batch would drown the progress.
    configure_logging(level=logging.WARNING)
    names = sys.argv[1:]
    # Off a terminal (make's output in a log), rich would wrap the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 150)
    extras = Extras()
    figures = run(names, extras)
    table = Table(
        title=f"reconciler benchmarks ({platform.machine()}, {datetime.now(UTC):%Y-%m-%d})"
    )
    for column in ("benchmark", "rate", "baseline", "baseline rate", "ratio", "target"):
        table.add_column(
            column, justify="left" if column in ("benchmark", "baseline", "target") else "right"
        )
    for figure in figures:
        table.add_row(
            figure.name,
            f"{figure.rate:,.0f} {figure.unit}",
            figure.baseline_name,
            f"{figure.baseline_rate:,.0f} {figure.unit}",
            f"{figure.ratio:.2f}",
            figure.target,
        )
    console.print(table)
    crc = service_bench.kafka_crc32c()
    console.print(f"kafka-python checks fetched batches with a {crc} CRC-32C.")
    for note in extras.notes:
        console.print(note, markup=False, highlight=False)
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "kafka_python_crc32c": crc,
        "figures": [asdict(figure) | {"ratio": figure.ratio} for figure in figures],
        **extras.details,
    }
    if names:
        return  # a partial run does not replace the last full results
    out = Path(__file__).parent / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
