"""The decision comparison and the replay's cut, on hand-made records."""

from __future__ import annotations

from datetime import datetime

import pytest

from reconciler.replay.compare import DecisionComparison, DifferenceKind
from reconciler.replay.cutoff import AsOf


def test_comparison_matches_by_id_whichever_side_comes_first() -> None:
    """Recorded-then-derived and derived-then-recorded both match; nothing is left over."""
    comparison = DecisionComparison()
    comparison.recorded("s", "d1", "T", 5, b"one")
    comparison.rederived("s", "d2", "T", b"two")
    comparison.rederived("s", "d1", "T", b"one")
    comparison.recorded("s", "d2", "T", 6, b"two")
    assert comparison.finish() == []
    assert (comparison.recorded_count, comparison.rederived_count) == (2, 2)


def test_comparison_lists_changed_missing_and_unrecorded_in_log_order() -> None:
    """Each kind of difference is named, recorded positions first in order, then the rest."""
    comparison = DecisionComparison()
    comparison.recorded("s", "forged", "T", 9, b"x")
    comparison.recorded("s", "altered", "T", 3, b"new")
    comparison.rederived("s", "altered", "T", b"old")
    comparison.rederived("s", "dropped", "T", b"y")
    differences = comparison.finish()
    assert [(d.kind, d.decision_id) for d in differences] == [
        (DifferenceKind.CHANGED, "altered"),
        (DifferenceKind.MISSING, "forged"),
        (DifferenceKind.UNRECORDED, "dropped"),
    ]
    assert (differences[0].recorded, differences[0].rederived) == (b"new", b"old")


def test_a_late_record_counts_only_when_it_twins_a_rederived_decision() -> None:
    """Beyond the cut, a recorded decision is compared if re-derived, else ignored."""
    comparison = DecisionComparison()
    comparison.rederived("s", "d1", "T", b"one")
    assert comparison.awaiting
    comparison.late("d1", 12, b"one")
    comparison.late("after-the-cut", 13, b"z")
    assert not comparison.awaiting
    assert comparison.finish() == []
    assert comparison.recorded_count == 1


def test_as_of_refuses_a_position_below_one_and_a_naive_time() -> None:
    """Positions start at 1; a moment must say its UTC offset."""
    with pytest.raises(ValueError, match="starts at 1"):
        AsOf(position=0)
    with pytest.raises(ValueError, match="no UTC offset"):
        AsOf(clock=datetime(2024, 9, 4, 11))  # noqa: DTZ001 - the naive time under test
    assert AsOf().describe() == "end of log"
    assert AsOf(position=7).describe() == "log position 7"
