# Copyright 2026 The reconciler authors. SPDX-License-Identifier: Apache-2.0
"""The append-only, hash-chained log of facts and decisions, on SQLite or PostgreSQL.

Both backends are built on eventsourcing's datastores (see `sqlite` and `postgres`),
satisfy `LogStore`, and are opened by URL with `open_store`. Nothing connects at
import or construction. Writers use one transaction per batch:

    with store.transaction() as tx:
        results = tx.append(records)          # None in place of each duplicate
        tx.set_positions({"topic:0": 42})
        tx.add_dead_letters([dead_letter])

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
