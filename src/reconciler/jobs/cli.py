"""`reconciler jobs run`: the issuance and refund jobs as one long-running process.

Settings come from the defaults, then `RECONCILER_JOBS_*` environment variables, then
the command-line options. The process runs until SIGTERM (or SIGINT), logging one
key/value line per command.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any

import httpx
import typer
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler.jobs.clients import IssuerClient, PspClient
from reconciler.jobs.handlers import Dispatcher, IssuanceJob, RefundJob
from reconciler.jobs.retry import BackoffPolicy, Retrier
from reconciler.jobs.runner import DEFAULT_GROUP, JobRunner
from reconciler.logging import configure_logging

EXIT_BAD_SETTINGS = 2

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

    def policy(self) -> BackoffPolicy:
        """The retry policy these settings describe."""
        return BackoffPolicy(
            attempts=self.attempts,
            base_s=self.backoff_base,
            cap_s=self.backoff_cap,
            deadline_s=self.deadline,
        )


def build_runner(settings: JobsSettings, http: httpx.Client) -> JobRunner:
    """The runner these settings describe, calling the providers through `http`."""
    retrier = Retrier(settings.policy())
    dispatcher = Dispatcher(
        IssuanceJob(IssuerClient(http, settings.issuer_url, timeout_s=settings.timeout), retrier),
        RefundJob(PspClient(http, settings.psp_url, timeout_s=settings.timeout), retrier),
    )
    return JobRunner.connect(
        settings.bootstrap,
        settings.commands_topic,
        settings.input_topic,
        dispatcher,
        group_id=settings.group,
        max_poll_records=settings.max_poll_records,
        command_budget_s=settings.deadline + settings.timeout,
    )


@jobs_app.command("run")
def run(  # noqa: PLR0913, PLR0917 - one option per setting; typer passes them by name
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    commands_topic: Annotated[str | None, typer.Option(help="Topic of the commands.")] = None,
    input_topic: Annotated[str | None, typer.Option(help="Topic the results go to.")] = None,
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
        typer.echo(f"reconciler jobs: bad settings: {error}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    configure_logging(json=settings.log_json)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with httpx.Client() as http:
        build_runner(settings, http).run(stop)
