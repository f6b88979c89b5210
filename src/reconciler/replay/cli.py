"""`reconciler replay`: rebuild the log as of a moment, re-derive its decisions, compare.

The log is only read. By default the replay writes the facts and its own decisions
into a shadow (schema `S_replay` beside a PostgreSQL log, `x.replay.sqlite` beside a
SQLite file) and projects the finance read models there, so they can be queried as of
that moment; `--in-memory` only decides and compares. Exit status 0 when every
recorded decision follows from the facts, 1 when some differ (or a fact no longer
validates), 2 when the log, the rules or the shadow cannot be used.

With `--config OTHER` (rules other than the engine's, `--recorded-config`), the run is a
what-if: the recorded rules are still checked against the log, and beside them the other
rules decide the same facts; the shadow holds the what-if run, and the report lists the
orders that would have ended otherwise and the money that would have moved.

Wired into the main command line as `app.command("replay")(replay)`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from reconciler.cli_params import RecordedRules, Schema, StoreUrl, aware_time
from reconciler.config import ConfigError, load_rules
from reconciler.progress import bounded_progress
from reconciler.projections.errors import ProjectionError
from reconciler.projections.projector import Projector
from reconciler.replay.cutoff import AsOf
from reconciler.replay.deciders import InMemory, IntoShadow
from reconciler.replay.output import print_document, replay_document
from reconciler.replay.rederive import CorruptLogError, replay_log
from reconciler.replay.shadow import (
    ShadowError,
    Target,
    copy_dead_letters,
    default_shadow,
    open_shadow,
)
from reconciler.replay.whatif import compare_endings
from reconciler.store import open_store

if TYPE_CHECKING:
    from reconciler.domain.rules import Rules
    from reconciler.replay.deciders import Rederiver
    from reconciler.replay.rederive import ReplayResult
    from reconciler.store import LogStore

EXIT_DIFFERENT = 1
EXIT_UNUSABLE = 2


class Format(StrEnum):
    """How `replay` prints."""

    TABLE = "table"
    JSON = "json"


OtherRules = Annotated[
    Path | None,
    typer.Option("--config", help="rules to replay under; other than the recorded ones, a what-if"),
]
ClockCut = Annotated[
    str | None,
    typer.Option("--as-of", help="stop where the engine clock passed this ISO 8601 time"),
]
PositionCut = Annotated[int | None, typer.Option(min=1, help="stop after this log position")]
Into = Annotated[str | None, typer.Option(help="shadow store URL (default: beside the log)")]
IntoSchema = Annotated[
    str | None, typer.Option(help="shadow schema (default: the log's schema + _replay)")
]
InMemoryOnly = Annotated[
    bool, typer.Option("--in-memory", help="write no shadow: only decide and compare")
]
Replace = Annotated[bool, typer.Option("--replace", help="drop a shadow that holds records first")]
Output = Annotated[Format, typer.Option("--format")]
Show = Annotated[int, typer.Option(min=0, help="rows of each list in the tables")]


def replay(  # noqa: PLR0913, PLR0917 - one parameter per command-line option
    store: StoreUrl,
    schema: Schema = "reconciler",
    config: OtherRules = None,
    recorded_config: RecordedRules = None,
    as_of: ClockCut = None,
    position: PositionCut = None,
    into: Into = None,
    into_schema: IntoSchema = None,
    in_memory: InMemoryOnly = False,  # noqa: FBT002 - a command-line flag
    replace: Replace = False,  # noqa: FBT002 - a command-line flag
    output: Output = Format.TABLE,
    show: Show = 20,
) -> None:
    """Rebuild the log as of a moment, re-derive every decision, and list any that differ."""
    err = Console(stderr=True)
    try:
        recorded = load_rules(recorded_config)
        rules = recorded if config is None else load_rules(config)
        moment = AsOf(position, None if as_of is None else aware_time(as_of, "--as-of"))
        log = open_store(store, schema=schema, create=False)  # a reader takes no lock
    except (ConfigError, ValueError, PersistenceError) as error:
        raise _fail(err, str(error), EXIT_UNUSABLE) from None
    log_target = Target(store, schema)
    shadow_target = None if in_memory else _shadow_target(log_target, into, into_schema)
    try:
        shadow = None
        if shadow_target is not None:
            shadow = open_shadow(shadow_target, log_target, replace=replace)
        result = run_replay(log, shadow, rules, recorded, moment, err)
    except (ShadowError, PersistenceError, ProjectionError) as error:
        raise _fail(err, str(error), EXIT_UNUSABLE) from None
    except CorruptLogError as error:
        raise _fail(err, f"{error}; run reconciler verify", EXIT_DIFFERENT) from None
    finally:
        log.close()
        if shadow is not None:
            shadow.close()
    what_if = None
    if rules != recorded:
        what_if = (compare_endings(result.states, result.alongside_states), recorded)
    document = replay_document(
        result,
        log=log_target.describe(),
        shadow=None if shadow_target is None else shadow_target.describe(),
        rules=rules,
        what_if=what_if,
    )
    if output is Format.JSON:
        typer.echo(json.dumps(document, indent=1, ensure_ascii=False))
    else:
        console = Console(highlight=False)
        if not console.is_terminal:  # a file or a pipe: no column cut short
            console.width = max(console.width, 200)
        print_document(document, console, show)
    if not result.honest:
        raise typer.Exit(EXIT_DIFFERENT)


def _shadow_target(log: Target, into: str | None, into_schema: str | None) -> Target:
    default = default_shadow(log)
    return Target(into or default.url, into_schema or default.schema)


def run_replay(  # noqa: PLR0913, PLR0917 - the replay's parts, wired here once
    log: LogStore,
    shadow: LogStore | None,
    rules: Rules,
    recorded: Rules,
    moment: AsOf,
    err: Console,
) -> ReplayResult:
    """Replay under the recorded rules (and the other ones beside them), then project."""
    what_if = rules != recorded
    written: Rederiver | None = None if shadow is None else IntoShadow(rules, shadow)
    if what_if:
        compared: Rederiver = InMemory(recorded)
        alongside = written or InMemory(rules)
    else:
        compared, alongside = written or InMemory(rules), None
    total = moment.position or log.last_position()
    with bounded_progress(err, "replaying", total) as advance:
        result = replay_log(log, compared, as_of=moment, alongside=alongside, progress=advance)
    if shadow is not None:
        copy_dead_letters(log, shadow)
        with bounded_progress(err, "projecting read models", shadow.last_position()) as advance:
            Projector(shadow, rules).rebuild(advance)
    return result


def _fail(err: Console, message: str, status: int) -> typer.Exit:
    err.print(f"reconciler replay: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(status)
