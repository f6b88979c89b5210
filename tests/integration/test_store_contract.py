"""The behaviour every log store backend must have, run against SQLite and PostgreSQL.

`LogStoreContract` holds the tests; each `Test...` subclass supplies a backend through
two fixtures: `open_store_on_database` (a new store on the test's database, tables
created) and `tamper` (raw SQL on that database, bypassing the store).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, PersistenceError

from reconciler.store import (
    DeadLetter,
    Fault,
    NewRecord,
    PostgresLogStore,
    SQLiteLogStore,
    TransactionStateError,
    paging,
)
from reconciler.store.chain import GENESIS_HASH, record_hash

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from reconciler.store import LogStore, StoredRecord

    OpenStore = Callable[[], LogStore]
    Tamper = Callable[[str, Sequence[Any]], None]


def fact(number: int, *, record_id: str | None = None, source: str = "payments:0") -> NewRecord:
    """A small fact record with canonical JSON bytes, as ingest would make it."""
    payload = {"event_id": f"event-{number}", "amount": 12500, "order_id": f"order-{number}"}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return NewRecord("fact", record_id or f"event-{number}", "PaymentDebited", canonical, source)


def decision(number: int, *, source: str = "payments:0") -> NewRecord:
    """A small decision record, as the engine would make it."""
    return NewRecord("decision", f"refund-{number}", "RefundCommanded", b"{}", source)


def facts(first: int, last: int) -> list[NewRecord]:
    """Facts numbered first..last inclusive."""
    return [fact(number) for number in range(first, last + 1)]


def append(store: LogStore, records: Sequence[NewRecord]) -> list[StoredRecord | None]:
    """Append records in a transaction of their own."""
    with store.transaction() as tx:
        return tx.append(records)


class LogStoreContract:
    """Tests every backend must pass; subclasses provide the backend fixtures."""

    @pytest.fixture
    def store(self, open_store_on_database: OpenStore) -> LogStore:
        """Give a store with its tables created on the test's own database."""
        return open_store_on_database()

    # --- positions and reading -------------------------------------------------------

    def test_append_assigns_gapless_positions_in_batch_order(self, store: LogStore) -> None:
        """Records of a batch get positions 1, 2, 3... in the order given."""
        results = append(store, facts(1, 3))
        assert [(r.position, r.record_id) for r in results if r is not None] == [
            (1, "event-1"),
            (2, "event-2"),
            (3, "event-3"),
        ]

    def test_positions_continue_across_transactions(self, store: LogStore) -> None:
        """A later transaction continues from the last stored position."""
        append(store, facts(1, 2))
        results = append(store, facts(3, 4))
        assert [r.position for r in results if r is not None] == [3, 4]
        assert store.last_position() == 4

    def test_read_returns_what_append_returned(self, store: LogStore) -> None:
        """Reading gives back exactly the stored records, payload bytes included."""
        stored = append(store, facts(1, 5))
        assert list(store.read()) == stored

    def test_empty_log_has_position_zero_and_reads_nothing(self, store: LogStore) -> None:
        """A new store is empty: last position 0, nothing to read."""
        assert store.last_position() == 0
        assert list(store.read()) == []

    def test_empty_append_stores_nothing(self, store: LogStore) -> None:
        """Appending no records returns no results and stores nothing."""
        assert append(store, []) == []
        assert store.last_position() == 0

    def test_read_after_and_limit(self, store: LogStore) -> None:
        """`after` skips positions up to it and `limit` caps how many come back."""
        append(store, facts(1, 10))
        assert [r.position for r in store.read(after=3, limit=4)] == [4, 5, 6, 7]
        assert [r.position for r in store.read(after=8)] == [9, 10]
        assert list(store.read(after=10)) == []
        assert list(store.read(limit=0)) == []

    def test_read_pages_through_the_log(
        self, store: LogStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Reading in small keyset pages yields every record once, in order."""
        monkeypatch.setattr(paging, "PAGE_SIZE", 3)
        append(store, facts(1, 10))
        assert [r.position for r in store.read()] == list(range(1, 11))
        assert [r.position for r in store.read(after=2, limit=7)] == list(range(3, 10))

    def test_read_holds_no_connection_between_pages(
        self, store: LogStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A reader paused between pages does not block a writer, and sees its records."""
        monkeypatch.setattr(paging, "PAGE_SIZE", 2)
        append(store, facts(1, 3))
        reader = store.read()
        first = [next(reader), next(reader)]
        append(store, facts(4, 5))
        rest = list(reader)
        assert [r.position for r in first + rest] == [1, 2, 3, 4, 5]

    # --- sources and filtered reads --------------------------------------------------

    def test_source_round_trips(self, store: LogStore) -> None:
        """Each record's source comes back as given; a record made without one has ""."""
        records = [
            fact(1, source="reconciler.events:3"),
            fact(2, source="/data/in/2026-01-02.jsonl"),
            fact(3, source="bestellungen:ü"),
            NewRecord("fact", "event-4", "PaymentDebited", b"{}"),
        ]
        stored = append(store, records)
        assert [r.source for r in stored if r is not None] == [
            "reconciler.events:3",
            "/data/in/2026-01-02.jsonl",
            "bestellungen:ü",
            "",
        ]
        assert list(store.read()) == stored
        assert store.verify().ok

    def test_read_filters_by_source(self, store: LogStore) -> None:
        """`source` keeps one shard's records, in position order, with after and limit."""
        _append_mixed_log(store)
        assert [r.position for r in store.read(source="t:0")] == [1, 2, 4, 6, 7, 9]
        assert {r.source for r in store.read(source="t:0")} == {"t:0"}
        assert [r.position for r in store.read(after=2, limit=3, source="t:0")] == [4, 6, 7]
        assert [r.position for r in store.read(after=7, source="t:0")] == [9]
        assert list(store.read(source="t:0", limit=0)) == []
        assert list(store.read(source="t:2")) == []

    def test_read_filters_by_kind(self, store: LogStore) -> None:
        """`kind` keeps facts or decisions only, in position order, with after and limit."""
        _append_mixed_log(store)
        assert [r.position for r in store.read(kind="decision")] == [3, 6, 8]
        assert [r.position for r in store.read(after=3, limit=2, kind="decision")] == [6, 8]
        assert [r.position for r in store.read(after=3, limit=4, kind="fact")] == [4, 5, 7, 9]
        assert {r.kind for r in store.read(kind="fact")} == {"fact"}

    def test_read_filters_by_source_and_kind(self, store: LogStore) -> None:
        """Both filters together give one shard's facts (what a rebuild reads)."""
        _append_mixed_log(store)
        assert [r.position for r in store.read(source="t:0", kind="fact")] == [1, 2, 4, 7, 9]
        assert [r.position for r in store.read(after=2, limit=2, source="t:0", kind="fact")] == [
            4,
            7,
        ]
        assert [r.position for r in store.read(source="t:1", kind="decision")] == [3, 8]

    def test_filtered_read_pages_by_matching_records(
        self, store: LogStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Filtered reads page by the records that match: none skipped, none repeated."""
        monkeypatch.setattr(paging, "PAGE_SIZE", 2)
        append(store, [fact(n, source=f"t:{n % 3}") for n in range(1, 31)])
        assert [r.position for r in store.read(source="t:1")] == list(range(1, 31, 3))
        assert [r.position for r in store.read(after=4, limit=5, source="t:1")] == [
            7,
            10,
            13,
            16,
            19,
        ]
        assert [r.position for r in store.read(after=25, source="t:0", kind="fact")] == [27, 30]

    def test_filtered_read_refuses_a_negative_limit(self, store: LogStore) -> None:
        """A negative limit is refused, filtered or not."""
        with pytest.raises(ValueError, match="limit"):
            list(store.read(limit=-1, source="t:0"))

    # --- dedupe ----------------------------------------------------------------------

    def test_duplicate_of_stored_record_is_reported_and_not_stored(self, store: LogStore) -> None:
        """A record whose key is stored gives None, and the rest of the batch is stored."""
        append(store, [fact(1)])
        changed = NewRecord("fact", "event-1", "PaymentDebited", b'{"other":1}')
        results = append(store, [changed, fact(2)])
        assert results[0] is None
        assert results[1] is not None
        assert results[1].position == 2
        assert [r.payload for r in store.read()] == [fact(1).payload, fact(2).payload]

    def test_duplicate_within_batch_keeps_the_first(self, store: LogStore) -> None:
        """A key repeated in one batch is stored once, at its first occurrence."""
        results = append(store, [fact(1), fact(2), fact(1), fact(3)])
        assert [None if r is None else r.position for r in results] == [1, 2, None, 3]

    def test_same_record_id_of_other_kind_is_not_a_duplicate(self, store: LogStore) -> None:
        """The dedupe key is (kind, record_id): a decision may share a fact's id."""
        decision = NewRecord("decision", "event-1", "RefundCommanded", b"{}")
        results = append(store, [fact(1), decision])
        assert [r.kind for r in results if r is not None] == ["fact", "decision"]

    def test_duplicate_of_record_appended_earlier_in_same_transaction(
        self, store: LogStore
    ) -> None:
        """A second append in one transaction sees the first one's records."""
        with store.transaction() as tx:
            tx.append(facts(1, 2))
            results = tx.append([fact(2), fact(3)])
        assert [None if r is None else r.position for r in results] == [None, 3]

    def test_large_batch_with_duplicates_is_deduped(self, store: LogStore) -> None:
        """A batch larger than one lookup round, half already stored, stores the new half."""
        append(store, facts(1, 1000))
        results = append(store, facts(501, 2000))
        assert results[:500] == [None] * 500
        assert [r.position for r in results[500:] if r is not None] == list(range(1001, 2001))
        assert store.last_position() == 2000

    # --- hash chain ------------------------------------------------------------------

    def test_each_hash_chains_from_the_previous_record(self, store: LogStore) -> None:
        """Record n's hash covers record n-1's hash; record 1 chains from zero bytes."""
        append(store, facts(1, 3))
        previous = GENESIS_HASH
        for record in store.read():
            expected = record_hash(
                previous,
                record.position,
                record.kind,
                record.record_id,
                record.type,
                record.payload,
                record.source,
            )
            assert record.recorded_hash == expected
            previous = record.recorded_hash

    def test_verify_passes_an_untouched_log(self, store: LogStore) -> None:
        """An untouched log verifies, with every record checked and the head reported."""
        stored = append(store, facts(1, 7))
        report = store.verify()
        assert report.ok
        assert report.records_checked == 7
        assert report.first_bad_position is None
        assert stored[-1] is not None
        assert report.head_hash == stored[-1].recorded_hash

    def test_verify_passes_an_empty_log(self, store: LogStore) -> None:
        """An empty log verifies, with nothing checked."""
        report = store.verify()
        assert report.ok
        assert report.records_checked == 0
        assert report.head_hash == GENESIS_HASH

    @pytest.mark.parametrize(
        ("column", "value"),
        [
            ("payload", b'{"amount":1}'),
            ("type", "RefundSucceeded"),
            ("record_id", "event-999"),
            ("kind", "decision"),
            ("source", "payments:9"),
            ("source", ""),
        ],
    )
    def test_verify_locates_an_altered_record(
        self, store: LogStore, tamper: Tamper, column: str, value: object
    ) -> None:
        """A record whose content was changed in place is reported as altered, at its position."""
        append(store, facts(1, 5))
        tamper(f"UPDATE records SET {column} = %s WHERE position = 3", [value])  # noqa: S608
        report = store.verify()
        assert not report.ok
        assert (report.first_bad_position, report.fault) == (3, Fault.ALTERED)
        assert report.records_checked == 3

    def test_verify_locates_a_removed_record_as_a_gap(
        self, store: LogStore, tamper: Tamper
    ) -> None:
        """A deleted record leaves a position gap, reported at the missing position."""
        append(store, facts(1, 5))
        tamper("DELETE FROM records WHERE position = 3", [])
        report = store.verify()
        assert (report.ok, report.first_bad_position, report.fault) == (False, 3, Fault.GAP)

    def test_verify_locates_a_removed_and_renumbered_record(
        self, store: LogStore, tamper: Tamper
    ) -> None:
        """A deletion hidden by renumbering is a broken link where the record was."""
        append(store, facts(1, 5))
        tamper("DELETE FROM records WHERE position = 3", [])
        _shift_positions(tamper, from_position=4, by=-1)
        report = store.verify()
        assert (report.ok, report.first_bad_position, report.fault) == (
            False,
            3,
            Fault.BROKEN_LINK,
        )

    def test_verify_locates_a_forged_inserted_record(self, store: LogStore, tamper: Tamper) -> None:
        """A record slipped in with a valid hash and link is reported as inserted."""
        stored = append(store, facts(1, 5))
        before = stored[1]
        assert before is not None
        _shift_positions(tamper, from_position=3, by=1)
        forged = fact(99)
        forged_hash = record_hash(
            before.recorded_hash,
            3,
            forged.kind,
            forged.record_id,
            forged.type,
            forged.payload,
            forged.source,
        )
        _insert_row(tamper, forged, 3, forged_hash, before.recorded_hash)
        report = store.verify()
        assert (report.ok, report.first_bad_position, report.fault) == (False, 3, Fault.INSERTED)

    def test_verify_locates_an_inserted_record_with_a_bogus_hash(
        self, store: LogStore, tamper: Tamper
    ) -> None:
        """A record slipped in with made-up hashes is reported as inserted."""
        append(store, facts(1, 5))
        _shift_positions(tamper, from_position=3, by=1)
        _insert_row(tamper, fact(99), 3, b"\x01" * 32, b"\x02" * 32)
        report = store.verify()
        assert (report.ok, report.first_bad_position, report.fault) == (False, 3, Fault.INSERTED)

    def test_verify_locates_a_replaced_record_after_it(
        self, store: LogStore, tamper: Tamper
    ) -> None:
        """A record altered with its hash recomputed breaks the link of the next one."""
        stored = append(store, facts(1, 5))
        before = stored[1]
        assert before is not None
        replacement = fact(3, record_id="event-3")._replace(payload=b'{"amount":1}')
        new_hash = record_hash(
            before.recorded_hash,
            3,
            replacement.kind,
            replacement.record_id,
            replacement.type,
            replacement.payload,
            replacement.source,
        )
        tamper(
            "UPDATE records SET payload = %s, recorded_hash = %s WHERE position = 3",
            [replacement.payload, new_hash],
        )
        report = store.verify()
        assert (report.ok, report.first_bad_position, report.fault) == (
            False,
            4,
            Fault.BROKEN_LINK,
        )

    def test_verify_head_hash_exposes_a_cut_tail(self, store: LogStore, tamper: Tamper) -> None:
        """Cutting the last record leaves a valid chain, but its head no longer matches."""
        stored = append(store, facts(1, 5))
        head_before = store.verify().head_hash
        tamper("DELETE FROM records WHERE position = 5", [])
        report = store.verify()
        assert report.ok
        assert report.head_hash != head_before
        assert stored[3] is not None
        assert report.head_hash == stored[3].recorded_hash

    # --- transactions ----------------------------------------------------------------

    def test_block_that_raises_stores_nothing(self, store: LogStore) -> None:
        """If the block raises, none of its records, positions or dead letters are kept."""
        append(store, facts(1, 2))
        with pytest.raises(RuntimeError, match="boom"):
            _write_everything_then_raise(store)
        assert [r.position for r in store.read()] == [1, 2]
        assert store.positions() == {}
        assert store.dead_letters() == []

    def test_positions_stay_gapless_after_a_rolled_back_transaction(self, store: LogStore) -> None:
        """Positions taken by a rolled-back batch are given again to the next one."""
        append(store, facts(1, 2))
        with pytest.raises(RuntimeError, match="boom"):
            _write_everything_then_raise(store)
        results = append(store, facts(5, 6))
        assert [r.position for r in results if r is not None] == [3, 4]
        assert store.verify().ok

    def test_failed_operation_raises_an_eventsourcing_error_chained_to_the_driver(
        self, store: LogStore
    ) -> None:
        """A driver error inside the block surfaces as eventsourcing's, with the cause kept."""
        with pytest.raises(IntegrityError) as caught, store.transaction() as tx:
            tx.append([_BAD_KIND])
        assert isinstance(caught.value.__cause__, sqlite3.Error | psycopg.Error)
        assert store.last_position() == 0

    def test_swallowed_failure_rolls_back_the_whole_unit(self, store: LogStore) -> None:
        """A unit whose operation failed cannot commit, even if the caller caught the error."""
        with pytest.raises(TransactionStateError):
            _swallow_a_failed_append(store)
        assert store.last_position() == 0
        assert store.positions() == {}

    def test_unit_of_work_is_unusable_after_its_block(self, store: LogStore) -> None:
        """Appending through a unit whose block has ended is refused."""
        with store.transaction() as tx:
            tx.append([fact(1)])
        with pytest.raises(TransactionStateError):
            tx.append([fact(2)])
        assert store.last_position() == 1

    # --- input positions and dead letters --------------------------------------------

    def test_positions_are_stored_and_overwritten(self, store: LogStore) -> None:
        """Input positions are kept per source; a later value replaces an earlier one."""
        with store.transaction() as tx:
            tx.set_positions({"payments:0": 10, "payments:1": 4})
        with store.transaction() as tx:
            tx.set_positions({"payments:0": 25})
        assert store.positions() == {"payments:0": 25, "payments:1": 4}

    def test_tx_position_is_none_for_an_unknown_name(self, store: LogStore) -> None:
        """A name no transaction has set has no position."""
        with store.transaction() as tx:
            tx.set_positions({"payments:0": 3})
        with store.transaction() as tx:
            assert tx.position("payments:1") is None

    def test_tx_position_sees_positions_set_earlier_in_the_transaction(
        self, store: LogStore
    ) -> None:
        """A position set in this transaction is read back before it commits."""
        with store.transaction() as tx:
            assert tx.position("payments:0") is None
            tx.set_positions({"payments:0": 10})
            assert tx.position("payments:0") == 10
            tx.set_positions({"payments:0": 12})
            assert tx.position("payments:0") == 12

    def test_tx_position_sees_positions_of_earlier_transactions(
        self, store: LogStore, open_store_on_database: OpenStore
    ) -> None:
        """Positions committed before, by this store or another on the database, are seen."""
        with store.transaction() as tx:
            tx.set_positions({"payments:0": 10, "payments:1": 4})
        other = open_store_on_database()
        with other.transaction() as tx:
            tx.set_positions({"payments:1": 8})
        with store.transaction() as tx:
            assert (tx.position("payments:0"), tx.position("payments:1")) == (10, 8)

    def test_tx_position_is_not_changed_by_a_rolled_back_transaction(self, store: LogStore) -> None:
        """A position set by a transaction that rolled back is not seen afterwards."""
        with pytest.raises(RuntimeError, match="boom"):
            _write_everything_then_raise(store)
        with store.transaction() as tx:
            assert tx.position("topic:0") is None

    def test_tx_position_waits_for_a_writer_in_progress(
        self, open_store_on_database: OpenStore
    ) -> None:
        """A transaction begun while another is writing reads the position that one commits."""
        first, second = open_store_on_database(), open_store_on_database()
        writing = threading.Event()
        seen: list[int | None] = []
        errors: list[BaseException] = []

        def fence() -> None:
            try:
                writing.wait()
                with second.transaction() as tx:
                    seen.append(tx.position("payments:0"))
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)

        fencer = threading.Thread(target=fence)
        fencer.start()
        with first.transaction() as tx:
            tx.set_positions({"payments:0": 42})
            writing.set()
            # Long enough for the fencer to reach its read, were it not held at the lock.
            time.sleep(0.3)
        fencer.join()
        assert errors == []
        assert seen == [42]

    def test_tx_position_after_its_block_is_refused(self, store: LogStore) -> None:
        """Reading a position through a unit whose block has ended is refused."""
        with store.transaction() as tx:
            pass
        with pytest.raises(TransactionStateError):
            tx.position("payments:0")

    def test_dead_letters_are_kept_in_recorded_order(self, store: LogStore) -> None:
        """Dead letters come back in the order recorded, with raw bytes and reasons intact."""
        letters = [
            DeadLetter("in.jsonl", "line 12", "not JSON", b"\xff\x00{"),
            DeadLetter("payments:0", "offset 7", "unknown type", b'{"type":"X"}'),
        ]
        with store.transaction() as tx:
            tx.add_dead_letters(letters[:1])
        with store.transaction() as tx:
            tx.add_dead_letters(letters[1:])
        stored = store.dead_letters()
        assert [(d.source, d.locator, d.reason, d.raw) for d in stored] == [
            (d.source, d.locator, d.reason, d.raw) for d in letters
        ]
        assert stored[0].id < stored[1].id

    def test_dead_letters_page_by_id(self, store: LogStore) -> None:
        """`after_id` and `limit` page through dead letters in recorded order."""
        letters = [DeadLetter("payments:0", f"offset {n}", "not JSON", b"{") for n in range(5)]
        with store.transaction() as tx:
            tx.add_dead_letters(letters[:3])
        with store.transaction() as tx:
            tx.add_dead_letters(letters[3:])
        everything = store.dead_letters()
        pages: list[list[str]] = []
        after_id = 0
        while page := store.dead_letters(after_id=after_id, limit=2):
            pages.append([letter.locator for letter in page])
            after_id = page[-1].id
        assert pages == [["offset 0", "offset 1"], ["offset 2", "offset 3"], ["offset 4"]]
        assert store.dead_letters(after_id=everything[1].id) == everything[2:]
        assert store.dead_letters(after_id=everything[-1].id) == []
        assert store.dead_letters(limit=0) == []

    def test_dead_letters_refuse_a_negative_limit(self, store: LogStore) -> None:
        """A negative dead letter limit is refused."""
        with pytest.raises(ValueError, match="limit"):
            store.dead_letters(limit=-1)

    def test_records_positions_and_dead_letters_commit_together(self, store: LogStore) -> None:
        """One unit of work stores records, positions and dead letters at once."""
        with store.transaction() as tx:
            tx.append(facts(1, 2))
            tx.set_positions({"payments:0": 3})
            tx.add_dead_letters([DeadLetter("payments:0", "offset 2", "bad amount", b"{}")])
        assert store.last_position() == 2
        assert store.positions() == {"payments:0": 3}
        assert len(store.dead_letters()) == 1

    # --- several stores on one database ----------------------------------------------

    def test_create_tables_is_idempotent(
        self, store: LogStore, open_store_on_database: OpenStore
    ) -> None:
        """Creating the tables again, from another store, keeps what is stored."""
        append(store, facts(1, 2))
        store.create_tables()
        other = open_store_on_database()
        assert [r.record_id for r in other.read()] == ["event-1", "event-2"]

    def test_concurrent_appenders_keep_one_gapless_valid_chain(
        self, open_store_on_database: OpenStore
    ) -> None:
        """Appenders racing on one database give gapless positions, one chain, no duplicates."""
        writers, batches, batch_size = 4, 8, 25
        stores = [open_store_on_database() for _ in range(writers)]
        errors: list[BaseException] = []

        def write(writer: int) -> None:
            try:
                for batch in range(batches):
                    own = [fact(0, record_id=f"w{writer}-b{batch}-{n}") for n in range(batch_size)]
                    shared = [fact(0, record_id=f"shared-{batch}")]
                    append(stores[writer], own + shared)
            except BaseException as error:  # noqa: BLE001 - reported by the main thread
                errors.append(error)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        expected = writers * batches * batch_size + batches
        assert [r.position for r in stores[0].read()] == list(range(1, expected + 1))
        assert stores[0].verify().ok


# Breaks the store's CHECK on kind: a driver error raised inside a unit of work.
_BAD_KIND = NewRecord("fact", "x", "T", b"{}")._replace(kind="neither")  # type: ignore[arg-type]


def _append_mixed_log(store: LogStore) -> None:
    """Positions 1-9: two shards, facts and decisions interleaved (see the reads above)."""
    append(
        store,
        [
            fact(1, source="t:0"),  # 1
            fact(2, source="t:0"),  # 2
            decision(3, source="t:1"),  # 3
            fact(4, source="t:0"),  # 4
            fact(5, source="t:1"),  # 5
            decision(6, source="t:0"),  # 6
            fact(7, source="t:0"),  # 7
            decision(8, source="t:1"),  # 8
            fact(9, source="t:0"),  # 9
        ],
    )


def _write_everything_then_raise(store: LogStore) -> None:
    with store.transaction() as tx:
        tx.append(facts(3, 4))
        tx.set_positions({"topic:0": 42})
        tx.add_dead_letters([DeadLetter("in.jsonl", "line 1", "not JSON", b"{")])
        message = "boom"
        raise RuntimeError(message)


def _swallow_a_failed_append(store: LogStore) -> None:
    with store.transaction() as tx:
        tx.set_positions({"topic:0": 7})
        with contextlib.suppress(PersistenceError):
            tx.append([fact(1), _BAD_KIND])


def _shift_positions(tamper: Tamper, *, from_position: int, by: int) -> None:
    # Through negative positions, so that no row collides with one not yet moved.
    tamper("UPDATE records SET position = -position WHERE position >= %s", [from_position])
    tamper("UPDATE records SET position = -position + %s WHERE position < 0", [by])


def _insert_row(
    tamper: Tamper, record: NewRecord, position: int, recorded_hash: bytes, prev_hash: bytes
) -> None:
    tamper(
        "INSERT INTO records"
        " (position, kind, record_id, type, payload, source, recorded_hash, prev_hash)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        [position, *record, recorded_hash, prev_hash],
    )


class TestSQLiteLogStore(LogStoreContract):
    """The contract on a SQLite file."""

    @pytest.fixture
    def database(self, tmp_path: Path) -> Path:
        """Give the path of the test's SQLite database file."""
        return tmp_path / "log.sqlite"

    @pytest.fixture
    def open_store_on_database(self, database: Path) -> Iterator[OpenStore]:
        """Open stores on the test's database, and close them all afterwards."""
        opened: list[SQLiteLogStore] = []

        def open_store() -> SQLiteLogStore:
            store = SQLiteLogStore(database)
            opened.append(store)
            store.create_tables()
            return store

        yield open_store
        for store in opened:
            store.close()

    @pytest.fixture
    def tamper(self, database: Path) -> Tamper:
        """Run raw SQL on the database file, behind the store's back."""

        def run(statement: str, parameters: Sequence[Any]) -> None:
            with sqlite3.connect(database) as connection:
                connection.execute(statement.replace("%s", "?"), parameters)
            connection.close()

        return run


@pytest.mark.postgres
class TestPostgresLogStore(LogStoreContract):
    """The contract on PostgreSQL, in a schema of the test's own."""

    @pytest.fixture
    def open_store_on_database(self, pg_dsn: str, pg_schema: str) -> Iterator[OpenStore]:
        """Open stores on the test's schema, and close them all afterwards."""
        opened: list[PostgresLogStore] = []

        def open_store() -> PostgresLogStore:
            store = PostgresLogStore(pg_dsn, schema=pg_schema)
            opened.append(store)
            store.create_tables()
            return store

        yield open_store
        for store in opened:
            store.close()

    @pytest.fixture
    def tamper(self, pg_dsn: str, pg_schema: str) -> Tamper:
        """Run raw SQL in the test's schema, behind the store's back."""

        def run(statement: str, parameters: Sequence[Any]) -> None:
            with psycopg.connect(
                pg_dsn, autocommit=True, options=f"-c search_path={pg_schema}"
            ) as connection:
                connection.execute(statement.encode(), parameters)

        return run
