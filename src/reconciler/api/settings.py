"""The API's settings: where it listens, and which bearer tokens it accepts, with what role.

Settings come from the defaults, then `RECONCILER_API_*` environment variables, then the
command-line options. Tokens are given in `RECONCILER_API_TOKENS` (a JSON list) or in a
file named by `RECONCILER_API_TOKENS_FILE` (TOML with `[[tokens]]` tables, or JSON), or
both. Each names the person or system that uses it (the operator name recorded in the
log), its role, and either the token itself or its SHA-256 in hex, so that a file need
not hold the secret:

    RECONCILER_API_TOKENS='[{"name": "vera", "role": "viewer", "token": "..."}]'

    [[tokens]]                  # in RECONCILER_API_TOKENS_FILE
    name = "siti"
    role = "operator"
    sha256 = "5e8848..."        # printf %s "$TOKEN" | sha256sum

A token given in clear is hashed as soon as it is read; neither the settings nor the
errors about them keep or repeat it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from reconciler.config import ConfigError

MIN_TOKEN_LENGTH = 16
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces (RFC 6750)


class Role(StrEnum):
    """What a token may do: `viewer` reads; `operator` reads and takes operator actions."""

    VIEWER = "viewer"
    OPERATOR = "operator"

    def grants(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may do."""
        return self is Role.OPERATOR or needed is Role.VIEWER


class TokenSpec(BaseModel):
    """One accepted token, by hash: who uses it and with which role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Role
    sha256: str

    @model_validator(mode="before")
    @classmethod
    def _hash_a_clear_token(cls, data: Any) -> Any:  # noqa: ANN401 - raw settings input
        """Replace `token` by its SHA-256; exactly one of the two must be given."""
        if not isinstance(data, dict):
            return data
        values = dict(data)
        token = values.pop("token", None)
        if token is not None and "sha256" in values:
            msg = "give either token or sha256, not both"
            raise ValueError(msg)
        if token is not None:
            values["sha256"] = hashlib.sha256(_checked_token(token).encode()).hexdigest()
        elif not isinstance(values.get("sha256"), str) or not _SHA256_HEX.fullmatch(
            values["sha256"]
        ):
            msg = "give token, or sha256 as 64 lowercase hex digits"
            raise ValueError(msg)
        return values


def _checked_token(token: object) -> str:
    """The token if it is long enough and made of token characters; never quoted in errors."""
    if not isinstance(token, str) or not _TOKEN_CHARACTERS.fullmatch(token):
        msg = "token must be printable ASCII without spaces"
        raise ValueError(msg)
    if len(token) < MIN_TOKEN_LENGTH:
        msg = f"token must be at least {MIN_TOKEN_LENGTH} characters"
        raise ValueError(msg)
    return token


_TOKEN_LIST = TypeAdapter(list[TokenSpec])


class ApiSettings(BaseSettings):
    """Where the API listens and whom it lets in."""

    model_config = SettingsConfigDict(env_prefix="RECONCILER_API_", extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (0: any free port)")
    tokens: list[TokenSpec] = Field(
        default_factory=list,
        description='accepted tokens, a JSON list of {"name", "role", "token" or "sha256"}',
    )
    tokens_file: Path | None = Field(
        default=None, description="a TOML ([[tokens]]) or JSON file of more tokens"
    )
    log_json: bool = Field(default=True, description="JSON log lines (false: console format)")

    def all_tokens(self) -> list[TokenSpec]:
        """The tokens from the settings and from the tokens file; ConfigError if unusable."""
        found = list(self.tokens)
        if self.tokens_file is not None:
            found.extend(read_tokens_file(self.tokens_file))
        return found


def load_api_settings(**overrides: Any) -> ApiSettings:  # noqa: ANN401 - typed by the model
    """Settings from the environment, then `overrides` (None values are left out)."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return ApiSettings(**given)  # given values come before the environment
    except ValidationError as error:
        raise ConfigError(_first_error("setting", error)) from None
    except SettingsError as error:  # a variable that is not JSON where JSON is due
        raise ConfigError(str(error)) from None


def read_tokens_file(path: Path) -> list[TokenSpec]:
    """The tokens in a TOML (`[[tokens]]`) or JSON (a list, or `{"tokens": [...]}`) file."""
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as error:
        msg = f"{path}: cannot read tokens: {error}"
        raise ConfigError(msg) from None
    entries = data.get("tokens") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        msg = f"{path}: expected a list of tokens (a [[tokens]] table or a JSON list)"
        raise ConfigError(msg)
    try:
        return _TOKEN_LIST.validate_python(entries)
    except ValidationError as error:
        raise ConfigError(_first_error(f"{path}: tokens", error)) from None


def _first_error(what: str, error: ValidationError) -> str:
    """`what.location: message` of the first error, without the input (it may be a token)."""
    detail = error.errors(include_url=False, include_input=False, include_context=False)[0]
    where = ".".join(str(part) for part in (what, *detail["loc"]))
    return f"{where}: {str(detail['msg']).removeprefix('Value error, ')}"
