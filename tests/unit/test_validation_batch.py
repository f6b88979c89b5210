"""Records validated many per call: the same facts and rejections as one at a time."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain.events import StampIssued
from reconciler.ingest import validation
from reconciler.ingest.jsonl import read_jsonl, read_jsonl_chunks
from reconciler.ingest.source import InputRecord
from reconciler.ingest.validation import MAX_RECORD_BYTES, Rejected, parse_record, parse_records
from tests.builders import DEBIT_RECORD as DEBIT
from tests.strategies import logs

if TYPE_CHECKING:
    from pathlib import Path

    from tests.builders import Log

T0 = "2024-09-04T10:00:00+07:00"
STAMPS: dict[str, Any] = {
    "event_id": "e2",
    "type": "StampIssued",
    "version": 1,
    "occurred_at": T0,
    "order_id": "A1",
    "serial_numbers": ["S1", "S2"],
    "command_id": None,
}
GOOD = json.dumps(DEBIT, separators=(",", ":")).encode()
STAMPS_RAW = json.dumps(STAMPS, separators=(",", ":")).encode()
# Records that are not one valid fact each, some of them shaped so that, joined into
# one array, they would read as valid facts.
BAD = [
    b"{not json",
    b"[1, 2]",
    b'"just a string"',
    b"{}",
    b"{",
    b"}",
    json.dumps(DEBIT | {"amount": "12500"}).encode(),
    json.dumps(DEBIT | {"occurred_at": "2024-09-04T10:00:00"}).encode(),
    json.dumps(DEBIT | {"version": 2}).encode(),
    json.dumps(STAMPS | {"serial_numbers": ["S1", "S1"]}).encode(),
    GOOD + b"," + GOOD,  # two facts on one line
    GOOD + b" " + GOOD,
    GOOD + b"\n," + GOOD,  # two facts joined the way the batch joins them
    STAMPS_RAW[: STAMPS_RAW.index(b'"S2"') - 1],  # a fact cut inside its serials...
    STAMPS_RAW[STAMPS_RAW.index(b'"S2"') :],  # ...and the rest of it
    GOOD[:-1],  # a fact missing its closing brace...
    b"}",  # ...which comes alone
    b'{"amount":',  # a fact split at a member...
    GOOD[1:],  # ...whose rest is a fact without its opening brace
    b"\xff\xfe" + GOOD,
    b'{"event_id":"x\n"}',  # a raw newline in a string
]
# Valid facts, yet not in the shape the batch takes: they go one at a time.
SLOW_BUT_VALID = [
    json.dumps(DEBIT | {"producer_trace": {"span": 1}}).encode(),  # extra field, an object
    json.dumps(DEBIT | {"producer_trace": "t-1"}, separators=(",", ":")).encode(),
    json.dumps(DEBIT | {"payer_ref": "a{b}c"}).encode(),  # braces in a string
    b"  " + GOOD + b"  ",
    json.dumps(DEBIT, indent=2).encode(),  # newlines between the members
]


def one_by_one(raws: list[bytes]) -> list[Any]:
    """What `parse_record` makes of each record."""
    return [parse_record(raw) for raw in raws]


@pytest.mark.parametrize("bad", BAD + SLOW_BUT_VALID)
def test_a_bad_or_odd_record_among_good_ones_gets_what_it_gets_alone(bad: bytes) -> None:
    """One bad or odd record in a batch of valid ones: each result is the one-at-a-time one."""
    raws = [GOOD, STAMPS_RAW, bad, GOOD, STAMPS_RAW]
    assert parse_records(raws) == one_by_one(raws)


def test_split_and_merged_records_are_never_read_as_facts_together() -> None:
    """Records that would join into valid facts are each rejected, as alone."""
    raws = [
        *BAD[-8:],
        GOOD + b"\n," + GOOD,
        STAMPS_RAW[: STAMPS_RAW.index(b'"S2"') - 1],
        STAMPS_RAW[STAMPS_RAW.index(b'"S2"') :],
    ]
    results = parse_records(raws)
    assert results == one_by_one(raws)
    assert all(isinstance(result, Rejected) for result in results)


def test_a_batch_whose_first_record_has_an_extra_field_agrees() -> None:
    """A compact record with an extra field, first in its batch: still a fact, as alone."""
    raws = [SLOW_BUT_VALID[1], GOOD, STAMPS_RAW]
    results = parse_records(raws)
    assert results == one_by_one(raws)
    assert results[0] == results[1]


def test_every_bad_record_together_gives_the_reasons_given_alone() -> None:
    """A batch of only bad and odd records gets each one's own reason or fact."""
    raws = BAD + SLOW_BUT_VALID
    assert parse_records(raws) == one_by_one(raws)


