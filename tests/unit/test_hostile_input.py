"""Hostile input at the ingest boundary: every record is a fact or a dead letter with a reason.

The records come from tests/hostile_strategies.py (malformed JSON, wrong types, huge
payloads, deep nesting, odd Unicode, numbers past 64 bits, odd timestamps); the longer
campaign over the same families is scripts/fuzz.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from typing import TYPE_CHECKING

from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.config import load_rules
from reconciler.domain.events import Fact
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.ingest.validation import Rejected, parse_record, parse_records
from reconciler.store import open_store
from tests.hostile_strategies import FAMILIES, Hostile, hostile

if TYPE_CHECKING:
    from pathlib import Path

FAR = "9999-12-31T23:59:59-23:59"
_TICK = {"event_id": "t", "type": "ClockTicked", "version": 1, "occurred_at": FAR, "at": FAR}
_DEBIT = {
    "event_id": "d",
    "type": "PaymentDebited",
    "version": 1,
    "occurred_at": FAR,
    "payment_id": "P1",
    "order_id": None,
    "amount": 12_500,
    "method": "QRIS",
    "payer_ref": "p",
    "source": "callback",
}
# Found by this file: a tick in year 9999 made the decider's deadlines overflow, and
# UTF-16 or BOM-prefixed records were accepted though readers decode the log as UTF-8.
FAR_TICK = Hostile("timestamps", json.dumps(_TICK).encode(), "occurred_at")
FAR_DEBIT = Hostile("timestamps", json.dumps(_DEBIT).encode(), "occurred_at")
UTF16 = Hostile(
    "odd_unicode", json.dumps(_TICK | {"occurred_at": "2024-09-04T10:00:00Z"}).encode("utf-16")
)
BOM = Hostile(
    "odd_unicode",
    b"\xef\xbb\xbf" + json.dumps(_DEBIT | {"occurred_at": "2024-09-04T10:00:00Z"}).encode(),
)
fast = settings(max_examples=1000, deadline=None)
slow = settings(max_examples=150, deadline=None)


def check_one(record: Hostile) -> Fact | Rejected:
    """Parse a hostile record, asserting the boundary's promises about the result."""
    result = parse_record(record.raw)
    assert isinstance(result, Fact | Rejected)
    if isinstance(result, Rejected):
        assert result.reason.strip()
        if record.field is not None and not result.reason.startswith(("not JSON", "record is")):
            assert record.field in result.reason, (record, result.reason)
    return result


@fast
@given(hostile())
@example(FAR_TICK)
@example(FAR_DEBIT)
@example(UTF16)
@example(BOM)
def test_parse_record_never_raises_and_names_the_field(record: Hostile) -> None:
    """Any hostile record is a fact or a rejection whose reason names the spoiled field."""
    check_one(record)


@slow
@given(st.sampled_from(sorted(FAMILIES)).flatmap(lambda name: st.lists(hostile(name), max_size=6)))
def test_each_family_never_raises(records: list[Hostile]) -> None:
    """Every family on its own, including the rarely drawn huge and deep ones, never raises."""
    for record in records:
        check_one(record)


@given(hostile("timestamps"))
@fast
def test_far_timestamps_are_dead_lettered_not_accepted(record: Hostile) -> None:
    """A timestamp in year 9999 or year 1 is rejected, naming the field, never a fact."""
    result = check_one(record)
    text = record.raw.decode()
    if '"9999-' in text or '"0001-' in text:
        assert isinstance(result, Rejected)


@fast
@given(st.lists(hostile(), min_size=2, max_size=12))
@example([FAR_TICK, FAR_DEBIT, UTF16, BOM])
def test_parse_records_agrees_with_parse_record(records: list[Hostile]) -> None:
    """The batched path gives, record for record, what one at a time gives."""
    raws = [record.raw for record in records]
    assert parse_records(raws) == [parse_record(raw) for raw in raws]


def _engine_run(records: list[Hostile]) -> None:
    """Feed the records to a real engine over SQLite; each one is a fact or a dead letter."""
    store = open_store("sqlite://:memory:")
    engine = Engine(load_rules(None), store)
    raws = [record.raw for record in records]
    batch = InputRecord.many("fuzz.jsonl", range(1, len(raws) + 1), raws, parse_records(raws))
    outcome = engine.process(batch)
    assert outcome.facts_appended + outcome.duplicates + len(outcome.rejections) == len(batch)
    letters = store.dead_letters()
    assert len(letters) == len(outcome.rejections)
    by_line = {item.locator: item.raw for item in batch}
    for letter in letters:
        assert letter.reason.strip()
        assert by_line[letter.locator] == letter.raw  # the bytes as received
    facts = list(store.read(kind="fact"))
    assert len(facts) == outcome.facts_appended
    for fact in facts:  # readers (the audit stream) decode stored facts as UTF-8 JSON
        assert isinstance(json.loads(fact.payload.decode()), dict)
    assert engine.restore("fuzz.jsonl") == outcome.facts_appended  # every stored fact reads back
    store.close()


@slow
@given(st.lists(hostile(), min_size=1, max_size=30))
@example([FAR_TICK, FAR_DEBIT, UTF16, BOM])
def test_engine_keeps_every_record_as_fact_or_dead_letter(records: list[Hostile]) -> None:
    """Through a real engine and store, counts add up: nothing crashes, nothing is lost."""
    _engine_run(records)


@slow
@given(st.lists(hostile("valid") | hostile("timestamps"), min_size=1, max_size=30))
def test_engine_survives_valid_facts_among_odd_timestamps(records: list[Hostile]) -> None:
    """Valid facts decided beside odd timestamps: the decider's clock never overflows."""
    _engine_run(records)


def _cli_lines(count: int) -> list[Hostile]:
    """Seeded hostile records that fit on one line each, a few huge ones among them."""
    rng = random.Random(8)  # noqa: S311 - seeded test data, not secrets
    names = [name for name in FAMILIES if name != "huge"]
    records = [FAMILIES[rng.choice(names)](rng) for _ in range(count)]
    records += [FAMILIES["huge"](rng) for _ in range(3)]
    lines = []
    for record in records:
        raw = record.raw.replace(b"\n", b" ").replace(b"\r", b" ")
        if raw.strip():
            lines.append(record._replace(raw=raw))
    return lines


def test_reconcile_cli_dead_letters_each_hostile_line(tmp_path: Path) -> None:
    """`reconciler reconcile` on hostile lines exits 0; each dead letter names file, line, field."""
    records = _cli_lines(300)
    events = tmp_path / "hostile.jsonl"
    events.write_bytes(b"\n".join(record.raw for record in records) + b"\n")
    log = tmp_path / "log.sqlite"
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "reconciler",
            "reconcile",
            str(events),
            "--store",
            f"sqlite:///{log}",
        ],
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    expected = {
        line: record
        for line, record in enumerate(records, 1)
        if isinstance(parse_record(record.raw), Rejected)
    }
    assert [letter["line"] for letter in report["dead_letters"]] == list(expected)
    store = open_store(f"sqlite:///{log}", create=False)
    letters = store.dead_letters()
    store.close()
    assert [letter.locator for letter in letters] == [f"{events}:{line}" for line in expected]
    for letter, reported in zip(letters, report["dead_letters"], strict=True):
        assert letter.reason == reported["reason"]
        record = expected[reported["line"]]
        if record.field is not None and not letter.reason.startswith(("not JSON", "record is")):
            assert record.field in letter.reason
