"""`reconciler project`: bring the finance read models up to date with the log, or rebuild them.

It projects every record after the read models' stored position, a page per
transaction, with a progress bar on a terminal, then prints where the read models
stand. `--rebuild` drops them and projects the whole log again. Give it the rules the
engine ran with (`--config`): the projection replays the facts under them, and refuses
a log whose decisions do not follow (exit 1).

Wired into the main command line as `app.command("project")(project)`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from reconciler.cli_params import EngineRules as Config  # noqa: TC001 - typer reads them
from reconciler.cli_params import StoreUrl  # noqa: TC001 - typer reads them
from reconciler.config import ConfigError, load_rules
from reconciler.progress import bounded_progress
from reconciler.projections.database import TRACKING
from reconciler.projections.errors import ProjectionError
from reconciler.projections.projector import Projector
from reconciler.store import open_store

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

Schema = Annotated[str, typer.Option(help="PostgreSQL schema of the log (and its read models)")]
Rebuild = Annotated[
    bool, typer.Option("--rebuild", help="drop the read models and project the whole log again")
]


def project(
    store: StoreUrl,
    schema: Schema = "reconciler",
    config: Config = None,
    rebuild: Rebuild = False,  # noqa: FBT002 - a command-line flag
) -> None:
    """Bring the finance read models up to date with the log (or rebuild them from it)."""
    err = Console(stderr=True)
    try:
        rules = load_rules(config)
        log = open_store(store, schema=schema)
    except (ConfigError, ValueError, PersistenceError) as error:
        err.print(f"reconciler: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        start = 0 if rebuild else log.positions().get(TRACKING, 0)
        pending = max(0, log.last_position() - start)
        projector = Projector(log, rules)
        with bounded_progress(err, "rebuilding" if rebuild else "projecting", pending) as advance:
            done = projector.rebuild(advance) if rebuild else projector.catch_up(progress=advance)
    except (ProjectionError, PersistenceError) as error:
        err.print(f"reconciler: {error}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        log.close()
    typer.echo(f"read models at log position {projector.position}: {done} records projected")
