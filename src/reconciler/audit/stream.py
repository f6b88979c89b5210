"""The log read in pages, each record put back in the order the engine acted on it.

The engine stores each write's facts first, then the decisions they led to, so a fact
can sit before the decision that was taken before it (a refund's answer before the
command, when both came in one write). What is known is the clock: a fact was recorded
at its shard's clock (the `at` of the last `ClockTicked` of its source before it; for a
fact before any tick, that first tick, SPEC "Time"), and a decision carries the clock it
was taken at. So within each run of facts and the run of decisions after it (one write,
or several), each shard's decisions are merged into its facts: a decision goes before
the first fact of its shard recorded at a later clock. Facts recorded at the same clock
as a decision come first, since one of them may have led to it, unless a fact answers a
command of the run (a result naming the issuance's command id or the refund's id): it
comes after that command, and the facts after it too.

Only the records a reader wants are kept while a run is read, so memory holds one run's
worth of those, not the run.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from reconciler.store import LogStore, StoredRecord

PAGE_SIZE = 2000


class Item(NamedTuple):
    """A record with its JSON payload and the engine clock it was recorded or taken at."""

    record: StoredRecord
    body: dict[str, Any]
    clock: datetime | None


def causal(
    store: LogStore,
    until: int,
    wants: Callable[[StoredRecord], bool],
    page_size: int = PAGE_SIZE,
) -> Iterator[Item]:
    """The wanted records up to position `until`, in the order the engine acted on them."""
    facts: list[Item] = []
    decisions: list[Item] = []
    for record, clock in clocked(store, until, page_size):
        if record.kind == "fact" and decisions:
            yield from _merged(facts, decisions)
            facts, decisions = [], []
        if not wants(record):
            continue
        body = payload(record)
        if record.kind == "fact":
            facts.append(Item(record, body, clock))
        else:
            decisions.append(Item(record, body, datetime.fromisoformat(body["at"])))
    yield from _merged(facts, decisions)


def _merged(facts: list[Item], decisions: list[Item]) -> Iterator[Item]:
    """One run's facts and decisions, each shard's merged by clock and by what answers what."""
    by_source: dict[str, tuple[list[Item], list[Item]]] = {}
    for item in facts:
        by_source.setdefault(item.record.source, ([], []))[0].append(item)
    for item in decisions:
        by_source.setdefault(item.record.source, ([], []))[1].append(item)
    for shard_facts, shard_decisions in by_source.values():
        commands = _commands(shard_decisions)
        follows = [_answered(fact, commands) for fact in shard_facts]
        next_fact = 0
        for index, decision in enumerate(shard_decisions):
            while (
                next_fact < len(shard_facts)
                and follows[next_fact] < index
                and not _later(shard_facts[next_fact], decision)
            ):
                yield shard_facts[next_fact]
                next_fact += 1
            yield decision
        yield from shard_facts[next_fact:]


def _commands(decisions: list[Item]) -> dict[str, list[tuple[int, Item]]]:
    """Where in the run the commands are: by issuance command id, and by refund id."""
    commands: dict[str, list[tuple[int, Item]]] = {}
    for index, decision in enumerate(decisions):
        if decision.record.type == "IssuanceCommanded":
            commands.setdefault("issue:" + decision.body["command_id"], []).append(
                (index, decision)
            )
        elif decision.record.type == "RefundCommanded":
            commands.setdefault("refund:" + decision.body["refund_id"], []).append(
                (index, decision)
            )
    return commands


def _answered(fact: Item, commands: dict[str, list[tuple[int, Item]]]) -> int:
    """The index of the run's last command a fact may answer, -1 if none.

    A command taken at a later clock than the fact was recorded (a refund's retry, say)
    cannot be what it answers.
    """
    body = fact.body
    key = None
    if fact.record.type in {"StampIssued", "StampIssuanceFailed"} and body.get("command_id"):
        key = "issue:" + body["command_id"]
    elif fact.record.type in {"RefundSucceeded", "RefundFailed"}:
        key = "refund:" + body["refund_id"]
    answered = [
        index for index, command in commands.get(key or "", []) if not _later(command, fact)
    ]
    return answered[-1] if answered else -1


def _later(first: Item, second: Item) -> bool:
    """Whether `first` was recorded or taken at a later clock than `second`."""
    return first.clock is not None and second.clock is not None and first.clock > second.clock


def clocked(
    store: LogStore, until: int, page_size: int = PAGE_SIZE
) -> Iterator[tuple[StoredRecord, datetime | None]]:
    """Each record to position `until` with its shard's clock (None if the shard never ticked)."""
    clocks: dict[str, datetime] = {}
    waiting: dict[str, list[StoredRecord]] = {}
    for record in pages(store, until, page_size):
        source = record.source
        if record.type == "ClockTicked" and record.kind == "fact":
            at = datetime.fromisoformat(payload(record)["at"])
            first = source not in clocks
            if first or at > clocks[source]:
                clocks[source] = at
            yield record, clocks[source]
            if first:
                for earlier in waiting.pop(source, []):
                    yield earlier, clocks[source]
        elif source in clocks:
            yield record, clocks[source]
        else:
            waiting.setdefault(source, []).append(record)
    for records in waiting.values():
        for record in records:
            yield record, None


def pages(store: LogStore, until: int, page_size: int = PAGE_SIZE) -> Iterator[StoredRecord]:
    """Every record up to position `until`, fetched `page_size` at a time."""
    after = 0
    while after < until:
        page = list(store.read(after=after, limit=page_size))
        if not page:
            return
        for record in page:
            if record.position > until:
                return
            yield record
        after = page[-1].position


def payload(record: StoredRecord) -> dict[str, Any]:
    """A record's JSON payload as a dict."""
    decoded: dict[str, Any] = json.loads(record.payload.decode())
    return decoded
