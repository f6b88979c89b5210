"""Command-line values shared by several commands, checked with messages that name the option."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

StoreUrl = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="RECONCILER_STORE_URL",
        help="the log: sqlite:///out/demo/log.sqlite or a postgresql:// URL",
    ),
]
"""`--store`: the log every command that reads it takes."""
Schema = Annotated[str, typer.Option(help="PostgreSQL schema of the log")]
"""`--schema`: where the log's tables are in PostgreSQL."""
EngineRules = Annotated[
    Path | None, typer.Option("--config", help="the rules the engine runs with (TOML or JSON)")
]
"""`--config`: the rules the engine ran (or runs) with."""
RecordedRules = Annotated[
    Path | None,
    typer.Option("--recorded-config", help="the rules the engine ran with (default: its own)"),
]
"""`--recorded-config`: for commands whose `--config` means something else (replay, audit)."""


def aware_time(text: str, option: str) -> datetime:
    """An ISO 8601 time with its UTC offset, or a usage error naming `option`."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = f"not an ISO 8601 timestamp: {text!r}"
        raise typer.BadParameter(msg, param_hint=option) from None
    if moment.utcoffset() is None:
        msg = f"{text!r} has no UTC offset"
        raise typer.BadParameter(msg, param_hint=option)
    return moment
