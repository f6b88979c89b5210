# ruff: noqa: T201, INP001, S311 - a script that prints its table over seeded pseudo-random data
"""Fuzz the ingest boundary: hostile records through parse_record, parse_records and an engine.

Draws from the families of tests/hostile_strategies.py, seeded (input i of seed s is
drawn from `random.Random(f"{s}:{i}")`, so a crash is replayed from its index), and
prints per family: inputs tried, accepted, dead-lettered, crashes. Exits 1 on a crash.

    python scripts/fuzz.py [--count N] [--seconds S] [--seed S] [--batch B]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Run as `python scripts/fuzz.py` from anywhere: the generators live in the tests package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostile_strategies import FAMILIES, Hostile

from reconciler.config import load_rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.ingest.validation import Rejected, parse_record, parse_records
from reconciler.store import open_store

SOURCE = "fuzz.jsonl"
STORE_EVERY = 20_000  # inputs per store: a fresh in-memory store keeps memory flat
SHOWN_CRASHES = 5


@dataclass
class Tally:
    """What the campaign saw, per family."""

    tried: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    stored_facts: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    def crash(self, family: str, what: str) -> None:
        """Count a crash and keep the first few descriptions."""
        self.crashes[family] += 1
        if len(self.notes) < SHOWN_CRASHES:
            self.notes.append(f"[{family}] {what}")


def _parse_one(index: int, record: Hostile, tally: Tally) -> None:
    """parse_record on one input: a fact, or a rejection naming the field it should."""
    family = record.family
    tally.tried[family] += 1
    try:
        result = parse_record(record.raw)
    except Exception:  # noqa: BLE001 - any exception is the finding
        tally.crash(family, f"input {index}: parse_record raised\n{traceback.format_exc()}")
        return
    if not isinstance(result, Rejected):
        tally.accepted[family] += 1
        return
    tally.rejected[family] += 1
    reason = result.reason
    unnamed = record.field is not None and record.field not in reason
    if not reason.strip() or (unnamed and not reason.startswith(("not JSON", "record is"))):
        tally.crash(family, f"input {index}: reason {reason!r} does not name {record.field!r}")


def _run_batch(
    start: int, records: list[Hostile], engine: Engine, next_line: int, tally: Tally
) -> int:
    """parse_records must agree with parse_record; the engine keeps every record. Next line."""
    raws = [record.raw for record in records]
    label = f"inputs {start}-{start + len(records) - 1}"
    try:
        together = parse_records(raws)
        if together != [parse_record(raw) for raw in raws]:
            tally.crash("batch", f"{label}: parse_records disagrees with parse_record")
        lines = range(next_line, next_line + len(raws))
        outcome = engine.process(InputRecord.many(SOURCE, lines, raws, together))
    except Exception:  # noqa: BLE001 - any exception is the finding
        tally.crash("batch", f"{label}: raised\n{traceback.format_exc()}")
        engine.restore(SOURCE)
        return next_line + len(raws)
    kept = outcome.facts_appended + outcome.duplicates + len(outcome.rejections)
    if kept != len(raws):
        tally.crash("batch", f"{label}: {len(raws)} records in, {kept} kept")
    tally.stored_facts += outcome.facts_appended
    tally.duplicates += outcome.duplicates
    tally.dead_letters += len(outcome.rejections)
    return next_line + len(raws)


def campaign(count: int, seconds: float, seed: int, batch: int) -> Tally:
    """Draw up to `count` inputs for up to `seconds`, round-robin over the families."""
    tally = Tally()
    names = sorted(FAMILIES)
    rules = load_rules(None)
    deadline = time.monotonic() + seconds
    store = open_store("sqlite://:memory:")
    engine, line = Engine(rules, store), 1
    pending: list[Hostile] = []
    index = 0
    while index < count and time.monotonic() < deadline:
        record = FAMILIES[names[index % len(names)]](random.Random(f"{seed}:{index}"))
        _parse_one(index, record, tally)
        pending.append(record)
        index += 1
        if len(pending) == batch:
            line = _run_batch(index - batch, pending, engine, line, tally)
            pending = []
        if index % STORE_EVERY == 0:
            store.close()
            store = open_store("sqlite://:memory:")
            engine, line = Engine(rules, store), 1
    if pending:
        _run_batch(index - len(pending), pending, engine, line, tally)
    store.close()
    return tally


def print_table(tally: Tally, elapsed: float, seed: int) -> None:
    """One row per family, then the engine's totals."""
    families = sorted(tally.tried)
    print(f"{'family':<16}{'tried':>10}{'accepted':>10}{'dead-letter':>12}{'crashes':>9}")
    for name in families:
        row = (tally.tried[name], tally.accepted[name], tally.rejected[name], tally.crashes[name])
        print(f"{name:<16}" + f"{row[0]:>10}{row[1]:>10}{row[2]:>12}{row[3]:>9}")
    total = sum(tally.tried.values())
    print(
        f"{'total':<16}{total:>10}{sum(tally.accepted.values()):>10}"
        f"{sum(tally.rejected.values()):>12}{sum(tally.crashes.values()):>9}"
    )
    print(
        f"engine: {tally.stored_facts} facts stored, {tally.duplicates} duplicates dropped, "
        f"{tally.dead_letters} dead letters; batch crashes: {tally.crashes['batch']}"
    )
    print(f"seed {seed}, {elapsed:.1f} s, {total / max(elapsed, 1e-9):,.0f} inputs/s")
    for note in tally.notes:
        print(note, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the campaign; 1 if anything crashed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=200_000, help="inputs to try at most")
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64, help="records per engine batch")
    args = parser.parse_args(argv)
    started = time.monotonic()
    tally = campaign(args.count, args.seconds, args.seed, args.batch)
    print_table(tally, time.monotonic() - started, args.seed)
    return 1 if sum(tally.crashes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
