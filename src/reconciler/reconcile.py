"""The offline run: a JSONL file of events through the same engine, on an embedded store.

SPEC's time rules for files: `--until T` appends a final tick at T, otherwise at the
largest `occurred_at`; a file with no `ClockTicked` at all gets a tick before each event
whose `occurred_at` is later than the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.domain.events import ClockTicked
from reconciler.engine import Engine, Rejection
from reconciler.ingest.jsonl import UnreadableInputError, read_jsonl_chunks
from reconciler.ingest.source import InputRecord
from reconciler.ingest.validation import Rejected, parse_record

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from datetime import datetime
    from pathlib import Path

    from reconciler.domain.decisions import AnyDecision
    from reconciler.domain.rules import Rules
    from reconciler.domain.state import State
    from reconciler.store import LogStore

BATCH_SIZE = 2000


@dataclass(slots=True)
class OfflineRun:
    """Everything a reconcile run produced, for the report."""

    engine: Engine
    source: str
    decisions: list[AnyDecision] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    records: int = 0  # fed to the engine, the ticks the run added included

    @property
    def state(self) -> State:
        """The decider state after the run: the file is one source, one shard."""
        return self.engine.state(self.source)


def reconcile_file(
    path: Path,
    rules: Rules,
    store: LogStore,
    until: datetime | None = None,
    progress: Callable[[int], None] | None = None,
) -> OfflineRun:
    """Run every line of `path` through the engine; raises UnreadableInputError."""
    run = OfflineRun(Engine(rules, store), str(path))
    derive_ticks = not _holds_ticks(path)
    latest: datetime | None = None  # the largest occurred_at so far: the clock, when derived
    batch: list[InputRecord] = []
    for chunk in read_jsonl_chunks(path):
        records = _with_ticks(chunk, latest) if derive_ticks else chunk
        latest = _latest(records, latest)
        batch.extend(records)
        # Cut where a record at a time would have: every BATCH_SIZE records, ticks counted.
        while len(batch) >= BATCH_SIZE:
            _flush(run, batch[:BATCH_SIZE], progress)
            del batch[:BATCH_SIZE]
    final = until if until is not None else latest
    if final is not None:
        batch.append(_tick(final, "final", run.source))
    _flush(run, batch, progress)
    return run


def _latest(records: Iterable[InputRecord], latest: datetime | None) -> datetime | None:
    """The largest occurred_at of `latest` and the records' facts; the first of equals."""
    # max() keeps the first of equal maxima, as `>` one record at a time does.
    at = max(
        (fact.occurred_at for _, _, _, fact in records if not isinstance(fact, Rejected)),
        default=None,
    )
    return at if at is not None and (latest is None or at > latest) else latest


def _holds_ticks(path: Path) -> bool:
    """Whether the file holds a valid ClockTicked; only candidate lines are parsed."""
    return any(isinstance(parse_record(line), ClockTicked) for line in _candidate_lines(path))


def _candidate_lines(path: Path) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            for line in handle:
                if b"ClockTicked" in line:
                    yield line
    except OSError as error:
        msg = f"{path}: cannot read: {error.strerror or error}"
        raise UnreadableInputError(msg) from error


def _with_ticks(records: list[InputRecord], clock: datetime | None) -> list[InputRecord]:
    """The records with a tick before each fact later than the clock, which then moves."""
    out: list[InputRecord] = []
    for record in records:
        fact = record.parsed
        at = None if isinstance(fact, Rejected) else fact.occurred_at
        if at is not None and (clock is None or at > clock):
            clock = at
            out.append(_tick(clock, "derived", record.source, record.position))
        out.append(record)
    return out


def _tick(at: datetime, why: str, source: str, position: int = 0) -> InputRecord:
    """A clock fact the offline run adds, in the file's shard; its id says why."""
    tick = ClockTicked(
        event_id=f"reconcile/{why}-tick/{at.isoformat()}",
        version=1,
        occurred_at=at,
        at=at,
    )
    return InputRecord.from_fact(source, position, tick)


def _flush(
    run: OfflineRun, batch: list[InputRecord], progress: Callable[[int], None] | None
) -> None:
    if not batch:
        return
    outcome = run.engine.process(batch)
    run.decisions.extend(outcome.decisions)
    run.rejections.extend(outcome.rejections)
    run.records += len(batch)
    if progress is not None:
        progress(run.records)
