"""The projector: brings the finance read models up to date with the log, exactly once.

It reads the log after its stored position (`projection:finance`), a page at a time,
applies each page to the in-memory model, and writes the rows the page changed together
with the page's last position, in one transaction. A crash before the commit leaves
rows and position as they were; a page written again writes the same rows.

The model is memory only. On its first page (and after any failure, since the model has
moved on while the views have not) the projector rebuilds it by feeding it the log up
to the stored position, without writing, as `Engine.restore` rebuilds a shard. Every
write checks, under the writers' lock, that the stored position is still the one the
page starts from; if another projector moved it, the page is refused
(StaleProjectionError) and the next call starts again from there.

`rebuild()` drops every view row and the position in one transaction and projects the
whole log again: the read models follow from the log alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.projections.changes import Changes
from reconciler.projections.database import view_database
from reconciler.projections.errors import StaleProjectionError
from reconciler.projections.model import FinanceModel
from reconciler.projections.writer import write_changes

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.domain.rules import Rules
    from reconciler.projections.database import Session
    from reconciler.store import LogStore, StoredRecord

PAGE_SIZE = 2000


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
        model = self._ready()
        done = 0
        while limit is None or done < limit:
            size = self._page_size if limit is None else min(self._page_size, limit - done)
            records = list(self._store.read(after=self._position, limit=size))
            if not records:
                break
            self._project(model, records)
            done += len(records)
            if progress is not None:
                progress(done)
        return done

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Drop the read models and their position, then project the whole log again."""
        self._model = None
        self._views.reset()
        self._model, self._position = FinanceModel(self._rules), 0
        return self.catch_up(progress=progress)

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

    def _project(self, model: FinanceModel, records: list[StoredRecord]) -> None:
        changes = Changes()
        try:
            for record in records:
                model.apply(record, changes)
            with self._views.write() as session:
                self._fence(session)
                write_changes(session, changes)
                last = records[-1].position
                if self._hooks.before_commit is not None:
                    self._hooks.before_commit(last)
                session.track(last)
        except BaseException:
            self._model = None  # it has moved past what the views hold
            raise
        self._position = last

    def _fence(self, session: Session) -> None:
        stored = session.tracked()
        if stored != self._position:
            raise StaleProjectionError(self._position, stored)
