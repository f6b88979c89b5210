# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The hash chain over the log, and the walk that verifies it.

Each record's hash is sha256 over the previous record's hash, then its position,
kind, record_id, type, payload and source, every field prefixed by its length as 8
bytes big-endian, so no two different records can frame to the same bytes (an empty
source still frames as its zero length). The first record chains from 32 zero bytes.

Every row also keeps the hash it chained from (`prev_hash`). That adds nothing to
the proof, but it lets `verify_chain` say what was done to the log and not only
where: a record whose content no longer gives its hash was altered; a record that
chains from a hash the log no longer holds follows a removed record; a record that
its successor skips over was inserted.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

GENESIS_HASH = bytes(32)
_LENGTH_BYTES = 8
_POSITION_LENGTH = _LENGTH_BYTES.to_bytes(_LENGTH_BYTES, "big")
_u64 = struct.Struct(">Q").pack  # a length or position as 8 bytes big-endian


def record_hash(  # noqa: PLR0913, PLR0917 - the chain is defined over exactly these fields
    prev_hash: bytes,
    position: int,
    kind: str,
    record_id: str,
    type_: str,
    payload: bytes,
    source: str,
) -> bytes:
    """Return the chain hash of one record given the hash of the record before it."""
    kind_bytes, record_id_bytes, type_bytes = kind.encode(), record_id.encode(), type_.encode()
    source_bytes = source.encode()
    framed = (
        _u64(len(prev_hash)),
        prev_hash,
        _POSITION_LENGTH,
        _u64(position),
        _u64(len(kind_bytes)),
        kind_bytes,
        _u64(len(record_id_bytes)),
        record_id_bytes,
        _u64(len(type_bytes)),
        type_bytes,
        _u64(len(payload)),
        payload,
        _u64(len(source_bytes)),
        source_bytes,
    )
    return hashlib.sha256(b"".join(framed)).digest()


class ChainRow(NamedTuple):
    """One stored row with everything the chain covers, as the verifier reads it."""

    position: int
    kind: str
    record_id: str
    type: str
    payload: bytes
    source: str
    recorded_hash: bytes
    prev_hash: bytes

    def computed_hash(self) -> bytes:
        """Return the hash this row's content gives when chained from `prev_hash`."""
        return record_hash(
            self.prev_hash,
            self.position,
            self.kind,
            self.record_id,
            self.type,
            self.payload,
            self.source,
        )


class Fault(StrEnum):
    """What the verifier found wrong at the first bad position."""

    ALTERED = "altered"
    """The record's content no longer gives the hash recorded with it."""
    GAP = "gap"
    """Positions jump: the records in between were removed."""
    BROKEN_LINK = "broken_link"
    """The record chains from a hash the log no longer holds: the one before it was
    removed (and later positions renumbered) or replaced."""
    INSERTED = "inserted"
    """The record is not part of the chain: the record after it chains from the one
    before it."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of walking the log: ok, or the first bad position and what was wrong.

    `records_checked` counts the records read, including the bad one. `head_hash` is
    the hash of the last good record: a chain cannot tell on its own that records were
    cut off its end or forged onto it, so auditors compare it with a copy kept elsewhere.
    """

    ok: bool
    records_checked: int
    head_hash: bytes
    first_bad_position: int | None = None
    fault: Fault | None = None
    detail: str = ""


def verify_chain(rows: Iterable[ChainRow]) -> VerifyReport:
    """Walk rows in position order from position 1 and report the first fault."""
    checked = 0
    expected_position = 1
    chain_head = GENESIS_HASH
    for row, next_row in _with_next(rows):
        checked += 1
        fault = _fault_at(row, next_row, expected_position, chain_head)
        if fault is not None:
            return VerifyReport(
                ok=False,
                records_checked=checked,
                first_bad_position=fault[0],
                head_hash=chain_head,
                fault=fault[1],
                detail=fault[2],
            )
        expected_position += 1
        chain_head = row.recorded_hash
    return VerifyReport(ok=True, records_checked=checked, head_hash=chain_head)


def _fault_at(
    row: ChainRow, next_row: ChainRow | None, expected_position: int, chain_head: bytes
) -> tuple[int, Fault, str] | None:
    if row.position != expected_position:
        if row.position < expected_position:
            return row.position, Fault.INSERTED, f"position {row.position} is out of sequence"
        return (
            expected_position,
            Fault.GAP,
            f"positions {expected_position}..{row.position - 1} are missing",
        )
    if next_row is not None and next_row.prev_hash == chain_head:
        # Checked before the link so that a forged row with a valid link is caught too.
        return row.position, Fault.INSERTED, "the next record chains past this one"
    if row.prev_hash != chain_head:
        return row.position, Fault.BROKEN_LINK, "chains from a hash the log does not hold"
    if row.computed_hash() != row.recorded_hash:
        return row.position, Fault.ALTERED, "content does not match the recorded hash"
    return None


def _with_next(rows: Iterable[ChainRow]) -> Iterator[tuple[ChainRow, ChainRow | None]]:
    iterator = iter(rows)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following
        current = following
