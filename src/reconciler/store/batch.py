# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""Turning a batch of new records into rows to store, the same way on every backend.

The backend holds the appender lock, reads the chain head and asks which keys of the
batch are already stored; everything after that is decided here, in memory, so the
positions stay gapless and the chain consistent whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.store.chain import GENESIS_HASH, record_hash
from reconciler.store.records import StoredRecord

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from reconciler.store.records import NewRecord

RecordKey = tuple[str, str]
"""The dedupe key: (kind, record_id)."""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last stored position and its hash; position 0 is the empty log."""

    position: int = 0
    recorded_hash: bytes = GENESIS_HASH


InsertRow = tuple[int, str, str, str, bytes, str, bytes, bytes]
"""A row as inserted: the stored record's fields, then the hash it chains from."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to insert, what to tell the caller, and the chain head afterwards."""

    rows: list[InsertRow]
    results: list[StoredRecord | None]
    head: ChainHead


def batch_keys(records: Sequence[NewRecord]) -> set[RecordKey]:
    """Return the distinct dedupe keys of a batch, for the backend's one lookup."""
    return {(record.kind, record.record_id) for record in records}


def plan_append(
    records: Sequence[NewRecord], stored_keys: Collection[RecordKey], head: ChainHead
) -> Plan:
    """Assign positions and hashes to the records whose key is neither stored nor repeated.

    A duplicate gets `None` in `results`, in its place in the batch.
    """
    seen = set(stored_keys)
    rows: list[InsertRow] = []
    results: list[StoredRecord | None] = []
    position, chain_hash = head.position, head.recorded_hash
    for record in records:
        key = (record.kind, record.record_id)
        if key in seen:
            results.append(None)
            continue
        seen.add(key)
        position += 1
        kind, record_id, type_, payload, source = record
        recorded_hash = record_hash(chain_hash, position, kind, record_id, type_, payload, source)
        stored = StoredRecord(position, kind, record_id, type_, payload, source, recorded_hash)
        rows.append((*stored, chain_hash))
        results.append(stored)
        chain_hash = recorded_hash
    return Plan(rows=rows, results=results, head=ChainHead(position, chain_hash))
