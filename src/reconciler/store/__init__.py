# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The append-only, hash-chained log of facts and decisions, on SQLite or PostgreSQL.

Both backends are built on eventsourcing's datastores (see `sqlite` and `postgres`),
satisfy `LogStore`, and are opened by URL with `open_store`. Nothing connects at
import or construction. Writers use one transaction per batch:

    with store.transaction() as tx:
        stored = tx.position("topic:0")       # fence: refuse a batch starting before it
        results = tx.append(records)          # None in place of each duplicate
        tx.set_positions({"topic:0": 42})
        tx.add_dead_letters([dead_letter])

Each record names its `source`, the shard it belongs to (a Kafka partition such as
`topic:0`, or a file); `store.read(source=..., kind="fact")` reads one shard's facts
back in position order, to rebuild its state where the partition moved to.

Inside a block, use what `append` returns rather than reading the store: reads run
on other connections, do not see the block's uncommitted writes, and on an in-memory
SQLite database wait for the block to end. Errors from the drivers surface as
eventsourcing's `PersistenceError` family, chained to the driver's error.
"""

from reconciler.store.base import LogStore, LogTransaction
from reconciler.store.chain import Fault, VerifyReport
from reconciler.store.factory import open_store
from reconciler.store.postgres import PostgresLogStore
from reconciler.store.records import DeadLetter, Kind, NewRecord, StoredDeadLetter, StoredRecord
from reconciler.store.sqlite import SQLiteLogStore
from reconciler.store.unit import TransactionStateError

__all__ = [
    "DeadLetter",
    "Fault",
    "Kind",
    "LogStore",
    "LogTransaction",
    "NewRecord",
    "PostgresLogStore",
    "SQLiteLogStore",
    "StoredDeadLetter",
    "StoredRecord",
    "TransactionStateError",
    "VerifyReport",
    "open_store",
]
