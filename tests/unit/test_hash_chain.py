from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING

from reconciler.store.chain import (
    GENESIS_HASH,
    ChainRow,
    Fault,
    record_hash,
    verify_chain,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


def _framed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">Q", len(field)) + field for field in fields)


def _chain(count: int) -> list[ChainRow]:
    rows: list[ChainRow] = []
    previous = GENESIS_HASH
    for position in range(1, count + 1):
        payload = b'{"n":%d}' % position
        recorded = record_hash(previous, position, "fact", f"e{position}", "T", payload, "t:0")
        rows.append(
            ChainRow(position, "fact", f"e{position}", "T", payload, "t:0", recorded, previous)
        )
        previous = recorded
    return rows


def test_record_hash_is_sha256_over_length_prefixed_fields() -> None:
    """The hash is sha256 over prev hash, position, kind, id, type, payload, source, framed."""
    prev = bytes(range(32))
    expected = hashlib.sha256(
        _framed(
            prev,
            struct.pack(">Q", 7),
            b"fact",
            b"e-1",
            b"PaymentDebited",
            b'{"a":1}',
            b"reconciler.events:3",
        )
    ).digest()
    actual = record_hash(
        prev, 7, "fact", "e-1", "PaymentDebited", b'{"a":1}', "reconciler.events:3"
    )
    assert actual == expected


def test_empty_source_is_framed_as_zero_length() -> None:
    """A record with no source still frames the source field, as eight zero bytes."""
    expected = hashlib.sha256(
        _framed(GENESIS_HASH, struct.pack(">Q", 1), b"fact", b"e", b"T", b"{}", b"")
    ).digest()
    assert record_hash(GENESIS_HASH, 1, "fact", "e", "T", b"{}", "") == expected


def test_source_is_covered_by_the_hash() -> None:
    """Records differing only in source hash differently."""
    assert record_hash(GENESIS_HASH, 1, "fact", "e", "T", b"{}", "t:0") != record_hash(
        GENESIS_HASH, 1, "fact", "e", "T", b"{}", "t:1"
    )


def test_genesis_is_32_zero_bytes() -> None:
    """The first record chains from 32 zero bytes."""
    assert GENESIS_HASH == b"\x00" * 32


def test_framing_keeps_field_boundaries_apart() -> None:
    """Moving bytes across a field boundary changes the hash."""
    assert record_hash(GENESIS_HASH, 1, "fact", "ab", "c", b"", "") != record_hash(
        GENESIS_HASH, 1, "fact", "a", "bc", b"", ""
    )
    assert record_hash(GENESIS_HASH, 1, "fact", "a", "T", b"{}", "s") != record_hash(
        GENESIS_HASH, 1, "fact", "a", "T", b"{}s", ""
    )


def test_text_fields_are_hashed_as_utf8() -> None:
    """Non-ASCII ids and sources hash by their UTF-8 bytes."""
    expected = hashlib.sha256(
        _framed(GENESIS_HASH, struct.pack(">Q", 1), b"fact", "é".encode(), b"T", b"", "ü".encode())
    ).digest()
    assert record_hash(GENESIS_HASH, 1, "fact", "é", "T", b"", "ü") == expected


def test_intact_chain_verifies() -> None:
    """An intact chain is ok, every row checked, head at the last hash."""
    rows = _chain(5)
    report = verify_chain(rows)
    assert (report.ok, report.records_checked, report.head_hash) == (
        True,
        5,
        rows[-1].recorded_hash,
    )


def test_empty_chain_verifies() -> None:
    """No rows is a valid chain whose head is the genesis hash."""
    report = verify_chain([])
    assert (report.ok, report.records_checked, report.head_hash) == (True, 0, GENESIS_HASH)


def test_altered_content_is_located() -> None:
    """A row whose content no longer gives its hash is altered, reported at its position."""
    rows = _chain(5)
    rows[2] = rows[2]._replace(payload=b"{}")
    report = verify_chain(rows)
    assert (report.ok, report.first_bad_position, report.fault) == (False, 3, Fault.ALTERED)
    assert report.head_hash == rows[1].recorded_hash


def test_gap_is_located_at_first_missing_position() -> None:
    """Missing positions are a gap, reported at the first one missing."""
    rows = _chain(6)
    del rows[2:4]
    report = verify_chain(rows)
    assert (report.first_bad_position, report.fault, report.records_checked) == (3, Fault.GAP, 3)
    assert "3..4" in report.detail


def test_log_not_starting_at_one_is_a_gap() -> None:
    """A log whose first row is not position 1 is missing its start."""
    report = verify_chain(_chain(3)[1:])
    assert (report.first_bad_position, report.fault) == (1, Fault.GAP)


def test_altered_source_is_located() -> None:
    """A row whose source was changed no longer gives its hash: altered, at its position."""
    rows = _chain(5)
    rows[3] = rows[3]._replace(source="t:1")
    report = verify_chain(rows)
    assert (report.ok, report.first_bad_position, report.fault) == (False, 4, Fault.ALTERED)


def test_broken_link_is_located() -> None:
    """A row chaining from a hash the log does not hold is a broken link."""
    rows = _chain(4)
    rows[2] = rows[2]._replace(prev_hash=b"\x09" * 32)
    report = verify_chain(rows)
    assert (report.first_bad_position, report.fault) == (3, Fault.BROKEN_LINK)


def test_row_skipped_by_its_successor_is_inserted() -> None:
    """A row whose successor chains from its predecessor was inserted."""
    rows = _chain(4)
    forged_hash = record_hash(rows[1].recorded_hash, 3, "fact", "forged", "T", b"{}", "t:0")
    forged = ChainRow(3, "fact", "forged", "T", b"{}", "t:0", forged_hash, rows[1].recorded_hash)
    rows.insert(2, forged)
    report = verify_chain(rows)
    assert (report.first_bad_position, report.fault) == (3, Fault.INSERTED)


def test_position_out_of_sequence_is_inserted() -> None:
    """A row whose position goes backwards does not belong to the chain."""
    rows = _chain(3)
    rows.append(rows[0]._replace(position=0))
    report = verify_chain(rows)
    assert (report.first_bad_position, report.fault) == (0, Fault.INSERTED)


def test_walk_stops_one_row_past_the_first_fault() -> None:
    """Verification streams: it stops at the first fault, having read one row ahead."""
    chain = _chain(50)
    chain[2] = chain[2]._replace(payload=b"{}")
    consumed: list[int] = []

    def rows() -> Iterator[ChainRow]:
        for row in chain:
            consumed.append(row.position)
            yield row

    assert verify_chain(rows()).first_bad_position == 3
    assert consumed == [1, 2, 3, 4]
