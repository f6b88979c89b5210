"""`reconciler dashboard`: the finance dashboard over a log, ready right after `make demo`.

    reconciler dashboard                         # the demo's log, sqlite:///out/demo/log.sqlite
    reconciler dashboard --store postgresql://… --port 8081

It brings the read models up to date first (with a progress bar on a terminal), then
serves the API with its finance routes and the dashboard page, until SIGINT or SIGTERM.
The projector it used stays warm in memory and keeps the read models caught up as the
page reads them (`freshness`). Tokens come from the API's settings (`RECONCILER_API_*`,
`--tokens-file`); when none is configured, it makes one viewer token for this run and
prints it beside the URL. Wire it into the main command line with
`app.command("dashboard")(dashboard)`.
"""

from __future__ import annotations

import secrets
from pathlib import Path  # noqa: TC003 - typer reads the annotations at run time
from typing import TYPE_CHECKING, Annotated

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console

from reconciler.api import finance
from reconciler.api.app import create_api
from reconciler.api.cli import EXIT_BAD_SETTINGS, _existing
from reconciler.api.dashboard import PAGE_PATH
from reconciler.api.freshness import ReadModelRefresher
from reconciler.api.server import serve
from reconciler.api.settings import ApiSettings, Role, TokenSpec, load_api_settings
from reconciler.config import ConfigError, load_rules
from reconciler.logging import configure_logging
from reconciler.progress import bounded_progress
from reconciler.projections import ProjectionError, Projector
from reconciler.projections.database import TRACKING
from reconciler.store import open_store

if TYPE_CHECKING:
    from reconciler.domain.rules import Rules
    from reconciler.store import LogStore

EXIT_FAILED = 1
DEMO_STORE = "sqlite:///out/demo/log.sqlite"


def dashboard(  # noqa: PLR0913 - one parameter per command-line option
    *,
    store: Annotated[
        str,
        typer.Option(
            envvar="RECONCILER_STORE_URL",
            help="The log: the demo's SQLite file, or a postgresql:// URL.",
        ),
    ] = DEMO_STORE,
    schema: Annotated[str, typer.Option(help="PostgreSQL schema of the log.")] = "reconciler",
    config: Annotated[
        Path | None, typer.Option(help="The rules the engine runs with (TOML or JSON).")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [RECONCILER_API_HOST: 127.0.0.1].")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="TCP port [RECONCILER_API_PORT: 8080]."),
    ] = None,
    tokens_file: Annotated[
        Path | None,
        typer.Option(help="A TOML or JSON file of tokens [RECONCILER_API_TOKENS_FILE]."),
    ] = None,
) -> None:
    """Project the read models, then serve the finance dashboard and the API."""
    err = Console(stderr=True)
    try:
        settings = load_api_settings(host=host, port=port, tokens_file=tokens_file)
        rules = load_rules(config)
        settings, generated = _with_a_token(settings)
        log_store = open_store(_existing(store), schema=schema)
    except (ConfigError, ValueError, PersistenceError) as error:
        err.print(f"reconciler dashboard: {error}", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    try:
        projector = _projected(log_store, rules, err)
        app = create_api(settings, log_store, rules)
        finance.use_refresher(app, ReadModelRefresher(log_store, rules, projector=projector))
        url = f"http://{_url_host(settings.host)}:{settings.port}{PAGE_PATH}"
        typer.echo(f"dashboard: {url}")
        if generated is not None:
            typer.echo(f"viewer token for this run: {generated}")
        configure_logging(json=settings.log_json)
        serve(app, settings.host, settings.port)
    except (ProjectionError, PersistenceError) as error:
        err.print(f"reconciler dashboard: {error}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
    except ConfigError as error:
        err.print(f"reconciler dashboard: {error}", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    finally:
        log_store.close()


def _with_a_token(settings: ApiSettings) -> tuple[ApiSettings, str | None]:
    """The settings as they are if they name tokens; else with a new viewer token, and it."""
    if settings.all_tokens():
        return settings, None
    token = secrets.token_urlsafe(24)
    spec = TokenSpec.model_validate({"name": "dashboard", "role": Role.VIEWER, "token": token})
    return settings.model_copy(update={"tokens": [spec]}), token


def _projected(log_store: LogStore, rules: Rules, console: Console) -> Projector:
    """A projector that has caught the read models up with the log, showing its progress."""
    projector = Projector(log_store, rules)
    pending = max(0, log_store.last_position() - log_store.positions().get(TRACKING, 0))
    with bounded_progress(console, "projecting the read models", pending) as advance:
        projector.catch_up(progress=advance)
    return projector


def _url_host(host: str) -> str:
    """A host as it goes in a URL: any-address binds are reached on loopback."""
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
