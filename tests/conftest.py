"""Shared test settings: 500 hypothesis examples per property; no skips in CI."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.kafka_broker", "tests.postgres_fixtures"]

settings.register_profile(
    "default",
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")


def _skipped(config: pytest.Config) -> list[object]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    return list(reporter.stats.get("skipped", [])) if reporter is not None else []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a failure: nothing may pass by not running."""
    if os.environ.get("CI") and _skipped(session.config) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say why a CI run with skips failed."""
    skipped = _skipped(terminalreporter.config)
    if os.environ.get("CI") and skipped:
        terminalreporter.write_line(f"CI: {len(skipped)} test(s) skipped; a skip fails in CI")
