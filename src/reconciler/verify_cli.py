"""`reconciler verify`: check the log's hash chain end to end, and name the first bad record.

The chain links every record to the one before it, so an altered, removed or inserted
record breaks it at a position the store's verifier names. The command prints that
position, what is wrong there, and which record sits there now; exit status 0 for an
intact chain, 1 for a broken one, 2 when the store cannot be opened. The head hash it
prints is what an auditor keeps elsewhere: a chain cannot tell on its own that records
were cut off its end.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from reconciler.store import open_store

if TYPE_CHECKING:
    from reconciler.store import LogStore, VerifyReport

EXIT_BROKEN = 1
EXIT_UNUSABLE = 2


class Format(StrEnum):
    """How `verify` prints."""

    TEXT = "text"
    JSON = "json"


def verify(
    store: Annotated[
        str,
        typer.Option(
            envvar="RECONCILER_STORE_URL",
            help="the log: sqlite:///out/demo/log.sqlite or a postgresql:// URL",
        ),
    ],
    schema: Annotated[str, typer.Option(help="PostgreSQL schema of the log")] = "reconciler",
    output: Annotated[Format, typer.Option("--format")] = Format.TEXT,
) -> None:
    """Check the log's hash chain end to end; name the first altered, removed or inserted record."""
    err = Console(stderr=True)
    try:
        log = open_store(store, schema=schema)
    except (ValueError, PersistenceError) as error:
        err.print(f"reconciler verify: {error}", markup=False, highlight=False)
        raise typer.Exit(EXIT_UNUSABLE) from None
    try:
        report = log.verify()
        found = _found_at(log, report)
    finally:
        log.close()
    outcome = _outcome(report, found)
    if output is Format.JSON:
        typer.echo(json.dumps(outcome, indent=1))
    else:
        _print(outcome)
    if not report.ok:
        raise typer.Exit(EXIT_BROKEN)


def _found_at(log: LogStore, report: VerifyReport) -> dict[str, Any] | None:
    """The record now stored at the first bad position, if one is."""
    if report.first_bad_position is None:
        return None
    after = report.first_bad_position - 1
    record = next(iter(log.read(after=after, limit=1)), None)
    if record is None or record.position != report.first_bad_position:
        return None
    return {
        "kind": record.kind,
        "record_id": record.record_id,
        "type": record.type,
        "source": record.source,
    }


def _outcome(report: VerifyReport, found: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "records_checked": report.records_checked,
        "head_hash": report.head_hash.hex(),
        "first_bad_position": report.first_bad_position,
        "fault": report.fault.value if report.fault is not None else None,
        "detail": report.detail,
        "record": found,
    }


def _print(outcome: dict[str, Any]) -> None:
    console = Console(soft_wrap=True, highlight=False)
    if outcome["ok"]:
        console.print(f"chain intact: {outcome['records_checked']} records checked")
        console.print(f"head hash: {outcome['head_hash']} (keep it to compare later)")
        return
    console.print(
        f"chain BROKEN at position {outcome['first_bad_position']}: {outcome['fault']}"
        f" ({outcome['detail']})"
    )
    if outcome["record"] is not None:
        record = outcome["record"]
        console.print(
            f"record there now: {record['kind']} {record['record_id']} ({record['type']},"
            f" source {record['source']})"
        )
    console.print(f"last good hash: {outcome['head_hash']}")
