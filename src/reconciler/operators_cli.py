"""`reconciler operator`: list open cases, resolve one, approve or reject held refunds."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from reconciler.cli_params import EngineRules as Config  # noqa: TC001 - typer reads them
from reconciler.cli_params import Schema, StoreUrl  # noqa: TC001 - typer reads them
from reconciler.config import ConfigError, load_rules
from reconciler.kafka_io import KafkaIoError
from reconciler.kafka_io._kafka import KafkaError
from reconciler.operators import OperatorActionError, open_cases, operator_fact, take_action
from reconciler.store import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from reconciler.operators import Taken

EXIT_REFUSED = 1
EXIT_BAD_INPUT = 2

operator_app = typer.Typer(
    help="Operator actions: they are facts in the log, so a replay sees them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--kafka-bootstrap",
        envvar="RECONCILER_KAFKA_BOOTSTRAP",
        help="Kafka servers, for cases held by a partition of the service",
    ),
]
Operator = Annotated[str, typer.Option("--operator", help="who acts (kept in the log)")]
Note = Annotated[str, typer.Option("--note", help="why (kept in the log)")]


class Outcome(StrEnum):
    """What became of a case's money."""

    REFUNDED_OUTSIDE = "REFUNDED_OUTSIDE"
    RETRY_REFUND = "RETRY_REFUND"
    NO_MONEY_AT_STAKE = "NO_MONEY_AT_STAKE"


class Format(StrEnum):
    """How `cases` prints."""

    TABLE = "table"
    JSON = "json"


@operator_app.command()
def cases(
    store: StoreUrl,
    schema: Schema = "reconciler",
    output: Annotated[Format, typer.Option("--format")] = Format.TABLE,
) -> None:
    """List the escalations no one has closed yet, oldest first."""
    log = open_store(store, schema=schema)
    try:
        found = open_cases(log)
    finally:
        log.close()
    if output is Format.JSON:
        rows = [
            {
                "escalation_id": c.escalation_id,
                "reason": c.reason,
                "order_id": c.order_id,
                "amount": c.amount,
                "at": c.at.isoformat(),
                "source": c.source,
            }
            for c in found
        ]
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(title=f"{len(found)} open escalations")
    for column in ("escalation", "reason", "order", "Rp at stake", "since", "shard"):
        table.add_column(column, justify="right" if column == "Rp at stake" else "left")
    for c in found:
        since = c.at.isoformat(timespec="seconds")
        table.add_row(
            c.escalation_id, c.reason, c.order_id or "-", f"{c.amount:,}", since, c.source
        )
    Console().print(table)


@operator_app.command()
def resolve(  # noqa: PLR0913 - one parameter per command-line option
    escalation_id: Annotated[str, typer.Argument(help="the Escalate command's command_id")],
    *,
    outcome: Annotated[Outcome, typer.Option("--outcome", help="what became of the money")],
    operator: Operator,
    note: Note,
    store: StoreUrl,
    reference: Annotated[
        str | None, typer.Option(help="the transfer's reference (REFUNDED_OUTSIDE)")
    ] = None,
    schema: Schema = "reconciler",
    config: Config = None,
    kafka_bootstrap: Bootstrap = None,
) -> None:
    """Close an escalated case, saying what became of its money."""
    fields = {
        "escalation_id": escalation_id,
        "outcome": outcome.value,
        "operator": operator,
        "note": note,
        "reference": reference,
    }
    _act("resolve", fields, store=store, schema=schema, config=config, bootstrap=kafka_bootstrap)


@operator_app.command()
def approve(  # noqa: PLR0913 - one parameter per command-line option
    incident_id: Annotated[str, typer.Argument(help="the REFUND_FLOOD escalation's id")],
    *,
    operator: Operator,
    note: Note,
    store: StoreUrl,
    schema: Schema = "reconciler",
    config: Config = None,
    kafka_bootstrap: Bootstrap = None,
) -> None:
    """Approve the refunds held under a refund-flood incident: they are commanded."""
    fields = {"incident_id": incident_id, "operator": operator, "note": note}
    _act("approve", fields, store=store, schema=schema, config=config, bootstrap=kafka_bootstrap)


@operator_app.command()
def reject(  # noqa: PLR0913 - one parameter per command-line option
    incident_id: Annotated[str, typer.Argument(help="the REFUND_FLOOD escalation's id")],
    *,
    operator: Operator,
    note: Note,
    store: StoreUrl,
    schema: Schema = "reconciler",
    config: Config = None,
    kafka_bootstrap: Bootstrap = None,
) -> None:
    """Reject the held refunds: none is paid, each becomes a case to settle by hand."""
    fields = {"incident_id": incident_id, "operator": operator, "note": note}
    _act("reject", fields, store=store, schema=schema, config=config, bootstrap=kafka_bootstrap)


def _act(  # noqa: PLR0913 - the action and where it goes
    kind: str,
    fields: dict[str, Any],
    *,
    store: str,
    schema: str,
    config: Path | None,
    bootstrap: str | None,
) -> None:
    err = Console(stderr=True)
    try:
        rules = load_rules(config)
        fact = operator_fact(kind, **fields)
    except (ConfigError, ValidationError) as error:
        err.print(f"[red]error:[/] {_first_error(error)}", soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    log = open_store(store, schema=schema)
    try:
        taken = take_action(log, rules, fact, bootstrap)
    except (OperatorActionError, KafkaIoError, KafkaError) as error:
        err.print(f"[red]refused:[/] {error}", soft_wrap=True)
        raise typer.Exit(EXIT_REFUSED) from None
    finally:
        log.close()
    _print_taken(taken)


def _first_error(error: Exception) -> str:
    if isinstance(error, ValidationError):
        detail = error.errors(include_url=False)[0]
        message = str(detail["msg"]).removeprefix("Value error, ")
        where = ".".join(str(part) for part in detail["loc"])
        return f"{where}: {message}" if where else message
    return str(error)


def _print_taken(taken: Taken) -> None:
    console = Console(soft_wrap=True)
    if taken.delivered_to_kafka:
        console.print(f"{taken.fact.type} {taken.fact.event_id} sent to {taken.source}.")
        console.print("The service will decide it; expected decisions:")
    else:
        console.print(f"{taken.fact.type} {taken.fact.event_id} appended to {taken.source}.")
    table = Table("decision", "id", "detail")
    for decision in taken.decisions:
        command = decision.command()
        detail = json.dumps(command) if command else decision.model_dump_json(exclude={"at"})
        table.add_row(decision.type, decision.decision_id, detail)
    console.print(table)
