"""`reconciler audit`: the auditors' report for a period, from the log alone.

It checks the log's hash chain, replays the whole log into a shadow of its own (a
SQLite file in the output folder, kept as evidence) under the rules the engine ran
with, projects the finance read models there, and writes `report.html` with its CSV
files for the period. Exit status 0 when the report passes (chain intact, every
recorded decision re-derived and no other, every day balanced), 1 when it fails, 2 when
the log, the rules or the dates cannot be used.

Wired into the main command line as `app.command("audit")(audit)`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from reconciler.audit import Period, Verification, build_audit, write_audit
from reconciler.cli_params import RecordedRules, Schema, StoreUrl  # noqa: TC001 - typer reads them
from reconciler.config import ConfigError, load_rules
from reconciler.projections.errors import ProjectionError
from reconciler.replay.cli import run_replay
from reconciler.replay.cutoff import AsOf
from reconciler.replay.rederive import CorruptLogError
from reconciler.replay.shadow import Target, open_shadow
from reconciler.store import open_store

EXIT_FAILED = 1
EXIT_UNUSABLE = 2

From = Annotated[str, typer.Option("--from", help="first day of the period (YYYY-MM-DD)")]
To = Annotated[str, typer.Option("--to", help="last day of the period, included")]
Zone = Annotated[str, typer.Option(help="the zone the days are in")]
Out = Annotated[Path, typer.Option(help="folder for report.html, the CSVs and the shadow")]


def audit(  # noqa: PLR0913, PLR0917 - one parameter per command-line option
    store: StoreUrl,
    start: From,
    end: To,
    schema: Schema = "reconciler",
    zone: Zone = "Asia/Jakarta",
    out: Out = Path("out/audit"),
    recorded_config: RecordedRules = None,
) -> None:
    """Write the audit report for a period: chain, replay, conservation by day, refunds."""
    err = Console(stderr=True)
    try:
        rules = load_rules(recorded_config)
        period = Period(_day(start, "--from"), _day(end, "--to"), _zone(zone))
        log = open_store(store, schema=schema, create=False)
    except (ConfigError, ValueError, PersistenceError) as error:
        raise _fail(err, str(error), EXIT_UNUSABLE) from None
    log_target = Target(store, schema)
    out.mkdir(parents=True, exist_ok=True)
    shadow_target = Target(f"sqlite:///{(out / 'shadow.sqlite').resolve()}", schema)
    shadow = None
    try:
        if err.is_terminal:
            err.print("checking the hash chain…")
        chain = log.verify()
        shadow = open_shadow(shadow_target, log_target, replace=True)
        result = run_replay(log, shadow, rules, rules, AsOf(), err)
        verification = Verification(
            chain=chain,
            log=log_target.describe(),
            records_replayed=result.records_read,
            as_of=result.as_of.describe(),
            decisions_recorded=result.decisions_recorded,
            decisions_rederived=result.decisions_rederived,
            differences=result.differences,
            rules=rules.model_dump(mode="json"),
            generated_at=datetime.now(UTC),
        )
        report = build_audit(shadow, period, verification)
        paths = write_audit(report, out)
    except (PersistenceError, ProjectionError, CorruptLogError, ValueError) as error:
        raise _fail(err, str(error), EXIT_UNUSABLE) from None
    finally:
        log.close()
        if shadow is not None:
            shadow.close()
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"{report.verdict}: audit of {log_target.describe()}, {period.label()}")
    for failure in report.failures():
        console.print(f"  - {failure}")
    for note in report.notes():
        console.print(f"  note: {note}")
    for path in paths:
        console.print(f"wrote {path}")
    if not report.passed:
        raise typer.Exit(EXIT_FAILED)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        msg = f"not a day (YYYY-MM-DD): {text!r}"
        raise typer.BadParameter(msg, param_hint=option) from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"no such time zone: {name!r}"
        raise typer.BadParameter(msg, param_hint="--zone") from None


def _fail(err: Console, message: str, status: int) -> typer.Exit:
    err.print(f"reconciler audit: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(status)
