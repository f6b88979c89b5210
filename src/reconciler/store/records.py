# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The values that go into the log store and come back out of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

Kind = Literal["fact", "decision"]
"""Facts come from outside; decisions are what the engine itself recorded."""


# Records are named tuples, not frozen dataclasses: they are made by the hundred
# thousand, a named tuple is four times cheaper to build, and a stored record is
# handed to the driver as the row itself.


class NewRecord(NamedTuple):
    """A record to append: `payload` is canonical JSON bytes made by the caller.

    The dedupe key is `(kind, record_id)`: a record whose key is already stored is
    not stored again. `source` names the shard the record belongs to (a Kafka
    partition such as `"reconciler.events:3"`, or a file path); a shard's records
    are read back with `LogStore.read(source=...)` to rebuild its state. It is
    covered by the hash chain, but is not part of the dedupe key.
    """

    kind: Kind
    record_id: str
    type: str
    payload: bytes
    source: str = ""


class StoredRecord(NamedTuple):
    """A record as stored: its gapless `position` and the chain hash recorded with it."""

    position: int
    kind: Kind
    record_id: str
    type: str
    payload: bytes
    source: str
    recorded_hash: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be used, kept with the reason so that nothing is lost.

    `source` names where it came from (a file, a topic), `locator` where in that
    source (`"line 12"`, `"topic:0@42"`), and `raw` holds the bytes as received.
    """

    source: str
    locator: str
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as stored; `id` increases in recorded order."""

    id: int
    source: str
    locator: str
    reason: str
    raw: bytes
