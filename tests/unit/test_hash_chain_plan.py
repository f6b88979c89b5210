from __future__ import annotations

from reconciler.store.batch import ChainHead, plan_append
from reconciler.store.chain import GENESIS_HASH, record_hash
from reconciler.store.records import Kind, NewRecord


def _record(record_id: str, kind: Kind = "fact") -> NewRecord:
    return NewRecord(kind, record_id, "T", b'{"id":"%s"}' % record_id.encode(), "t:0")


def test_plan_numbers_new_records_after_the_head() -> None:
    """New records get the positions following the head, in batch order."""
    head = ChainHead(41, b"\x07" * 32)
    plan = plan_append([_record("a"), _record("b")], set(), head)
    assert [r.position for r in plan.results if r is not None] == [42, 43]
    assert plan.head.position == 43


def test_plan_chains_from_the_head_hash() -> None:
    """The first planned record chains from the head's hash, the next from the first."""
    head = ChainHead(41, b"\x07" * 32)
    plan = plan_append([_record("a"), _record("b")], set(), head)
    first, second = plan.rows
    assert first[7] == head.recorded_hash
    assert first[6] == record_hash(head.recorded_hash, 42, "fact", "a", "T", b'{"id":"a"}', "t:0")
    assert second[7] == first[6]
    assert plan.head.recorded_hash == second[6]


def test_empty_log_chains_from_genesis() -> None:
    """On an empty log the first record is position 1, chained from the genesis hash."""
    plan = plan_append([_record("a")], set(), ChainHead())
    assert plan.rows[0][0] == 1
    assert plan.rows[0][7] == GENESIS_HASH


def test_stored_and_repeated_keys_are_skipped_without_using_positions() -> None:
    """Duplicates give None in their place and take no position."""
    records = [_record("a"), _record("b"), _record("a"), _record("c"), _record("b", "decision")]
    plan = plan_append(records, {("fact", "b")}, ChainHead())
    assert [None if r is None else r.position for r in plan.results] == [1, None, None, 2, 3]
    assert [row[0] for row in plan.rows] == [1, 2, 3]


def test_all_duplicates_leave_the_head_unchanged() -> None:
    """A batch of duplicates plans no rows and keeps the head."""
    head = ChainHead(5, b"\x01" * 32)
    plan = plan_append([_record("a")], {("fact", "a")}, head)
    assert (plan.rows, plan.results, plan.head) == ([], [None], head)


def test_source_is_kept_and_defaults_to_empty() -> None:
    """A record's source is stored as given; one made without a source has the empty one."""
    no_source = NewRecord("fact", "b", "T", b"{}")
    plan = plan_append([_record("a"), no_source], set(), ChainHead())
    assert [r.source for r in plan.results if r is not None] == ["t:0", ""]
    assert [row[5] for row in plan.rows] == ["t:0", ""]


def test_insert_rows_are_the_stored_record_then_its_prev_hash() -> None:
    """An insert row is the stored record's fields followed by the hash it chains from."""
    plan = plan_append([_record("a")], set(), ChainHead())
    stored = plan.results[0]
    assert stored is not None
    assert plan.rows[0] == (*stored, GENESIS_HASH)
