"""The live engine's cold tier: same decisions and log, bounded memory, no leaked archive."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config import ConfigError
from reconciler.domain.accounting import total_money
from reconciler.domain.rules import Rules
from reconciler.engine import Engine, StaleBatchError
from reconciler.ingest.source import InputRecord
from reconciler.service.settings import load_settings
from reconciler.store import open_store
from tests.builders import UNIT, Log
from tests.strategies import logs

if TYPE_CHECKING:
    from reconciler.domain.archive import OrderArchive
    from reconciler.store import StoredRecord

RULES = Rules()
# The refund-flood guard at its tightest, so that generated logs hold and release often.
FLOOD_RULES = Rules(refund_flood_limit=1)
BOTH = pytest.mark.parametrize("rules", [RULES, FLOOD_RULES], ids=["spec", "flood-guard"])
SOURCE = "topic:0"


def records_of(log: Log) -> list[InputRecord]:
    """The log's facts as one source's input records."""
    return [InputRecord.from_fact(SOURCE, n, fact) for n, fact in enumerate(log.facts, 1)]


def batches(records: list[InputRecord], size: int) -> list[list[InputRecord]]:
    """The records cut into batches of `size`."""
    return [records[start : start + size] for start in range(0, len(records), size)]


def decide_all(
    engine: Engine, pages: list[list[InputRecord]]
) -> tuple[list[list[str]], list[StoredRecord]]:
    """Each batch's decisions as JSON, then the whole stored log."""
    decided = [[d.model_dump_json() for d in engine.process(page).decisions] for page in pages]
    return decided, list(engine.store.read())


def archive_of(engine: Engine, source: str = SOURCE) -> OrderArchive:
    """The cold tier of a source's state (there must be one)."""
    archive = engine.state(source).archive
    assert archive is not None
    return archive


def assert_closed(archive: OrderArchive) -> None:
    """The archive's temporary database is gone."""
    with pytest.raises(sqlite3.ProgrammingError):
        list(archive.orders())


def settled_orders(count: int, group: int) -> Log:
    """`count` orders paid and delivered; a day passes after each `group`, settling them."""
    log = Log()
    log.tick()
    for number in range(count):
        order_id = f"O{number}"
        log.order(order_id, quantity=1, expires_in=900)
        log.debit(f"P{number}", order_id, amount=UNIT)
        log.stamps(order_id, f"S{number}")
        if number % group == group - 1:
            log.tick(86_400)
    return log


@BOTH
@settings(max_examples=60)
@given(log=logs(max_actions=60), size=st.sampled_from((1, 3, 7)))
def test_a_tiny_cold_tier_changes_no_decision_and_no_logged_record(
    rules: Rules, log: Log, size: int
) -> None:
    """With cold_after=1 each batch decides and logs byte for byte what it does without."""
    pages = batches(records_of(log), size)
    plain = Engine(rules, open_store("sqlite://:memory:"))
    cold = Engine(rules, open_store("sqlite://:memory:"), cold_after=1)
    try:
        assert decide_all(cold, pages) == decide_all(plain, pages)
        assert total_money(cold.state(SOURCE)) == total_money(plain.state(SOURCE))
    finally:
        for engine in (plain, cold):
            engine.close()
            engine.store.close()


@BOTH
@settings(max_examples=40)
@given(log=logs(max_actions=60), data=st.data())
def test_a_shard_restored_with_a_cold_tier_decides_the_rest_the_same(
    rules: Rules, log: Log, data: st.DataObject
) -> None:
    """A restart midway, restoring into a cold tier, leaves the later decisions unchanged."""
    pages = batches(records_of(log), 3)
    cut = data.draw(st.integers(0, len(pages)))
    plain = Engine(rules, open_store("sqlite://:memory:"))
    first = Engine(rules, open_store("sqlite://:memory:"), cold_after=1)
    try:
        expected, _ = decide_all(plain, pages)
        decide_all(first, pages[:cut])
        second = Engine(rules, first.store, cold_after=1)
        second.restore(SOURCE)
        later, stored = decide_all(second, pages[cut:])
        second.close()
        assert later == expected[cut:]
        assert stored == list(plain.store.read())
    finally:
        for engine in (plain, first):
            engine.close()
            engine.store.close()


