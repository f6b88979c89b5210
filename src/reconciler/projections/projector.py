"""The projector: brings the finance read models up to date with the log, exactly once.

It reads the log after its stored position (`projection:finance`), a page at a time,
applies each page to the in-memory model, and writes the rows the page changed together
with the page's last position, in one transaction. A crash before the commit leaves
rows and position as they were; a page written again writes the same rows. On
PostgreSQL a page is written on a thread of its own while the next one is read and
applied, so the server's work overlaps the model's; pages still commit in order, one
at a time.

The model is memory only. On its first page (and after any failure, since the model has
moved on while the views have not) the projector rebuilds it by feeding it the log up
to the stored position, without writing, as `Engine.restore` rebuilds a shard. Every
write checks, under the writers' lock, that the stored position is still the one the
page starts from; if another projector moved it, the page is refused
(StaleProjectionError) and the next call starts again from there.

`rebuild()` drops every view row and the position in one transaction and projects the
whole log again: the read models follow from the log alone. Its pages are bigger:
each order's row is written once a page, however often the page's records touch it.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.projections.changes import Changes
from reconciler.projections.database import view_database
from reconciler.projections.errors import StaleProjectionError
from reconciler.projections.model import FinanceModel
from reconciler.projections.writer import page_writer, write_changes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from concurrent.futures import Future

    from reconciler.domain.rules import Rules
    from reconciler.store import LogStore, StoredRecord

PAGE_SIZE = 2000
REBUILD_PAGE = 20_000
"""The smallest page of a rebuild: one transaction, one write of each table per page."""


@dataclass(frozen=True, slots=True)
class ProjectorHooks:
    """Test seams into a page's transaction.

    `before_commit` is called with the page's last position after its rows are written
    and before the position is, so a test can fail the transaction right there.
    """

    before_commit: Callable[[int], None] | None = None


class Projector:
    """Keeps the finance read models of one log store, under the engine's rules."""

    def __init__(
        self,
        store: LogStore,
        rules: Rules,
        *,
        page_size: int = PAGE_SIZE,
        hooks: ProjectorHooks | None = None,
    ) -> None:
        """Prepare to project `store`'s log; nothing is read or written yet."""
        if page_size < 1:
            msg = f"page_size must be at least 1, got {page_size}"
            raise ValueError(msg)
        self._store = store
        self._rules = rules
        self._views = view_database(store)
        self._page_size = page_size
        self._hooks = hooks or ProjectorHooks()
        self._model: FinanceModel | None = None
        self._position = 0

    @property
    def position(self) -> int:
        """The log position the read models stand at, as this projector last saw it."""
        return self._position

    def catch_up(
        self, limit: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Project the records after the stored position, at most `limit`; return how many.

        `progress` is called after each page with the records projected so far.
        """
        return self._pages(self._page_size, limit, progress)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Drop the read models and their position, then project the whole log again.

        Its pages are at least `REBUILD_PAGE` records: an order's rows are written once
        a page however often its records touch it, so bigger pages write fewer rows.
        """
        self._model = None
        self._views.reset()
        self._model, self._position = FinanceModel(self._rules), 0
        return self._pages(max(self._page_size, REBUILD_PAGE), None, progress)

    def _pages(self, size: int, limit: int | None, progress: Callable[[int], None] | None) -> int:
        """Project pages of `size` records after the stored position, at most `limit`.

        Where the database allows it, a page is written on a thread of its own while the
        next one is read and applied: the server's work overlaps the model's. Pages
        still commit one after another, each after the one before it.
        """
        model = self._ready()
        done = applied = 0
        after = self._position
        writing: tuple[Future[int], int] | None = None  # the page in flight, its size
        with page_writer(threaded=self._views.overlaps_writes) as writer:
            try:
                while limit is None or applied < limit:
                    page = size if limit is None else min(size, limit - applied)
                    changes, count, last = _apply(model, self._store.read(after=after, limit=page))
                    if writing is not None:
                        done += self._committed(*writing)
                        writing = None
                        if progress is not None:
                            progress(done)
                    if not count:
                        break
                    writing = (writer.submit(self._write, changes, after, last), count)
                    after, applied = last, applied + count
                if writing is not None:
                    done += self._committed(*writing)
                    if progress is not None:
                        progress(done)
            except BaseException:
                self._model = None  # it has moved past what the views hold
                if writing is not None:
                    with suppress(Exception):  # the error that stopped us is the one to raise
                        self._committed(*writing)
                raise
        return done

    def _committed(self, writing: Future[int], count: int) -> int:
        """Wait for a page's transaction; move to its last position; return its size."""
        self._position = writing.result()
        return count

    def _ready(self) -> FinanceModel:
        """The model as of the stored position, rebuilt from the log if there is none."""
        if self._model is not None:
            return self._model
        self._views.create_tables()
        with self._views.read() as session:
            stored = session.tracked()
        model = FinanceModel(self._rules)
        changes = Changes()  # what these records wrote is stored already: dropped
        for count, record in enumerate(self._store.read(limit=stored), 1):
            if record.position > stored:
                break
            model.apply(record, changes)
            if count % self._page_size == 0:
                changes = Changes()
        self._model, self._position = model, stored
        return model

    def _write(self, changes: Changes, after: int, last: int) -> int:
        """Write a page's rows and its last position in one transaction; return the position.

        The page is refused if the stored position is no longer `after`, where it starts.
        """
        with self._views.write() as session:
            stored = session.tracked()
            if stored != after:
                raise StaleProjectionError(after, stored)
            write_changes(session, changes)
            if self._hooks.before_commit is not None:
                self._hooks.before_commit(last)
            session.track(last)
        return last


def _apply(model: FinanceModel, records: Iterable[StoredRecord]) -> tuple[Changes, int, int]:
    """Apply records as they are read: what they change, how many, the last position."""
    changes = Changes()
    count = last = 0
    for record in records:
        model.apply(record, changes)
        last = record.position
        count += 1
    return changes, count, last
