"""`make bench`: each figure beside a baseline measured in the same run.

These machines are noisy, so only ratios are compared with targets. Results are printed
as a table and written to benchmarks/results.json for the README.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reconciler.domain.decider import Decider
from reconciler.domain.rules import Rules
from reconciler.domain.state import State
from reconciler.reconcile import reconcile_file
from reconciler.runtime import tune_for_throughput
from reconciler.store import open_store

sys.path.insert(0, str(Path(__file__).parent))
from workload import peak_facts

DECIDER_FACTS = 300_000
FILE_LINES = 200_000


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
        """How the figure compares with its baseline (higher is better)."""
        return self.rate / self.baseline_rate


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
    with path.open("w", encoding="utf-8") as handle:
        for fact in peak_facts(FILE_LINES):
            handle.write(fact.model_dump_json() + "\n")
    raw_lines = path.read_bytes().splitlines()

    def reconcile_all() -> None:
        store = open_store("sqlite://:memory:")
        try:
            reconcile_file(path, Rules(), store)
        finally:
            store.close()

    reconcile_seconds = best_of(1, reconcile_all)
    decode_seconds = best_of(3, lambda: decode_each(raw_lines))
    return Figure(
        "reconcile JSONL file",
        len(raw_lines) / reconcile_seconds,
        "lines/s",
        "json.loads per line",
        len(raw_lines) / decode_seconds,
        "<= 5x slower (ratio >= 0.2)",
    )


def main() -> None:
    """Run every benchmark, print the table, write results.json."""
    tune_for_throughput()
    console = Console()
    with tempfile.TemporaryDirectory() as scratch:
        figures = [bench_decider(), bench_reconcile(Path(scratch))]
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
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "figures": [asdict(figure) | {"ratio": figure.ratio} for figure in figures],
    }
    out = Path(__file__).parent / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
