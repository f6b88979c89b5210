"""A cold tier for a long-lived decider state: settled orders on disk, back on access.

A replay of a long log, or `reconciler serve` over a long season, would otherwise keep
every order, debit, refund and serial it ever saw in memory (SPEC rules 3, 7 and 10
mean none can be forgotten). Past a bound, `OrderArchive.spill` moves settled orders to
a private temporary SQLite database, each as one unit with its debits and refunds
(pickled together, so the objects that point at each other still do when they come
back). Lookups through the state's `orders`, `payments` and `refunds` bring an archived
order back into memory with its debits and refunds; `serial in state.serials` also asks
the archive. Only lookups do: whole-state iterations go through `archived_orders`
(accounting.py does), which yields read-only copies. Decisions are therefore the same
with or without an archive; only where the data sits differs. Spilling happens between
batches of facts, never inside one, so no handler holds an order that has just left
memory.
"""

from __future__ import annotations

import io
import pickle
import sqlite3
from datetime import timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, TypeVar, overload

from reconciler.domain.decisions import Case
from reconciler.domain.events import shared_zone
from reconciler.domain.state import Attempt, Debit, Order, Refund, RefundStatus

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from reconciler.domain.state import State

V = TypeVar("V")
T = TypeVar("T")

# A refund in one of these, with no open escalation, needs nothing more from the engine.
_SETTLED_REFUND = frozenset(
    {RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.REJECTED, RefundStatus.WITHDRAWN}
)
_SCHEMA = (
    "CREATE TABLE orders (order_id TEXT PRIMARY KEY, unit BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE payments (payment_id TEXT PRIMARY KEY, order_id TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE refunds (refund_id TEXT PRIMARY KEY, order_id TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE serials (serial TEXT PRIMARY KEY) WITHOUT ROWID",
)
# Each table's key column, as _SCHEMA names it.
_KEY = {"orders": "order_id", "payments": "payment_id", "refunds": "refund_id", "serials": "serial"}
_BLOOM_BITS_PER_KEY = 16
_PAGE = 2000
_SPILL_SHARE = 10  # a spill moves a tenth of the bound (or more): short pauses


def _shared_zone(offset: timedelta, *name: str) -> tzinfo:
    """The tzinfo events.py shares for this offset, so restored datetimes compare fast."""
    return shared_zone(timezone(offset, *name))


def _reduce_zone(zone: timezone) -> tuple[Callable[..., tzinfo], tuple[object, ...]]:
    """Pickle a tzinfo as a call to `_shared_zone`."""
    return _shared_zone, zone.__getinitargs__()  # type: ignore[attr-defined]


class _Seen:
    """A Bloom filter over one table's keys: "certainly not archived" without a query.

    Two bits a key out of 16 per key (about 1.4% false positives when full), taken from
    the two halves of the key's hash: written out, not looped, since every miss of a
    lookup asks it.
    """

    __slots__ = ("_bits", "_mask", "capacity", "count")

    def __init__(self, capacity: int) -> None:
        """Empty, sized for `capacity` keys."""
        size = 1 << max(10, (capacity * _BLOOM_BITS_PER_KEY).bit_length())
        self._bits = bytearray(size >> 3)
        self._mask = size - 1
        self.capacity = capacity
        self.count = 0

    def add(self, key: str) -> None:
        """Remember a key."""
        # str hashes are stable within a process, and the archive lives in one process.
        h = hash(key)
        first, second = h & self._mask, (h >> 32) & self._mask
        self._bits[first >> 3] |= 1 << (first & 7)
        self._bits[second >> 3] |= 1 << (second & 7)
        self.count += 1

    def may_hold(self, key: str) -> bool:
        """False when the key was certainly never added."""
        h = hash(key)
        first, second = h & self._mask, (h >> 32) & self._mask
        bits = self._bits
        return bool(bits[first >> 3] & (1 << (first & 7))) and bool(
            bits[second >> 3] & (1 << (second & 7))
        )


