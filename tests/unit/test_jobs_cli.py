"""`reconciler jobs run`: its options, its environment variables, and bad settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from reconciler.jobs.cli import JobsSettings, jobs_app, outbox_store_url
from reconciler.service.relay import COMMANDS_POSITION
from reconciler.store import SQLiteLogStore

if TYPE_CHECKING:
    from pathlib import Path


def test_help_lists_every_option() -> None:
    """`jobs run --help` names the Kafka, provider and retry options."""
    result = CliRunner().invoke(jobs_app, ["run", "--help"])
    assert result.exit_code == 0
    for option in (
        "--bootstrap",
        "--commands-topic",
        "--input-topic",
        "--issuer-url",
        "--psp-url",
        "--group",
        "--timeout",
        "--attempts",
        "--deadline",
    ):
        assert option in result.output


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """RECONCILER_JOBS_* variables set the settings; the retry policy follows them."""
    monkeypatch.setenv("RECONCILER_JOBS_ATTEMPTS", "7")
    monkeypatch.setenv("RECONCILER_JOBS_PSP_URL", "http://127.0.0.1:9999")
    settings = JobsSettings()
    assert settings.attempts == 7
    assert settings.psp_url == "http://127.0.0.1:9999"
    assert settings.group == "reconciler-jobs"
    assert settings.policy().attempts == 7


def test_bad_settings_exit_2_with_a_message() -> None:
    """A provider URL that is not http(s) stops the command with status 2, naming it."""
    result = CliRunner().invoke(jobs_app, ["run", "--issuer-url", "ftp://x"])
    assert result.exit_code == 2
    assert "issuer_url" in result.output


# --- the outbox on the embedded default (--store) ----------------------------------------


def test_help_lists_the_outbox_options() -> None:
    """`jobs run --help` names the outbox options: the store, its schema, rules, once, poll."""
    result = CliRunner().invoke(jobs_app, ["run", "--help"])
    assert result.exit_code == 0
    for option in ("--store", "--store-schema", "--config", "--once", "--poll-interval"):
        assert option in result.output


def test_store_and_kafka_settings_exclude_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """A store with any Kafka setting, from an option or the environment, is refused by name."""
    monkeypatch.setenv("RECONCILER_JOBS_GROUP", "g")
    with pytest.raises(ValidationError, match="drop group"):
        JobsSettings(store="log.sqlite")
    monkeypatch.delenv("RECONCILER_JOBS_GROUP")
    result = CliRunner().invoke(jobs_app, ["run", "--store", "x.sqlite", "--bootstrap", "k:9092"])
    assert result.exit_code == 2
    assert "drop bootstrap" in result.output


def test_outbox_settings_need_a_store() -> None:
    """--poll-interval, --once or --config without --store stop the command with status 2."""
    with pytest.raises(ValidationError, match="poll_interval only apply with store"):
        JobsSettings(poll_interval=0.5)
    for extra in (["--once"], ["--config", "rules.toml"]):
        result = CliRunner().invoke(jobs_app, ["run", *extra])
        assert result.exit_code == 2
        assert "only apply with --store" in result.output


def test_a_bare_path_is_a_sqlite_file_and_urls_pass_as_given(tmp_path: Path) -> None:
    """A relative or absolute path becomes a sqlite URL; PostgreSQL URLs and conninfo pass."""
    log = tmp_path / "log.sqlite"
    log.touch()
    assert outbox_store_url(str(log)) == f"sqlite:///{log}"
    assert outbox_store_url(f"sqlite:///{log}") == f"sqlite:///{log}"
    assert outbox_store_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert outbox_store_url("host=h dbname=db") == "host=h dbname=db"


def test_a_missing_or_in_memory_log_is_refused(tmp_path: Path) -> None:
    """A SQLite file that does not exist (it would be created empty) or :memory: exits 2."""
    missing = tmp_path / "nope.sqlite"
    for store, expected in ((str(missing), "no such log file"), ("sqlite://:memory:", "memory")):
        result = CliRunner().invoke(jobs_app, ["run", "--store", store, "--once"])
        assert result.exit_code == 2
        assert expected in result.output
    assert not missing.exists()


def test_a_log_relayed_to_kafka_is_refused(tmp_path: Path) -> None:
    """A log whose commands a service relays to Kafka is left to the Kafka jobs: exit 2."""
    path = tmp_path / "log.sqlite"
    store = SQLiteLogStore(path)
    store.create_tables()
    with store.transaction() as tx:
        tx.set_positions({COMMANDS_POSITION: 7})
    store.close()
    result = CliRunner().invoke(jobs_app, ["run", "--store", str(path), "--once"])
    assert result.exit_code == 2
    assert "commands topic" in result.output


def test_unusable_rules_exit_2_naming_the_file(tmp_path: Path) -> None:
    """A --config with an unknown key stops the outbox run with status 2, naming the key."""
    path = tmp_path / "log.sqlite"
    store = SQLiteLogStore(path)
    store.create_tables()
    store.close()
    config = tmp_path / "rules.toml"
    config.write_text("ISSUE_SOON = 1\n", encoding="utf-8")
    result = CliRunner().invoke(
        jobs_app, ["run", "--store", str(path), "--config", str(config), "--once"]
    )
    assert result.exit_code == 2
    assert "ISSUE_SOON" in result.output
