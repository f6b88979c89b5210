"""The `reconciler` command line: reconcile a file, run the demo day, export the contract."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import structlog
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from reconciler.api import BackgroundServer, create_api
from reconciler.api.cli import api
from reconciler.api.dashboard_cli import dashboard
from reconciler.api.settings import load_api_settings
from reconciler.audit_cli import audit
from reconciler.bootstrap import build_service
from reconciler.cli_params import aware_time
from reconciler.config import ConfigError, load_rules
from reconciler.demo.config import DemoConfig
from reconciler.demo.providers import ProviderStartError
from reconciler.demo.session import run_demo
from reconciler.demo.summary import print_summary
from reconciler.ingest.jsonl import UnreadableInputError
from reconciler.jobs.cli import jobs_app
from reconciler.logging import configure_logging
from reconciler.operators_cli import operator_app
from reconciler.progress import counting_progress
from reconciler.projections.cli import project
from reconciler.providers.cli import simulate_app
from reconciler.reconcile import reconcile_file
from reconciler.replay.cli import replay
from reconciler.report import build_report, print_report
from reconciler.runtime import tune_for_throughput
from reconciler.schemas import export_schemas
from reconciler.service.settings import load_settings, settings_help
from reconciler.store import open_store
from reconciler.verify_cli import verify

if TYPE_CHECKING:
    from reconciler.domain.rules import Rules

app = typer.Typer(
    help="Event-sourced reconciliation of e-meterai payments: every rupiah ends "
    "delivered or returned.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
events_app = typer.Typer(help="The event contract for producers.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(simulate_app, name="simulate")
app.add_typer(jobs_app, name="jobs")
app.add_typer(operator_app, name="operator")
app.command()(project)
app.command("api")(api)
app.command("dashboard")(dashboard)
app.command("verify")(verify)
app.command("replay")(replay)
app.command("audit")(audit)

EXIT_UNREADABLE = 2


class OutputFormat(StrEnum):
    """How `reconcile` prints its report."""

    JSON = "json"
    TABLE = "table"


def _fail(err: Console, message: str) -> typer.Exit:
    """Print `reconciler: message` on stderr; the caller raises the returned exit (status 2)."""
    err.print(f"reconciler: {message}", markup=False, highlight=False)
    return typer.Exit(EXIT_UNREADABLE)


def _rules_or_exit(config: Path | None, err: Console) -> Rules:
    """The rule settings, or exit 2 with a message naming the file or variable at fault."""
    try:
        return load_rules(config)
    except ConfigError as error:
        raise _fail(err, str(error)) from None


def _parse_until(text: str | None) -> datetime | None:
    return None if text is None else aware_time(text, "--until")


@app.command()
def reconcile(
    events: Annotated[Path, typer.Argument(help="JSONL file of events, in log order.")],
    until: Annotated[
        str | None, typer.Option(help="Append a final clock tick at this ISO 8601 time.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Rule settings (TOML or JSON; SPEC names, seconds).")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="json for machines, table for people.")
    ] = OutputFormat.JSON,
    store: Annotated[
        str, typer.Option(help="Log store URL; keep the log with sqlite:///PATH.")
    ] = "sqlite://:memory:",
) -> None:
    """Reconcile a file of events and print what the engine decided."""
    until_at = _parse_until(until)
    err = Console(stderr=True)
    rules = _rules_or_exit(config, err)
    log = open_store(store)
    if (held := log.last_position()) > 0:
        log.close()
        message = (
            f"the store {store} already holds {held} records; "
            "reconcile starts from an empty log (give a new file or schema)"
        )
        raise _fail(err, message)
    try:
        with counting_progress(err, f"reconciling {events.name}") as advance:
            run = reconcile_file(events, rules, log, until=until_at, progress=advance)
    except UnreadableInputError as error:
        raise _fail(err, str(error)) from None
    finally:
        log.close()
    report = build_report(run.state, run.decisions, run.rejections)
    if output_format is OutputFormat.JSON:
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    else:
        print_report(report, Console())


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=1, help="How many orders the day has.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Same seed, same day.")] = DemoConfig().seed,
    out: Annotated[Path, typer.Option(help="Folder for the event log, store and report.")] = Path(
        "out/demo"
    ),
    config: Annotated[Path | None, typer.Option(help="Rule settings (TOML or JSON).")] = None,
) -> None:
    """Simulate a registration-peak day with a failing issuer and PSP, and reconcile it."""
    err = Console(stderr=True)
    rules = _rules_or_exit(config, err)
    day = DemoConfig(orders=orders, seed=seed)
    started = time.perf_counter()
    with Progress(
        TextColumn("simulating the day"),
        BarColumn(),
        TextColumn("{task.fields[clock]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("day", total=None, clock="")

        def advance(done: int, expected: int) -> None:
            clock = day.opening + timedelta(seconds=done)
            progress.update(task, completed=done, total=expected, clock=f"{clock:%H:%M}")

        # SIGTERM unwinds like Ctrl-C, so the simulator processes are stopped either way.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            outcome = run_demo(day, rules, out, advance)
        except ProviderStartError as error:
            raise _fail(err, f"a provider simulator did not start: {error}") from None
    print_summary(outcome, Console(), time.perf_counter() - started)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


@app.command(epilog=settings_help())
def serve(
    config: Annotated[
        Path | None, typer.Option(help="Rule settings (TOML or JSON; SPEC names, seconds).")
    ] = None,
    settings_file: Annotated[
        Path | None,
        typer.Option("--settings", help="Service settings (TOML; a [service] table or top level)."),
    ] = None,
) -> None:
    """Run the engine as a service: Kafka in, the PostgreSQL log, commands out.

    Every service setting is below, with its environment variable and default; the
    environment overrides the --settings file. With API tokens configured
    (RECONCILER_API_TOKENS or RECONCILER_API_TOKENS_FILE), the process also serves the
    HTTP API, /metrics and the dashboard on RECONCILER_API_HOST:RECONCILER_API_PORT.
    """
    err = Console(stderr=True)
    rules = _rules_or_exit(config, err)
    try:
        settings = load_settings(settings_file)
    except ConfigError as error:
        raise _fail(err, str(error)) from None
    try:
        api_settings = load_api_settings()
        tokens = api_settings.all_tokens()
    except ConfigError as error:
        raise _fail(err, str(error)) from None
    configure_logging(json=settings.log_json)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with ExitStack() as stack:
        if tokens:  # the API, its /metrics and the dashboard, beside the engine
            store = open_store(settings.store_url, schema=settings.store_schema)
            stack.callback(store.close)
            app = create_api(api_settings, store, rules, kafka_bootstrap=settings.kafka_bootstrap)
            server = BackgroundServer(app, api_settings.host, api_settings.port)
            stack.enter_context(server)
            structlog.get_logger("reconciler.api").info("api_serving", url=server.url)
        build_service(settings, rules).run(stop)


@events_app.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write the JSON Schemas.")] = Path(
        "events"
    ),
) -> None:
    """Write a JSON Schema per event type and version into DIRECTORY."""
    for path in export_schemas(directory):
        typer.echo(str(path))


def main() -> None:
    """Console-script entry point."""
    tune_for_throughput()
    app()