class _ColdDict(dict[str, V]):
    """A state's dict whose misses are looked up in the archive (and brought back)."""

    __slots__ = ("_bring_back", "_holds")

    def __init__(
        self,
        resident: dict[str, V],
        bring_back: Callable[[str], V | None],
        holds: Callable[[str], bool],
    ) -> None:
        """The resident entries, and how to find an archived one."""
        super().__init__(resident)
        self._bring_back = bring_back
        self._holds = holds

    def __missing__(self, key: str) -> V:
        """An archived entry, brought back; KeyError if there is none."""
        found = self._bring_back(key)
        if found is None:
            raise KeyError(key)
        return found

    @overload
    def get(self, key: str, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: str, default: V, /) -> V: ...
    @overload
    def get(self, key: str, default: T, /) -> V | T: ...
    def get(self, key: str, default: object = None, /) -> object:
        """The entry, brought back from the archive if it is there."""
        found = dict.get(self, key)
        if found is None:
            found = self._bring_back(key)
        return default if found is None else found

    def __contains__(self, key: object) -> bool:
        """Resident or archived (an archived entry stays where it is)."""
        return dict.__contains__(self, key) or (isinstance(key, str) and self._holds(key))


class _ColdSet(set[str]):
    """The state's serials: those in memory, then those in the archive."""

    __slots__ = ("_holds",)

    def __init__(self, resident: set[str], holds: Callable[[str], bool]) -> None:
        """The resident serials, and how to ask the archive."""
        super().__init__(resident)
        self._holds = holds

    def __contains__(self, serial: object) -> bool:
        """Seen before: in memory or in the archive."""
        return set.__contains__(self, serial) or (isinstance(serial, str) and self._holds(serial))