def test_resident_orders_stay_near_the_bound() -> None:
    """Past cold_after, settled orders leave memory after each batch; the rest come back."""
    cold_after, group, count = 4, 5, 60
    log = settled_orders(count, group)
    engine = Engine(RULES, open_store("sqlite://:memory:"), cold_after=cold_after)
    plain = Engine(RULES, open_store("sqlite://:memory:"))
    try:
        for page in batches(records_of(log), 10):
            engine.process(page)
            plain.process(page)
            state = engine.state(SOURCE)
            # At most the bound, plus the orders of the day in progress (deadlines pending).
            assert dict.__len__(state.orders) <= cold_after + group
        archive = archive_of(engine)
        assert archive.archived_orders >= count - cold_after - group
        assert dict.__len__(state.orders) + archive.archived_orders == count
        assert total_money(state) == total_money(plain.state(SOURCE))
        # A fact naming an archived order finds it.
        log.debit("P-late", "O0", amount=UNIT)
        late = InputRecord.from_fact(SOURCE, len(log.facts), log.facts[-1])
        decisions = [d.model_dump_json() for d in engine.process([late]).decisions]
        assert decisions == [d.model_dump_json() for d in plain.process([late]).decisions]
        assert decisions
    finally:
        for each in (engine, plain):
            each.close()
            each.store.close()


def test_forget_restore_and_close_free_the_archive() -> None:
    """`forget`, a `restore` over a shard, and `close` each close the archive they drop."""
    store = open_store("sqlite://:memory:")
    engine = Engine(RULES, store, cold_after=2)
    try:
        engine.process(records_of(settled_orders(10, 2)))
        forgotten = archive_of(engine)
        assert forgotten.archived_orders > 0
        engine.forget(SOURCE)
        assert_closed(forgotten)
        assert engine.sources() == []
        engine.restore(SOURCE)
        replaced = archive_of(engine)
        assert replaced.archived_orders > 0  # restoring spills between facts too
        engine.restore(SOURCE)
        assert_closed(replaced)
        last = archive_of(engine)
        engine.close()
        assert_closed(last)
        assert engine.sources() == []
    finally:
        store.close()


def test_a_failed_batch_drops_and_closes_its_shards_archive() -> None:
    """A fenced (stale) batch drops the source's state and closes its cold tier."""
    store = open_store("sqlite://:memory:")
    engine = Engine(RULES, store, cold_after=1)
    records = records_of(settled_orders(6, 2))
    try:
        engine.process(records[:9], positions={SOURCE: 10})
        archive = archive_of(engine)
        with pytest.raises(StaleBatchError):
            engine.process(records[9:], positions={SOURCE: 19}, expected={SOURCE: 5})
        assert engine.sources() == []
        assert_closed(archive)
    finally:
        engine.close()
        store.close()


def test_without_cold_after_a_shard_has_no_archive() -> None:
    """The default engine keeps every order in memory, as before."""
    store = open_store("sqlite://:memory:")
    engine = Engine(RULES, store)
    try:
        engine.process(records_of(settled_orders(10, 2)))
        assert engine.state(SOURCE).archive is None
        assert dict.__len__(engine.state(SOURCE).orders) == 10
    finally:
        store.close()


def test_cold_after_below_one_is_refused() -> None:
    """An engine refuses a bound of 0 or less: None is how to keep everything in memory."""
    with pytest.raises(ValueError, match="cold_after"):
        Engine(RULES, open_store("sqlite://:memory:"), cold_after=0)


def test_the_setting_defaults_to_50000_and_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """RECONCILER_STATE_COLD_AFTER: 50 000 by default, 0 allowed, a negative is refused."""
    monkeypatch.delenv("RECONCILER_STATE_COLD_AFTER", raising=False)
    assert load_settings().state_cold_after == 50_000
    monkeypatch.setenv("RECONCILER_STATE_COLD_AFTER", "0")
    assert load_settings().state_cold_after == 0
    monkeypatch.setenv("RECONCILER_STATE_COLD_AFTER", "-1")
    with pytest.raises(ConfigError, match="state_cold_after"):
        load_settings()
