"""One short round of the fault campaign (`make chaos`), so that CI runs it as it stands.

The campaign owns its services: an embedded PostgreSQL it may restart, and a Tansu
broker behind its fault proxy (the broker must advertise the proxy's address, so a
configured outside Kafka cannot stand in for it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from chaos.faults import KINDS
from chaos.run import Campaign, campaign_run, report

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(600)


def test_a_round_under_every_fault_keeps_every_invariant(tmp_path: Path) -> None:
    """Each fault once during a small day: nothing lost, doubled, paid twice; money conserved."""
    campaign = Campaign(
        rounds=1, minutes=10, seed=20_241_001, orders=150, faults_per_kind=1, out=tmp_path
    )
    results = campaign_run(campaign)
    assert len(results) == 1
    result = results[0]
    assert result.error is None, result.error
    assert result.fault_failures == []
    assert {kind: result.faults[kind] for kind in KINDS} == dict.fromkeys(KINDS, 1)
    failed = [f"{v.name}: {v.detail}" for v in result.verdicts if not v.held]
    assert failed == []
    assert len(result.verdicts) == 8
    assert result.unplanned_exits == {}
    assert result.delivery.duplicates > 0
    assert result.delivery.out_of_order > 0
    assert "1 of 1 rounds held every invariant" in report(campaign, results, 60.0)
