"""The PostgreSQL unit of work's round-trip savings keep the contract: savepoints, positions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from reconciler.store import DeadLetter, NewRecord, PostgresLogStore

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.postgres


def _fact(record_id: str) -> NewRecord:
    return NewRecord("fact", record_id, "T", b"{}", "in:0")


@pytest.fixture
def store(pg_dsn: str, pg_schema: str) -> Iterator[PostgresLogStore]:
    """Give a PostgreSQL store on a fresh schema."""
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    store.create_tables()
    yield store
    store.close()


def test_a_duplicate_after_other_writes_undoes_only_the_optimistic_append(
    store: PostgresLogStore,
) -> None:
    """Positions and dead letters written before a refused optimistic COPY are kept."""
    with store.transaction() as tx:
        tx.append([_fact("a")])
    with store.transaction() as tx:
        tx.set_positions({"in:0": 7})
        tx.add_dead_letters([DeadLetter("in:0", "in:0:6", "bad", b"x")])
        results = tx.append([_fact("a"), _fact("b")])
    assert [None if r is None else r.position for r in results] == [None, 2]
    assert store.positions() == {"in:0": 7}
    assert [letter.locator for letter in store.dead_letters()] == ["in:0:6"]
    assert store.verify().ok


def test_positions_read_in_a_unit_include_its_own_writes(store: PostgresLogStore) -> None:
    """A unit reads the positions stored before it began and those it set itself."""
    with store.transaction() as tx:
        tx.set_positions({"in:0": 3})
    with store.transaction() as tx:
        assert tx.position("in:0") == 3
        tx.set_positions({"in:0": 5, "in:1": 1})
        assert (tx.position("in:0"), tx.position("in:1"), tx.position("in:2")) == (5, 1, None)


def test_a_unit_that_raises_leaves_the_connection_usable(store: PostgresLogStore) -> None:
    """After a rolled-back unit the next one commits normally on the pooled connection."""

    def append_then_fail() -> None:
        with store.transaction() as tx:
            tx.append([_fact("a")])
            raise RuntimeError

    with pytest.raises(RuntimeError):
        append_then_fail()
    with store.transaction() as tx:
        tx.append([_fact("b")])
    assert [record.record_id for record in store.read()] == ["b"]
