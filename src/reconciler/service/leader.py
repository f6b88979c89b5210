"""Leader election for work exactly one process may do (the clock ticker, the relay).

On PostgreSQL a session-level advisory lock on a dedicated connection: held while the
process lives, released by the server when its connection dies (a SIGKILLed leader
frees it at once). With SQLite the service is one process, so it always leads.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

import psycopg


class LeaderLock(Protocol):
    """Held by at most one process at a time."""

    def try_acquire(self) -> bool:
        """Take the lock if free, or confirm it is still held; False otherwise."""
        ...

    def release(self) -> None:
        """Give the lock up (also done by closing)."""
        ...


class PostgresLeaderLock:
    """A PostgreSQL advisory lock named by a string."""

    def __init__(self, dsn: str, name: str) -> None:
        """Name the lock; nothing connects until `try_acquire`."""
        self._dsn = dsn
        digest = hashlib.sha256(name.encode()).digest()
        self._key = int.from_bytes(digest[:8], "big", signed=True)
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._held = False

    def try_acquire(self) -> bool:
        """Take or confirm the lock; a lost connection means the lock is lost too."""
        try:
            if self._connection is None or self._connection.closed:
                self._held = False
                self._connection = psycopg.connect(self._dsn, autocommit=True)
            if self._held:
                self._connection.execute("select 1")
                return True
            row = self._connection.execute(
                "select pg_try_advisory_lock(%s)", (self._key,)
            ).fetchone()
            self._held = bool(row and row[0])
        except psycopg.Error:
            self.release()
            return False
        return self._held

    def release(self) -> None:
        """Close the connection, which releases the lock."""
        self._held = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class AlwaysLeader:
    """The single-process case (SQLite store): this process always leads."""

    def try_acquire(self) -> bool:
        """Always held."""
        return True

    def release(self) -> None:
        """Nothing to release."""
