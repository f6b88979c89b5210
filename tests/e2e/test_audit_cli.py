"""`reconciler audit`: chain, replay and report in one command; its verdict is its exit status."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reconciler.cli import app
from reconciler.domain.rules import Rules
from reconciler.reconcile import reconcile_file
from reconciler.store import open_store

SCENARIO = Path(__file__).parents[2] / "replay" / "casn-peak-500" / "events.jsonl"
REMOVE = "DELETE FROM records WHERE position = ?"


@pytest.fixture
def log_url(tmp_path: Path) -> str:
    """A SQLite log holding the recorded CASN day."""
    url = f"sqlite:///{tmp_path / 'log.sqlite'}"
    store = open_store(url)
    reconcile_file(SCENARIO, Rules(), store)
    store.close()
    return url


def run_audit(log_url: str, out: Path, *extra: str) -> tuple[int, str]:
    """Run `audit` over the CASN days; its exit status and what it printed."""
    args = ["audit", "--store", log_url, "--from", "2024-09-04", "--to", "2024-09-05"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), *extra])
    return result.exit_code, result.output


def test_audit_of_an_honest_log_passes_and_writes_report_csvs_and_shadow(
    log_url: str, tmp_path: Path
) -> None:
    """Exit 0, PASS; the verification matches `verify`, the shadow is kept beside the report."""
    out = tmp_path / "audit"
    status, output = run_audit(log_url, out)
    assert status == 0, output
    assert output.startswith("PASS")
    expected = {"report.html", "conservation_by_day.csv", "refunds.csv", "refund_evidence.csv"}
    assert expected <= {path.name for path in out.iterdir()}
    verification = json.loads((out / "verification.json").read_text(encoding="utf-8"))
    log = open_store(log_url)
    assert verification["chain"]["head_hash"] == log.verify().head_hash.hex()
    assert verification["replay"]["records_replayed"] == log.last_position()
    assert verification["replay"]["differences"] == 0
    shadow = open_store(f"sqlite:///{out / 'shadow.sqlite'}")
    assert shadow.last_position() == log.last_position()
    again, _ = run_audit(log_url, out)  # the shadow is the audit's own: replaced, not refused
    assert again == 0


def test_audit_fails_and_says_why_when_a_decision_was_removed(log_url: str, tmp_path: Path) -> None:
    """A deleted decision breaks the chain and leaves an unrecorded decision: exit 1, FAIL."""
    log = open_store(log_url)
    victim = next(r for r in log.read(kind="decision") if r.type == "RefundCommanded")
    log.close()
    with sqlite3.connect(log_url.removeprefix("sqlite:///")) as connection:
        connection.execute(REMOVE, (victim.position,))
    out = tmp_path / "audit"
    status, output = run_audit(log_url, out)
    assert status == 1
    assert output.startswith("FAIL")
    assert f"hash chain is broken at position {victim.position}" in output
    assert "1 decision(s) differ" in output
    differences = (out / "differences.csv").read_text(encoding="utf-8")
    assert victim.record_id in differences


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--zone", "Mars/Olympus"], "--zone"),
        (["--recorded-config", "/nonexistent/rules.toml"], "rules.toml"),
    ],
)
def test_audit_refuses_what_it_cannot_use(
    log_url: str, tmp_path: Path, extra: list[str], named: str
) -> None:
    """Exit 2 naming the option or file at fault; nothing is written."""
    out = tmp_path / "audit"
    status, output = run_audit(log_url, out, *extra)
    assert status == 2
    assert named in output
    assert not out.exists()


def test_audit_refuses_a_period_that_ends_before_it_starts(log_url: str, tmp_path: Path) -> None:
    """--to before --from is refused with exit 2."""
    args = ["audit", "--store", log_url, "--from", "2024-09-05", "--to", "2024-09-04"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "audit")])
    assert result.exit_code == 2
    assert "2024-09-04" in result.output
