"""`reconciler jobs run`: the issuance and refund jobs as one long-running process.

The commands come from the commands topic (production, the default), or with `--store`
straight from the outbox of a log on the embedded default (a SQLite file written by
`demo` or `reconcile --store`, or a PostgreSQL log without a service): see `outbox`.
The two are exclusive. Settings come from the defaults, then `RECONCILER_JOBS_*`
environment variables, then the command-line options; with `--store`, the rules the
engine reacts to the results with are read as `reconcile` reads them (`--config`, then
`RECONCILER_<NAME>`), and must be those the log was written with. The process runs
until SIGTERM (or SIGINT), or with `--once` until the outbox is empty, logging one
key/value line per command.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import structlog
import typer
from eventsourcing.persistence import PersistenceError
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler.config import ConfigError, load_rules
from reconciler.engine import Engine
from reconciler.jobs.clients import IssuerClient, PspClient
from reconciler.jobs.handlers import Dispatcher, IssuanceJob, RefundJob
from reconciler.jobs.outbox import POLL_INTERVAL_S, OutboxRunner
from reconciler.jobs.retry import BackoffPolicy, Retrier
from reconciler.jobs.runner import DEFAULT_GROUP, JobRunner
from reconciler.logging import configure_logging
from reconciler.service.relay import COMMANDS_POSITION
from reconciler.store import open_store

if TYPE_CHECKING:
    from reconciler.domain.rules import Rules
    from reconciler.store import LogStore

EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2
_SQLITE_PREFIX = "sqlite://"
_KAFKA_ONLY = frozenset({"bootstrap", "commands_topic", "input_topic", "group", "max_poll_records"})
_OUTBOX_ONLY = frozenset({"store_schema", "poll_interval"})

log = structlog.get_logger("reconciler.jobs")

jobs_app = typer.Typer(
    help="The issuance and refund jobs: the engine's commands in, result facts out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@jobs_app.callback()
def jobs() -> None:
    """The issuance and refund jobs: the engine's commands in, result facts out."""


class JobsSettings(BaseSettings):
    """Where the jobs read and write, which providers they call, and how patiently."""

    model_config = SettingsConfigDict(env_prefix="RECONCILER_JOBS_", extra="forbid", frozen=True)

    bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    commands_topic: str = Field(default="reconciler.commands", description="commands to read")
    input_topic: str = Field(default="reconciler.events", description="where results go")
    store: str | None = Field(
        default=None,
        description="instead of Kafka, the log whose outbox to answer: a SQLite file, "
        "sqlite:///PATH, or a PostgreSQL URL",
    )
    store_schema: str = Field(default="reconciler", description="PostgreSQL schema of the log")
    poll_interval: float = Field(
        default=POLL_INTERVAL_S, gt=0, description="outbox polling interval when idle, s"
    )
    issuer_url: str = Field(default="http://127.0.0.1:8081", description="stamp issuer base URL")
    psp_url: str = Field(default="http://127.0.0.1:8082", description="payment provider base URL")
    group: str = Field(default=DEFAULT_GROUP, description="Kafka consumer group of the jobs")
    timeout: float = Field(default=10.0, gt=0, description="timeout of one HTTP call, s")
    attempts: int = Field(default=5, ge=1, description="attempts per command on transient errors")
    deadline: float = Field(default=60.0, gt=0, description="longest time per command, s")
    backoff_base: float = Field(default=0.5, ge=0, description="first backoff, s")
    backoff_cap: float = Field(default=10.0, ge=0, description="longest backoff, s")
    max_poll_records: int = Field(default=10, ge=1, description="commands per poll")
    log_json: bool = Field(default=True, description="JSON log lines (false: console format)")

    @model_validator(mode="after")
    def _urls_are_http(self) -> JobsSettings:
        for name in ("issuer_url", "psp_url"):
            value = getattr(self, name)
            if not value.startswith(("http://", "https://")):
                message = f"{name} must be an http(s) URL, not {value!r}"
                raise ValueError(message)
        return self

    @model_validator(mode="after")
    def _kafka_or_outbox(self) -> JobsSettings:
        if self.store is None:
            stray = _OUTBOX_ONLY & self.model_fields_set
            if stray:
                message = f"{', '.join(sorted(stray))} only apply with store (the outbox)"
                raise ValueError(message)
        else:
            stray = _KAFKA_ONLY & self.model_fields_set
            if stray:
                message = (
                    f"store reads the outbox instead of Kafka; drop {', '.join(sorted(stray))}"
                )
                raise ValueError(message)
        return self

    def policy(self) -> BackoffPolicy:
        """The retry policy these settings describe."""
        return BackoffPolicy(
            attempts=self.attempts,
            base_s=self.backoff_base,
            cap_s=self.backoff_cap,
            deadline_s=self.deadline,
        )


def outbox_store_url(store: str) -> str:
    """The store URL `--store` names; a bare path is a SQLite file.

    A SQLite file must exist already: opening a missing one would create an empty log
    and wait on it forever. Raises ValueError, with a message for the user.
    """
    if store.startswith(_SQLITE_PREFIX):
        url = store
    elif store.startswith(("postgresql://", "postgres://")) or "=" in store:
        return store
    else:
        url = _SQLITE_PREFIX + "/" + store
    path = url.removeprefix(_SQLITE_PREFIX).removeprefix("/")
    if path in {"", ":memory:"}:
        message = f"{store}: an in-memory log has no outbox to answer; name a SQLite file"
        raise ValueError(message)
    if not Path(path).is_file():
        message = f"{store}: no such log file ({path})"
        raise ValueError(message)
    return url


