"""Every recorded scenario in replay/ still reconciles to its expected result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.e2e.conftest import Cli

REPLAY = Path(__file__).parents[2] / "replay"
SCENARIOS = sorted(path.parent for path in REPLAY.glob("*/events.jsonl"))


def test_there_are_recorded_scenarios() -> None:
    """replay/ holds at least the CASN peak scenario."""
    assert REPLAY / "casn-peak-500" in SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[path.name for path in SCENARIOS])
def test_scenario_reconciles_to_its_expected_result(cli: Cli, scenario: Path) -> None:
    """`reconcile` over the recorded log prints exactly the recorded expectation."""
    result = cli("reconcile", scenario / "events.jsonl", "--format", "json")
    assert result.returncode == 0, result.stderr
    expected = json.loads((scenario / "expected.json").read_text(encoding="utf-8"))
    assert json.loads(result.stdout) == expected
