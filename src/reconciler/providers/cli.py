"""`reconciler simulate issuer|psp`: run a provider simulator in the foreground."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
import uvicorn
from pydantic import ValidationError

from reconciler.providers.clock import RequestClock, shifted_clock, system_clock
from reconciler.providers.config import DEFAULT_BLACKOUT, DailyWindow, IssuerConfig, PspConfig
from reconciler.providers.issuer import create_issuer_app
from reconciler.providers.journal import JournalError
from reconciler.providers.psp import create_psp_app

if TYPE_CHECKING:
    from fastapi import FastAPI

    from reconciler.providers.clock import Clock

simulate_app = typer.Typer(
    help="Provider simulators (stamp issuer, payment provider) as HTTP servers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

Port = Annotated[int, typer.Option(min=1, max=65535, help="TCP port to listen on.")]
Host = Annotated[str, typer.Option(help="Address to bind (keep it on loopback).")]
Seed = Annotated[int, typer.Option(help="Same seed, same answers to the same requests.")]
ErrorRate = Annotated[float, typer.Option(help="Share of requests answered 503 (0-1).")]
BurstSeconds = Annotated[
    float, typer.Option(help="If > 0, whole time buckets this long fail together (bursts).")
]
SlowRate = Annotated[float, typer.Option(help="Share of answers held back (0-1).")]
SlowSeconds = Annotated[float, typer.Option(help="How long a slow answer is held back.")]
ClockStart = Annotated[
    str | None,
    typer.Option(help="Pretend the clock reads this ISO 8601 time at start (default +07:00)."),
]
State = Annotated[
    Path | None,
    typer.Option(help="JSONL journal of final answers: a restart keeps them (else memory)."),
]


class ClockMode(StrEnum):
    """Where a simulator reads the time its windows and bursts are judged by."""

    SYSTEM = "system"
    REQUEST = "request"


ClockOption = Annotated[
    ClockMode,
    typer.Option(
        "--clock",
        help="system: the wall clock (or --clock-start); request: each POST's "
        "X-Simulated-Time header (ISO 8601), for callers in simulated time.",
    ),
]


def _clock(mode: ClockMode, clock_start: str | None) -> Clock:
    if mode is ClockMode.REQUEST:
        if clock_start is not None:
            msg = "--clock-start needs --clock system; on request time every POST sets the time"
            raise typer.BadParameter(msg, param_hint="--clock-start")
        return RequestClock()
    if clock_start is None:
        return system_clock
    try:
        return shifted_clock(datetime.fromisoformat(clock_start))
    except ValueError:
        msg = f"not an ISO 8601 time: {clock_start!r}"
        raise typer.BadParameter(msg, param_hint="--clock-start") from None


C = TypeVar("C", IssuerConfig, PspConfig)


def _config(model: type[C], values: dict[str, Any]) -> C:
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'.'.join(map(str, error['loc'])).replace('_', '-')}: {error['msg']}"
            if error["loc"]
            else error["msg"]
            for error in exc.errors(include_url=False)
        )
        raise typer.BadParameter(problems) from None


def _serve(app: FastAPI, name: str, host: str, port: int) -> None:
    typer.echo(f"{name} simulator on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@simulate_app.command()
def issuer(  # noqa: PLR0913 - one parameter per command-line option
    *,
    port: Port,
    host: Host = "127.0.0.1",
    seed: Seed = 0,
    outage_start: Annotated[
        str | None, typer.Option(help="Daily outage start, HH:MM Jakarta time.")
    ] = None,
    outage_minutes: Annotated[int, typer.Option(min=1, help="Outage length in minutes.")] = 60,
    error_rate: ErrorRate = 0.0,
    burst_seconds: BurstSeconds = 0.0,
    slow_rate: SlowRate = 0.0,
    slow_seconds: SlowSeconds = 2.0,
    partial_rate: Annotated[
        float, typer.Option(help="Share of issues delivering fewer stamps (0-1).")
    ] = 0.0,
    reject_rate: Annotated[
        float, typer.Option(help="Share refused ORDER_NOT_ELIGIBLE, final (0-1).")
    ] = 0.0,
    quota_rate: Annotated[
        float, typer.Option(help="Share refused QUOTA_EXCEEDED, retryable (0-1).")
    ] = 0.0,
    clock: ClockOption = ClockMode.SYSTEM,
    clock_start: ClockStart = None,
    state: State = None,
) -> None:
    """Run the stamp issuer: POST /v1/stamps/issue, GET /v1/stats."""
    outage = None
    if outage_start is not None:
        try:
            outage = DailyWindow.parse_start(outage_start, outage_minutes)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--outage-start") from None
    config = _config(
        IssuerConfig,
        {
            "seed": seed,
            "outage": outage,
            "error_rate": error_rate,
            "burst_seconds": burst_seconds,
            "slow_rate": slow_rate,
            "slow_seconds": slow_seconds,
            "partial_rate": partial_rate,
            "reject_rate": reject_rate,
            "quota_rate": quota_rate,
        },
    )
    try:
        app = create_issuer_app(config, _clock(clock, clock_start), state)
    except JournalError as exc:
        raise typer.BadParameter(str(exc), param_hint="--state") from None
    _serve(app, "issuer", host, port)


@simulate_app.command()
def psp(  # noqa: PLR0913 - one parameter per command-line option
    *,
    port: Port,
    host: Host = "127.0.0.1",
    seed: Seed = 0,
    not_supported_rate: Annotated[
        float, typer.Option(help="Share of payment ids whose bank refuses refunds (0-1).")
    ] = 0.03,
    blackout: Annotated[
        str, typer.Option(help="Nightly refund blackout, HH:MM-HH:MM Jakarta time, or none.")
    ] = str(DEFAULT_BLACKOUT),
    drop_after_pay_rate: Annotated[
        float, typer.Option(help="Share of new refunds paid, then answered 502 (0-1).")
    ] = 0.0,
    error_rate: ErrorRate = 0.0,
    burst_seconds: BurstSeconds = 0.0,
    slow_rate: SlowRate = 0.0,
    slow_seconds: SlowSeconds = 2.0,
    refundable_cap: Annotated[
        int | None, typer.Option(min=1, help="Most one payment id may get back in total.")
    ] = None,
    clock: ClockOption = ClockMode.SYSTEM,
    clock_start: ClockStart = None,
    state: State = None,
) -> None:
    """Run the payment provider: POST /v1/refunds, GET /v1/stats."""
    window = None
    if blackout.strip().lower() != "none":
        try:
            window = DailyWindow.parse(blackout)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--blackout") from None
    config = _config(
        PspConfig,
        {
            "seed": seed,
            "not_supported_rate": not_supported_rate,
            "blackout": window,
            "drop_after_pay_rate": drop_after_pay_rate,
            "error_rate": error_rate,
            "burst_seconds": burst_seconds,
            "slow_rate": slow_rate,
            "slow_seconds": slow_seconds,
            "refundable_cap": refundable_cap,
        },
    )
    try:
        app = create_psp_app(config, _clock(clock, clock_start), state)
    except JournalError as exc:
        raise typer.BadParameter(str(exc), param_hint="--state") from None
    _serve(app, "PSP", host, port)
