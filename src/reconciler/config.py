"""Rule settings from a file (TOML or JSON) and the environment, with errors that say where.

Keys are SPEC's names in any case (`ISSUE_SLA`, `issue_sla`); durations are seconds.
Environment variables `RECONCILER_<NAME>` override the file.
"""

from __future__ import annotations

import json
import os
import tomllib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from reconciler.domain.rules import Rules

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

ENV_PREFIX = "RECONCILER_"
_DURATIONS = {
    name for name, info in Rules.model_fields.items() if info.annotation in (timedelta, "timedelta")
}


class ConfigError(Exception):
    """A configuration file or variable that cannot be used; the message says which."""


def load_rules(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Rules:
    """Rules from the defaults, then the file, then the environment."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path is not None:
        for key, value in _read_file(path).items():
            name = _field_name(key, str(path))
            values[name] = value
            origin[name] = f"{path}: key {key!r}"
    env = os.environ if environ is None else environ
    for name in Rules.model_fields:
        variable = ENV_PREFIX + name.upper()
        if variable in env:
            values[name] = _parse_env(variable, env[variable])
            origin[name] = f"environment variable {variable}"
    for name in _DURATIONS & values.keys():
        seconds = values[name]
        if type(seconds) not in (int, float) or seconds < 0:
            msg = f"{origin[name]}: expected a number of seconds >= 0, got {seconds!r}"
            raise ConfigError(msg)
        values[name] = timedelta(seconds=seconds)
    try:
        return Rules(**values)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        name = str(detail["loc"][0])
        msg = f"{origin.get(name, name)}: {detail['msg']}"
        raise ConfigError(msg) from error


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        msg = f"{path}: cannot read: {error.strerror or error}"
        raise ConfigError(msg) from error
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        msg = f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {error}"
        raise ConfigError(msg) from error
    if not isinstance(data, dict):
        msg = f"{path}: expected a table of settings"
        raise ConfigError(msg)
    return data


def _field_name(key: str, where: str) -> str:
    name = key.lower()
    if name not in Rules.model_fields:
        known = ", ".join(sorted(n.upper() for n in Rules.model_fields))
        msg = f"{where}: unknown setting {key!r}; known: {known}"
        raise ConfigError(msg)
    return name


def _parse_env(variable: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        msg = f"environment variable {variable}: expected a number, got {text!r}"
        raise ConfigError(msg) from None
