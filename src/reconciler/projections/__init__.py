"""The finance read models: projections of the log, kept exactly once, rebuildable from it.

    projector = Projector(store, rules)     # the rules the engine runs with
    projector.catch_up()                    # or projector.rebuild()
    views = ReadModels(store)
    views.summary(); views.orders(status="REFUND_PENDING"); views.open_cases(age_bucket=">24h")

The `Projector` reads the log after its stored position (`projection:finance`), replays
each source's facts through a decider of its own (`shard`), takes the engine's recorded
decisions for escalations and command tallies, and writes the rows a page of records
changed together with the page's position, in one transaction (`writer`, `database`).
The tables live beside the log, in the same SQLite file or PostgreSQL schema; their DDL
is material in the repository's `projections/` folder (`sql`). `ReadModels` (`queries`)
answers with typed rows (`rows`). `reconciler project` (`cli`) runs the projector.
"""

from reconciler.projections.cursors import InvalidQueryError
from reconciler.projections.errors import DivergedError, ProjectionError, StaleProjectionError
from reconciler.projections.projector import Projector, ProjectorHooks
from reconciler.projections.queries import AmbiguousOrderError, ReadModels

__all__ = [
    "AmbiguousOrderError",
    "DivergedError",
    "InvalidQueryError",
    "ProjectionError",
    "Projector",
    "ProjectorHooks",
    "ReadModels",
    "StaleProjectionError",
]
