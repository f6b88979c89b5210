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


REPLAYS = sorted(REPLAY.glob("*/replays/*.args"))


def test_the_casn_scenario_has_recorded_replays() -> None:
    """The CASN scenario keeps a clock cut, a position cut and a what-if with expectations."""
    names = {path.stem for path in REPLAYS if path.parents[1].name == "casn-peak-500"}
    assert {"as-of-1100", "position-2500", "what-if-issue-sla-1h"} <= names


@pytest.mark.parametrize(
    "args_file", REPLAYS, ids=[p.parents[1].name + "/" + p.stem for p in REPLAYS]
)
def test_scenario_replays_to_its_expected_document(
    cli: Cli, args_file: Path, tmp_path: Path
) -> None:
    """`replay` of the scenario's log, as recorded in replays/NAME.args, prints NAME.json."""
    scenario = args_file.parents[1]
    store = f"sqlite:///{tmp_path / 'log.sqlite'}"
    logged = cli("reconcile", scenario / "events.jsonl", "--store", store)
    assert logged.returncode == 0, logged.stderr
    args = [
        str(args_file.parent / arg) if (args_file.parent / arg).is_file() else arg
        for arg in args_file.read_text(encoding="utf-8").split()
    ]
    result = cli("replay", "--store", store, "--in-memory", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    # The log's source is the path `reconcile` was given; the expectation says events.jsonl.
    source = json.dumps(str(scenario / "events.jsonl"))[1:-1]
    document = json.loads(result.stdout.replace(source, "events.jsonl"))
    assert document.pop("log") == f"{store}"
    assert document.pop("shadow") is None
    expected = json.loads(args_file.with_suffix(".json").read_text(encoding="utf-8"))
    assert document == expected
