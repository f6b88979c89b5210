"""Command-line values shared by several commands, checked with messages that name the option."""

from __future__ import annotations

from datetime import datetime

import typer


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
