"""The service's settings: defaults, then a TOML file, then `RECONCILER_*` variables.

Every setting is listed by `reconciler serve --help` and in the README, from this model.
"""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler.config import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


class ServiceSettings(BaseSettings):
    """Where the service reads, writes and listens, and how it batches."""

    model_config = SettingsConfigDict(env_prefix="RECONCILER_", extra="forbid", frozen=True)

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]"
    )
    input_topics: list[str] = Field(
        default=["reconciler.events"],
        description="topics of producer events (JSON list in the environment)",
    )
    input_partitions: int = Field(
        default=6, ge=1, description="partitions to create an input topic with, if absent"
    )
    commands_topic: str = Field(
        default="reconciler.commands", description="where the relay publishes commands"
    )
    dead_letter_topic: str = Field(
        default="reconciler.dead-letters", description="where rejected records go, with reason"
    )
    group_id: str = Field(default="reconciler", description="Kafka consumer group of the engines")
    store_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        description="log store: postgresql://... or conninfo (sqlite:///PATH: one process)",
    )
    store_schema: str = Field(default="reconciler", description="PostgreSQL schema of the log")
    batch_max_records: int = Field(
        default=2000, ge=1, description="records per poll and transaction"
    )
    poll_timeout_ms: int = Field(default=200, ge=1, description="longest wait for a batch, ms")
    state_cold_after: int = Field(
        default=50_000,
        ge=0,
        description=(
            "orders a partition's decider keeps in memory; past it, settled ones move to a"
            " temporary file on disk until a fact names them again; 0 keeps all in memory"
        ),
    )
    session_timeout_ms: int = Field(
        default=10_000, ge=1000, description="consumer group session timeout, ms"
    )
    tick_interval_s: float = Field(
        default=1.0, gt=0, description="seconds between ClockTicked facts from the wall clock"
    )
    ticker: bool = Field(default=True, description="run the clock ticker (one leader at a time)")
    relay: bool = Field(default=True, description="run the command relay (one leader at a time)")
    relay_interval_s: float = Field(default=0.2, gt=0, description="relay polling interval, s")
    retry_max_s: float = Field(
        default=30.0, gt=0, description="longest backoff between retries when the store is down"
    )
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Prometheus /metrics port; 0 turns it off"
    )
    metrics_host: str = Field(default="127.0.0.1", description="address /metrics listens on")
    log_json: bool = Field(default=True, description="JSON log lines (false: console format)")


def load_settings(path: Path | None = None, **overrides: Any) -> ServiceSettings:  # noqa: ANN401 - typed by the model
    """Settings from the file's `[service]` table (or top level), then the environment."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            msg = f"{path}: cannot read settings: {error}"
            raise ConfigError(msg) from error
        values = dict(data.get("service", data))
    values.update(overrides)
    try:
        return _FileFirst(**values)
    except ValidationError as error:
        detail = error.errors(include_url=False)[0]
        where = f"{path}: " if path is not None else ""
        msg = f"{where}setting {'.'.join(map(str, detail['loc']))}: {detail['msg']}"
        raise ConfigError(msg) from error


class _FileFirst(ServiceSettings):
    """Environment variables override the file, as for the rule settings."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: Any,  # noqa: ANN401 - pydantic-settings' source type
        env_settings: Any,  # noqa: ANN401
        dotenv_settings: Any,  # noqa: ANN401, ARG003
        file_secret_settings: Any,  # noqa: ANN401, ARG003
    ) -> tuple[Any, ...]:
        """Environment first, then the values given (from the file)."""
        del settings_cls
        return (env_settings, init_settings)


def settings_help() -> str:
    """A table of every setting, its variable, default and meaning, for --help."""
    lines = []
    for name, info in ServiceSettings.model_fields.items():
        lines.append(f"RECONCILER_{name.upper()} (default {info.default!r}): {info.description}")
    return "\n\n".join(lines)