def test_an_oversized_record_in_a_batch_is_rejected_by_size() -> None:
    """The size limit holds in a batch too, though the record is a valid fact."""
    huge = json.dumps(DEBIT | {"payer_ref": "x" * MAX_RECORD_BYTES}).encode()
    results = parse_records([GOOD, huge])
    assert isinstance(results[1], Rejected)
    assert "more than the" in results[1].reason


def test_valid_records_in_a_batch_become_their_facts() -> None:
    """A batch of valid records gives their facts, in order."""
    results = parse_records([STAMPS_RAW, GOOD, STAMPS_RAW])
    assert results == one_by_one([STAMPS_RAW, GOOD, STAMPS_RAW])
    assert isinstance(results[0], StampIssued)
    assert results[0].serial_numbers == ("S1", "S2")


def test_valid_compact_records_are_validated_together(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid records, one compact object each, never take the one-at-a-time path."""

    def refuse(raw: bytes | str) -> object:
        """Fail the test if called."""
        raise AssertionError(raw)

    monkeypatch.setattr(validation, "parse_record", refuse)
    assert len(parse_records([GOOD, STAMPS_RAW, GOOD])) == 3


def test_an_empty_batch_gives_nothing() -> None:
    """No records, no results."""
    assert parse_records([]) == []


@given(logs(), st.data())
def test_batches_of_valid_and_bad_records_agree_with_one_at_a_time(
    log: Log, data: st.DataObject
) -> None:
    """Any log's facts with bad records slipped in: batch and one-at-a-time agree."""
    raws = [fact.model_dump_json().encode() for fact in log.facts]
    for bad in data.draw(st.lists(st.sampled_from(BAD + SLOW_BUT_VALID), max_size=4)):
        raws.insert(data.draw(st.integers(0, len(raws))), bad)
    assert parse_records(raws) == one_by_one(raws)


def test_chunks_keep_line_numbers_across_blank_lines(tmp_path: Path) -> None:
    """Chunks of a file hold the records of read_jsonl, numbered by line, blanks counted."""
    path = tmp_path / "events.jsonl"
    lines = [GOOD, b"", b"{not json", b"   ", STAMPS_RAW, GOOD + b"\r", b"", GOOD]
    path.write_bytes(b"\n".join(lines) + b"\n")
    chunks = list(read_jsonl_chunks(path, size=3))
    records = [record for chunk in chunks for record in chunk]
    assert [record.position for record in records] == [1, 3, 5, 6, 8]
    assert records == list(read_jsonl(path))
    assert records[3].raw == GOOD
    assert isinstance(records[1].parsed, Rejected)


def test_records_from_columns_are_input_records() -> None:
    """`InputRecord.many` builds the same records as the constructor, one per row."""
    facts = parse_records([GOOD, b"{"])
    records = InputRecord.many("feed.jsonl", [4, 9], [GOOD, b"{"], facts)
    assert records == [
        InputRecord("feed.jsonl", 4, GOOD, facts[0]),
        InputRecord("feed.jsonl", 9, b"{", facts[1]),
    ]
    assert all(type(record) is InputRecord for record in records)
    assert records[1].locator == "feed.jsonl:9"


def test_columns_of_unequal_length_are_refused() -> None:
    """`InputRecord.many` refuses columns that do not line up."""
    with pytest.raises(ValueError, match="columns of 2, 1 and 1"):
        InputRecord.many("feed.jsonl", [1, 2], [GOOD], parse_records([GOOD]))
