"""`reconciler serve` with API tokens also serves the API, /metrics and the dashboard."""

from __future__ import annotations

import json
import socket
from typing import TYPE_CHECKING

import httpx
import pytest

from reconciler.store import PostgresLogStore
from tests.builders import Log
from tests.provider_support import stop_process
from tests.service_support import produce_lines, service_process, service_settings, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.postgres

TOKEN = "service-viewer-token-0001"  # noqa: S105 - a test credential


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_with_tokens_serves_the_dashboard_and_the_read_models(  # noqa: PLR0913, PLR0917 - fixtures
    pg_dsn: str,
    pg_schema: str,
    kafka_bootstrap: str,
    kafka_topic_factory: Callable[[str, int], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service's own process answers the summary of what it logged, and the page."""
    log = Log()
    log.tick()
    log.order("A1")
    log.debit("P1", "A1")
    log.debit("P2", "A1")  # a duplicate debit: refunded at once
    topic = kafka_topic_factory("serve-api", 1)
    settings = service_settings(pg_dsn, pg_schema, kafka_bootstrap, topic, input_partitions=1)
    port = free_port()
    monkeypatch.setenv("RECONCILER_API_PORT", str(port))
    monkeypatch.setenv(
        "RECONCILER_API_TOKENS", json.dumps([{"name": "fin", "role": "viewer", "token": TOKEN}])
    )
    process = service_process(settings, tmp_path / "serve.log")
    store = PostgresLogStore(pg_dsn, schema=pg_schema)
    store.create_tables()  # the service makes them too; the test reads before it may have
    try:
        produced = produce_lines(
            kafka_bootstrap, topic, [f.model_dump_json().encode() for f in log.facts], 1
        )
        wait_until(
            lambda: store.positions().get(f"{topic}:0") == produced, 60, "every record logged"
        )
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        summary = httpx.get(f"{base}/api/v1/summary", headers=headers, timeout=30).json()
        assert summary["totals"]["debited"] == 25_000
        assert summary["totals"]["refund_pending"] == 12_500
        assert httpx.get(f"{base}/api/v1/summary", timeout=10).status_code == 401
        page = httpx.get(f"{base}/dashboard", timeout=10)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
    finally:
        store.close()
        stop_process(process)
