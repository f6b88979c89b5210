"""`reconciler jobs run`: its options, its environment variables, and bad settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.testing import CliRunner

from reconciler.jobs.cli import JobsSettings, jobs_app

if TYPE_CHECKING:
    import pytest


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
