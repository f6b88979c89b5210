"""Read models brought up to date as they are read: a catch-up at most once a second.

The finance routes call `refresh()` before they query. It runs the projector's
catch-up (`reconciler.projections.Projector`) when the last one is older than
`interval` seconds, for at most `batch` records, so a request never waits on a long
backlog: what is left is caught up by the next requests, and the summary's `position`
beside `log_position` shows the lag meanwhile. One catch-up runs at a time per app; a
request that finds one running does not wait for it and reads what the tables hold.

Done on requests rather than by a background thread, the API owns no thread and no
lifespan, and an idle API reads nothing. The projector keeps its model in memory, so
only the first catch-up of a process replays the log up to the stored position.

A catch-up that fails is logged and the request is served from the tables as they are.
If another projector (`reconciler project`) moved the tables, the next catch-up starts
again from there; any other failure (the rules differ from the engine's, the store is
down) is tried again only after `retry_after` seconds, since it rebuilds the model.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import structlog
from eventsourcing.persistence import PersistenceError

from reconciler.projections import ProjectionError, Projector, StaleProjectionError

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.domain.rules import Rules
    from reconciler.store import LogStore

log = structlog.get_logger("reconciler.api")

INTERVAL_S = 1.0
BATCH = 20_000
RETRY_AFTER_S = 60.0


class ReadModelRefresher:
    """Catches the read models up with the log, at most once every `interval` seconds."""

    def __init__(  # noqa: PLR0913 - each a tuning knob with a default
        self,
        store: LogStore,
        rules: Rules,
        *,
        projector: Projector | None = None,
        interval: float = INTERVAL_S,
        batch: int = BATCH,
        retry_after: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Project `store` under `rules` (with `projector`, if one is warm already)."""
        self._projector = projector or Projector(store, rules)
        self._interval = interval
        self._batch = batch
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")

    def refresh(self) -> int:
        """Catch up if due and no one else is; return how many records were projected."""
        if self._clock() < self._next or not self._lock.acquire(blocking=False):
            return 0
        try:
            if self._clock() < self._next:
                return 0
            return self._catch_up()
        finally:
            self._lock.release()

    def _catch_up(self) -> int:
        wait = self._interval
        done = 0
        try:
            done = self._projector.catch_up(limit=self._batch)
            if done >= self._batch:
                wait = 0.0  # more is waiting: the next request carries on at once
        except StaleProjectionError as error:
            log.info("read_models_moved_elsewhere", stored=error.stored)
        except (ProjectionError, PersistenceError) as error:
            log.warning("read_models_catch_up_failed", error=str(error))
            wait = self._retry_after
        self._next = self._clock() + wait
        return done
