"""`reconciler api`: serve the HTTP API over a log, until SIGINT or SIGTERM.

Wire it into the main command line with `app.command("api")(api)`; `python -m
reconciler.api` runs it alone. Settings come from the defaults, then `RECONCILER_API_*`
variables, then the options. The store is opened once, before serving, and a SQLite file
must exist already: a mistyped path would otherwise serve an empty log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import structlog
import typer
from eventsourcing.persistence import PersistenceError

from reconciler.api.app import create_api
from reconciler.api.server import serve
from reconciler.api.settings import load_api_settings
from reconciler.config import ConfigError, load_rules
from reconciler.logging import configure_logging
from reconciler.store import open_store

EXIT_BAD_SETTINGS = 2
_SQLITE_PREFIX = "sqlite://"

log = structlog.get_logger("reconciler.api")


def api(  # noqa: PLR0913 - one parameter per command-line option
    *,
    store: Annotated[
        str,
        typer.Option(
            envvar="RECONCILER_STORE_URL",
            help="The log: sqlite:///out/demo/log.sqlite (after `make demo`) or a "
            "postgresql:// URL.",
        ),
    ],
    schema: Annotated[str, typer.Option(help="PostgreSQL schema of the log.")] = "reconciler",
    config: Annotated[
        Path | None, typer.Option(help="The rules the engine runs with (TOML or JSON).")
    ] = None,
    kafka_bootstrap: Annotated[
        str | None,
        typer.Option(
            envvar="RECONCILER_KAFKA_BOOTSTRAP",
            help="Kafka servers, for actions on cases held by a partition of the service.",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [RECONCILER_API_HOST: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="TCP port [RECONCILER_API_PORT: 8080]."),
    ] = None,
    tokens_file: Annotated[
        Path | None,
        typer.Option(help="A TOML or JSON file of tokens [RECONCILER_API_TOKENS_FILE]."),
    ] = None,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) with viewer and operator tokens.

    Tokens come from RECONCILER_API_TOKENS (a JSON list of {"name", "role", "token" or
    "sha256"}) and the tokens file; roles are viewer and operator.
    """
    try:
        settings = load_api_settings(host=host, port=port, tokens_file=tokens_file)
        tokens = settings.all_tokens()
        rules = load_rules(config)
    except ConfigError as error:
        raise _bad_settings(str(error)) from None
    if not tokens:
        msg = "no tokens: set RECONCILER_API_TOKENS or RECONCILER_API_TOKENS_FILE"
        raise _bad_settings(msg)
    try:
        log_store = open_store(_existing(store), schema=schema)
    except (ValueError, PersistenceError) as error:
        raise _bad_settings(str(error)) from None
    try:
        app = create_api(settings, log_store, rules, kafka_bootstrap=kafka_bootstrap)
        configure_logging(json=settings.log_json)
        log.info("api_serving", host=settings.host, port=settings.port, tokens=len(tokens))
        serve(app, settings.host, settings.port)
        log.info("api_stopped")
    except ConfigError as error:
        raise _bad_settings(str(error)) from None
    finally:
        log_store.close()


def _bad_settings(message: str) -> typer.Exit:
    """Print `reconciler api: message` on stderr; the caller raises the exit (status 2)."""
    typer.echo(f"reconciler api: {message}", err=True)
    return typer.Exit(EXIT_BAD_SETTINGS)


def _existing(store: str) -> str:
    """The store URL, if a SQLite one names a file that exists; ValueError otherwise."""
    if store.startswith(_SQLITE_PREFIX):
        path = store.removeprefix(_SQLITE_PREFIX).removeprefix("/")
        if path in {"", ":memory:"}:
            msg = f"{store}: an in-memory log is empty; name the SQLite file of a log"
            raise ValueError(msg)
        if not Path(path).is_file():
            msg = f"{store}: no such log file ({path})"
            raise ValueError(msg)
    return store


api_app = typer.Typer(
    help="The reconciler's HTTP API.", add_completion=False, pretty_exceptions_enable=False
)
api_app.command()(api)
