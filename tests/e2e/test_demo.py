"""`reconciler demo`: a small simulated day, its summary, and its log reconciled again."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from reconciler.demo import DemoConfig, running_providers

if TYPE_CHECKING:
    from tests.e2e.conftest import Cli


def test_demo_day_closes_with_every_rupiah_accounted_for(cli: Cli, tmp_path: Path) -> None:
    """The demo prints its summary with every check holding, and writes its files."""
    out = tmp_path / "demo"
    result = cli("demo", "--orders", "600", "--seed", "7", "--out", out)
    assert result.returncode == 0, result.stderr
    for heading in (
        "Orders by outcome",
        "Where every rupiah went",
        "The providers' own books",
        "Checks",
    ):
        assert heading in result.stdout
    assert "NO" not in result.stdout.split("Checks")[1]
    # The PSP paid no refund id twice, by its own ledger and by what the engine was told.
    assert re.search(r"Refund ids paid twice\s*│\s*0\s*│\s*0\s*│", result.stdout)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    totals = report["totals"]
    assert totals["debited"] > 0
    assert totals["refund_pending"] == 0
    assert totals["debited"] == sum(
        totals[key] for key in ("kept", "refunded", "refund_pending", "at_risk")
    )
    cases = {case for order in report["orders"] for case in order["cases"]}
    assert {"PAID_NOT_ISSUED", "DUPLICATE_DEBIT"} <= cases
    assert (out / "log.sqlite").stat().st_size > 0


def test_demo_log_reconciles_to_the_same_decisions(cli: Cli, tmp_path: Path) -> None:
    """`reconcile` over the demo's event log reproduces the live run's report exactly."""
    out = tmp_path / "demo"
    assert cli("demo", "--orders", "400", "--seed", "11", "--out", out).returncode == 0
    result = cli("reconcile", out / "events.jsonl", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((out / "report.json").read_text("utf-8"))


def test_demo_with_the_same_seed_writes_the_same_log(cli: Cli, tmp_path: Path) -> None:
    """Same seed, same size: byte-identical event logs."""
    first, second = tmp_path / "a", tmp_path / "b"
    assert cli("demo", "--orders", "200", "--seed", "3", "--out", first).returncode == 0
    assert cli("demo", "--orders", "200", "--seed", "3", "--out", second).returncode == 0
    assert (first / "events.jsonl").read_bytes() == (second / "events.jsonl").read_bytes()


class DayFailedError(RuntimeError):
    """Stands for whatever stops the demo in the middle of its day."""


def _call_then_fail(urls: list[str]) -> None:
    """Start the demo's simulators, note their URLs, issue once in the outage, then fail."""
    with running_providers(DemoConfig()) as providers:
        urls += [providers.issuer_url, providers.psp_url]
        body = {"command_id": "E1/issue/1", "order_id": "E1", "quantity": 1}
        headers = {
            "Idempotency-Key": "E1/issue/1",
            "X-Simulated-Time": "2024-09-04T10:00:00+07:00",  # in the default outage
        }
        response = httpx.post(f"{providers.issuer_url}/v1/stamps/issue", json=body, headers=headers)
        assert response.status_code == 503
        assert providers.stats().issuer_requests == 1
        raise DayFailedError


def test_demo_simulators_run_on_request_time_and_stop_after_the_block() -> None:
    """The demo's issuer and PSP judge time by the request, and are gone once the block fails."""
    urls: list[str] = []
    with pytest.raises(DayFailedError):
        _call_then_fail(urls)
    assert len(urls) == 2
    for url in urls:
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/v1/stats", timeout=2.0)


def _children(pid: int) -> set[int]:
    """The direct child processes of `pid`, from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def test_demo_stopped_with_sigterm_stops_its_simulators(tmp_path: Path) -> None:
    """SIGTERM unwinds the demo like Ctrl-C: no simulator process outlives it."""
    command = [sys.executable, "-m", "reconciler", "demo", "--orders", "20000"]
    demo = subprocess.Popen(  # noqa: S603 - our own CLI
        [*command, "--out", str(tmp_path / "demo")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(simulators := _children(demo.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(simulators) >= 2, "the simulators never started"
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) != 0
    finally:
        demo.kill()
    alive = [pid for pid in simulators if Path(f"/proc/{pid}").exists()]
    assert alive == []