def build_dispatcher(settings: JobsSettings, http: httpx.Client) -> Dispatcher:
    """The jobs these settings describe, calling the providers through `http`."""
    retrier = Retrier(settings.policy())
    return Dispatcher(
        IssuanceJob(IssuerClient(http, settings.issuer_url, timeout_s=settings.timeout), retrier),
        RefundJob(PspClient(http, settings.psp_url, timeout_s=settings.timeout), retrier),
    )


def build_runner(settings: JobsSettings, http: httpx.Client) -> JobRunner:
    """The Kafka runner these settings describe, calling the providers through `http`."""
    return JobRunner.connect(
        settings.bootstrap,
        settings.commands_topic,
        settings.input_topic,
        build_dispatcher(settings, http),
        group_id=settings.group,
        max_poll_records=settings.max_poll_records,
        command_budget_s=settings.deadline + settings.timeout,
    )


def build_outbox_runner(
    settings: JobsSettings, http: httpx.Client, rules: Rules, store: LogStore
) -> OutboxRunner:
    """The outbox runner over `store`, its engine on `rules`, calling through `http`."""
    return OutboxRunner(Engine(rules, store), build_dispatcher(settings, http))


@jobs_app.command("run")
def run(  # noqa: PLR0913 - one option per setting; typer passes them by name
    *,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    commands_topic: Annotated[str | None, typer.Option(help="Topic of the commands.")] = None,
    input_topic: Annotated[str | None, typer.Option(help="Topic the results go to.")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Instead of Kafka, answer the outbox of this log and append the results "
            "to it: a SQLite file or sqlite:///PATH, or a PostgreSQL URL."
        ),
    ] = None,
    store_schema: Annotated[
        str | None, typer.Option(help="PostgreSQL schema of the log (with --store).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Rule settings the log was written with (with --store; TOML or JSON)."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="With --store: stop once the outbox is empty.")
    ] = False,
    poll_interval: Annotated[
        float | None, typer.Option(help="Outbox polling interval when idle, s (with --store).")
    ] = None,
    issuer_url: Annotated[str | None, typer.Option(help="Stamp issuer base URL.")] = None,
    psp_url: Annotated[str | None, typer.Option(help="Payment provider base URL.")] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group of the jobs.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Timeout of one HTTP call, s.")] = None,
    attempts: Annotated[
        int | None, typer.Option(help="Attempts per command on transient errors.")
    ] = None,
    deadline: Annotated[float | None, typer.Option(help="Longest time per command, s.")] = None,
) -> None:
    """Run the jobs until SIGTERM; every option also reads RECONCILER_JOBS_<NAME>."""
    given: dict[str, Any] = {
        "bootstrap": bootstrap,
        "commands_topic": commands_topic,
        "input_topic": input_topic,
        "store": store,
        "store_schema": store_schema,
        "poll_interval": poll_interval,
        "issuer_url": issuer_url,
        "psp_url": psp_url,
        "group": group,
        "timeout": timeout,
        "attempts": attempts,
        "deadline": deadline,
    }
    try:
        settings = JobsSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        raise _bad_settings(str(error)) from None
    if settings.store is None:
        if once or config is not None:
            message = "--once and --config only apply with --store (the outbox)"
            raise _bad_settings(message)
        configure_logging(json=settings.log_json)
        stop = _stop_on_signals()
        with httpx.Client() as http:
            build_runner(settings, http).run(stop)
        return
    _run_outbox(settings, config, once=once)


def _run_outbox(settings: JobsSettings, config: Path | None, *, once: bool) -> None:
    """Answer the outbox of `settings.store`: until it is empty (`once`), or until SIGTERM."""
    assert settings.store is not None  # noqa: S101 - the caller's branch
    try:
        rules = load_rules(config)
        url = outbox_store_url(settings.store)
        log_store = open_store(url, schema=settings.store_schema)
    except (ConfigError, ValueError, PersistenceError) as error:
        raise _bad_settings(str(error)) from None
    try:
        if COMMANDS_POSITION in log_store.positions():
            message = (
                f"{settings.store}: a service relays this log's commands to Kafka; "
                "run the jobs on the commands topic instead"
            )
            raise _bad_settings(message)
        configure_logging(json=settings.log_json)
        stop = _stop_on_signals()
        with httpx.Client() as http:
            runner = build_outbox_runner(settings, http, rules, log_store)
            if not once:
                runner.run(stop, interval_s=settings.poll_interval)
                return
            try:
                answered = runner.drain(stop)
            except Exception:
                log.exception("outbox_failed", handled=runner.handled)
                raise typer.Exit(EXIT_FAILED) from None
            log.info("outbox_drained", answered=answered, counts=dict(runner.counts))
    finally:
        log_store.close()


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def _bad_settings(message: str) -> typer.Exit:
    """Say what is wrong on stderr; the caller raises the returned exit (status 2)."""
    typer.echo(f"reconciler jobs: bad settings: {message}", err=True)
    return typer.Exit(EXIT_BAD_SETTINGS)