class OrderArchive:
    """The cold tier of one `State`: `State(archive=OrderArchive(bound))` attaches it."""

    def __init__(self, bound: int = 50_000) -> None:
        """Keep at most about `bound` orders (and `bound` serials) in memory."""
        if bound < 1:
            msg = "the archive's bound must be at least 1"
            raise ValueError(msg)
        self.bound = bound
        self._next_spill = bound
        # Private, deleted on close. Any thread: the service's engine restores a shard in
        # its consumer thread and decides in its writer thread, never both at once.
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for statement in (
            "PRAGMA journal_mode = OFF",
            "PRAGMA synchronous = OFF",
            "PRAGMA cache_size = -8192",  # 8 MiB: the archive is there to save memory
            *_SCHEMA,
        ):
            self._db.execute(statement)
        self._seen = {
            table: _Seen(4 * bound) for table in ("orders", "payments", "refunds", "serials")
        }
        self.archived_orders = 0
        self._state: State | None = None

    # -- wiring -------------------------------------------------------------------------

    def attach(self, state: State) -> None:
        """Serve `state`; called by `State.__post_init__`."""
        if self._state is not None:
            msg = "an archive serves one state"
            raise ValueError(msg)
        self._state = state

    def _wire(self) -> None:
        """Swap the state's dicts for ones that look in the archive, before the first spill.

        Not before: until something is archived, lookups cost what they always did.
        """
        state = self.state
        if isinstance(state.orders, _ColdDict):
            return
        state.orders = _ColdDict(state.orders, self.bring_back, self._holds("orders"))
        state.payments = _ColdDict(state.payments, self._debit, self._holds("payments"))
        state.refunds = _ColdDict(state.refunds, self._refund, self._holds("refunds"))
        state.serials = _ColdSet(state.serials, self._holds("serials"))

    def close(self) -> None:
        """Drop the temporary database."""
        self._db.close()

    @property
    def state(self) -> State:
        """The state this archive serves."""
        if self._state is None:
            msg = "the archive is not attached to a state"
            raise ValueError(msg)
        return self._state

    # -- lookups ------------------------------------------------------------------------

    def _holds(self, table: str) -> Callable[[str], bool]:
        """Whether `table` holds a key: the Bloom filter first, then the database."""
        query = f"SELECT 1 FROM {table} WHERE {_KEY[table]} = ?"  # noqa: S608 - our own names

        def holds(key: str) -> bool:
            # The filter is looked up each time: it is replaced when it fills up.
            return (
                self._seen[table].may_hold(key)
                and self._db.execute(query, (key,)).fetchone() is not None
            )

        return holds

    def _owner(self, table: str, key: str) -> str | None:
        """The archived order that holds a payment or refund id."""
        if not self._seen[table].may_hold(key):
            return None
        row = self._db.execute(
            f"SELECT order_id FROM {table} WHERE {_KEY[table]} = ?",  # noqa: S608 - our own names
            (key,),
        ).fetchone()
        return None if row is None else str(row[0])

    def _debit(self, payment_id: str) -> Debit | None:
        """The debit with this id, its order brought back, if it is archived."""
        order_id = self._owner("payments", payment_id)
        if order_id is None or self.bring_back(order_id) is None:
            return None
        return dict.get(self.state.payments, payment_id)

    def _refund(self, refund_id: str) -> Refund | None:
        """The refund with this id, its order brought back, if it is archived."""
        order_id = self._owner("refunds", refund_id)
        if order_id is None or self.bring_back(order_id) is None:
            return None
        return dict.get(self.state.refunds, refund_id)

    def bring_back(self, order_id: str) -> Order | None:
        """Move an archived order, its debits and refunds back into the state."""
        if not self._seen["orders"].may_hold(order_id):
            return None
        row = self._db.execute("SELECT unit FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        if row is None:
            return None
        order, refunds = _load(row[0])
        debits = order.debits
        with self._db:
            self._db.execute("DELETE FROM orders WHERE order_id = ?", (order_id,))
            self._db.executemany(
                "DELETE FROM payments WHERE payment_id = ?", [(d.payment_id,) for d in debits]
            )
            self._db.executemany(
                "DELETE FROM refunds WHERE refund_id = ?", [(r.refund_id,) for r in refunds]
            )
        self.archived_orders -= 1
        state = self.state
        dict.__setitem__(state.orders, order.order_id, order)
        for debit in debits:
            dict.__setitem__(state.payments, debit.payment_id, debit)
        for refund in refunds:
            dict.__setitem__(state.refunds, refund.refund_id, refund)
        return order

    def orders(self) -> Iterator[Order]:
        """Read-only copies of the archived orders (with their debits), by order id.

        Read a page at a time: all at once would bring the whole archive into memory.
        """
        after = ""
        while page := self._db.execute(
            "SELECT order_id, unit FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?",
            (after, _PAGE),
        ).fetchall():
            after = page[-1][0]
            for _, unit in page:
                yield _load(unit)[0]

    # -- spilling -----------------------------------------------------------------------

    def spill(self) -> int:
        """Past the bound, archive settled orders, oldest first, down to 90% of the bound.

        Returns how many orders moved. Call it between facts only. A tenth of the bound
        at a time: each spill is a short pause for the caller, not one long one.
        """
        state = self.state
        if len(state.serials) > self.bound:
            self._spill_serials(state)
        resident = dict.__len__(state.orders)
        if resident <= self._next_spill:
            return 0
        step = self.bound // _SPILL_SHARE
        busy = self._busy(state)
        detached = _detached_refunds(state)
        wanted = resident - (self.bound - step)
        units: list[tuple[Order, tuple[Refund, ...]]] = []
        for order in dict.values(state.orders):
            refunds = self._settled_refunds(order, busy, detached)
            if refunds is not None:
                units.append((order, refunds))
                if len(units) >= wanted:
                    break
        self._store(units)
        # Orders that are not settled stay; do not scan them again before another step.
        self._next_spill = max(self.bound, dict.__len__(state.orders) + step)
        return len(units)

    @staticmethod
    def _busy(state: State) -> set[str]:
        """Ids something still waits on: timers, orphan debits, the open incident."""
        busy = {key for _, _, _, key, _ in state.timers}
        busy.update(state.orphans)
        if state.incident is not None:
            busy.update(state.incident.orders)
        return busy

    @staticmethod
    def _settled_refunds(
        order: Order, busy: set[str], detached: dict[str, list[Refund]]
    ) -> tuple[Refund, ...] | None:
        """The order's refunds if the order is settled, else None."""
        if order.open_attempt is not None or order.escalations or order.order_id in busy:
            return None
        refunds: list[Refund] = []
        for debit in order.debits:
            if debit.orphan or debit.payment_id in busy:
                return None
            if debit.refund is not None:
                refunds.append(debit.refund)
            refunds.extend(detached.get(debit.payment_id, ()))
        for refund in refunds:
            if refund.status not in _SETTLED_REFUND or refund.escalation is not None:
                return None
            if refund.refund_id in busy:
                return None
        return tuple(refunds)

    def _store(self, units: list[tuple[Order, tuple[Refund, ...]]]) -> None:
        """Write settled units to the database and drop them from memory."""
        if not units:
            return
        self._wire()
        state = self.state
        rows = [(order.order_id, _dump(order, refunds)) for order, refunds in units]
        payments = [(d.payment_id, order.order_id) for order, _ in units for d in order.debits]
        refunds = [(r.refund_id, order.order_id) for order, rs in units for r in rs]
        with self._db:
            self._db.executemany("INSERT INTO orders VALUES (?, ?)", rows)
            self._db.executemany("INSERT INTO payments VALUES (?, ?)", payments)
            self._db.executemany("INSERT INTO refunds VALUES (?, ?)", refunds)
        for table, keys in (("orders", rows), ("payments", payments), ("refunds", refunds)):
            self._remember(table, [key for key, _ in keys])
        for order, _ in units:
            dict.__delitem__(state.orders, order.order_id)
        for payment_id, _ in payments:
            dict.__delitem__(state.payments, payment_id)
        for refund_id, _ in refunds:
            dict.__delitem__(state.refunds, refund_id)
        self.archived_orders += len(units)

    def _spill_serials(self, state: State) -> None:
        """Move every resident serial to the database (a serial is never forgotten)."""
        self._wire()
        serials = list(set.__iter__(state.serials))
        with self._db:
            self._db.executemany("INSERT INTO serials VALUES (?)", [(s,) for s in serials])
        self._remember("serials", serials)
        set.clear(state.serials)

    def _remember(self, table: str, keys: list[str]) -> None:
        """Add keys to a table's Bloom filter, rebuilt twice as big when it fills up."""
        seen = self._seen[table]
        if seen.count + len(keys) > seen.capacity:
            seen = self._seen[table] = _Seen(2 * (seen.capacity + len(keys)))
            query = f"SELECT {_KEY[table]} FROM {table}"  # noqa: S608 - our own names
            for (key,) in self._db.execute(query):
                seen.add(key)
            return
        for key in keys:
            seen.add(key)


# The packed fields, in this order; test_state_archive pins them against the dataclasses,
# so that a field added there cannot be silently dropped here.
ORDER_FIELDS = (
    "order_id",
    "placed",
    "quantity",
    "total",
    "expires_at",
    "cancelled",
    "payment",
    "paid_at",
    "delivered",
    "first_delivery_at",
    "attempts",
    "open_attempt",
    "undelivered_refunded",
    "cases",
    "escalations",
    "held_debits",
)
DEBIT_FIELDS = ("payment_id", "order_id", "amount", "recorded_at", "refund", "orphan")
REFUND_FIELDS = (
    "refund_id",
    "payment_id",
    "order_id",
    "amount",
    "reason",
    "attempt",
    "status",
    "refunded",
    "escalation",
)
ATTEMPT_FIELDS = ("number", "command_id", "quantity", "open")


def _detached_refunds(state: State) -> dict[str, list[Refund]]:
    """Resident refunds their debit no longer points at (withdrawn ones), by payment id."""
    detached: dict[str, list[Refund]] = {}
    payments = state.payments
    for refund in dict.values(state.refunds):
        debit = dict.get(payments, refund.payment_id)
        if debit is not None and debit.refund is not refund:
            detached.setdefault(refund.payment_id, []).append(refund)
    return detached


def _dump(order: Order, refunds: tuple[Refund, ...]) -> bytes:
    """One unit as bytes: the order, its debits and every refund of them, as plain tuples.

    Plain tuples, not the objects: they pickle to a third of the size and several times
    faster. Objects that point at each other are written as indexes into the unit.
    """
    debits = order.debits
    every_refund = list(refunds)
    for debit in debits:
        if debit.refund is not None and not any(debit.refund is r for r in every_refund):
            every_refund.append(debit.refund)
    refund_rows = tuple(
        (
            r.refund_id,
            r.payment_id,
            r.order_id,
            r.amount,
            r.reason.value,
            r.attempt,
            r.status.value,
            r.refunded,
            r.escalation,
        )
        for r in every_refund
    )
    debit_rows = tuple(
        (
            d.payment_id,
            d.order_id,
            d.amount,
            d.recorded_at,
            _index(every_refund, d.refund),
            d.orphan,
        )
        for d in debits
    )
    attempt = order.open_attempt
    order_row = (
        order.order_id,
        order.placed,
        order.quantity,
        order.total,
        order.expires_at,
        order.cancelled,
        _index(debits, order.payment),
        order.paid_at,
        order.delivered,
        order.first_delivery_at,
        order.attempts,
        None
        if attempt is None
        else (attempt.number, attempt.command_id, attempt.quantity, attempt.open),
        order.undelivered_refunded,
        tuple(case.value for case in order.cases),
        tuple(order.escalations),
    )
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {timezone: _reduce_zone}
    pickler.dump((order_row, debit_rows, refund_rows))
    return buffer.getvalue()


def _index(items: Sequence[object], item: object | None) -> int:
    """Where `item` is in `items`, by identity; -1 for None."""
    if item is not None:
        for index, candidate in enumerate(items):
            if candidate is item:
                return index
    return -1


def _load(unit: bytes) -> tuple[Order, tuple[Refund, ...]]:
    """The unit `_dump` wrote (our own bytes, from our own temporary database)."""
    order_row, debit_rows, refund_rows = pickle.loads(unit)  # noqa: S301
    refunds = tuple(
        Refund(rid, pid, oid, amount, Case(reason), attempt, RefundStatus(status), done, esc)
        for rid, pid, oid, amount, reason, attempt, status, done, esc in refund_rows
    )
    order_id, placed, quantity, total, expires_at, cancelled, payment, paid_at, *rest = order_row
    delivered, first_delivery_at, attempts, attempt, undelivered, cases, escalations = rest
    debits = tuple(
        # The order's own id string, shared, as the decider keeps it.
        Debit(pid, order_id if oid == order_id else oid, amount, at, _at(refunds, ri), orphan)
        for pid, oid, amount, at, ri, orphan in debit_rows
    )
    order = Order(
        order_id,
        placed=placed,
        quantity=quantity,
        total=total,
        expires_at=expires_at,
        cancelled=cancelled,
        payment=_at(debits, payment),
        paid_at=paid_at,
        delivered=delivered,
        first_delivery_at=first_delivery_at,
        attempts=attempts,
        open_attempt=None if attempt is None else Attempt(*attempt),
        undelivered_refunded=undelivered,
        cases=[Case(case) for case in cases] if cases else (),
        escalations=list(escalations) if escalations else (),
        held_debits=debits[0] if len(debits) == 1 else (debits or None),
    )
    return order, refunds


def _at(items: tuple[T, ...], index: int) -> T | None:
    """`items[index]`, None for -1."""
    return None if index < 0 else items[index]
