"""The chaos campaign's feed: how it counts facts delivered out of their order."""

from __future__ import annotations

from chaos.feed import _inversions

from tests.remediation_support import Outside


def _fact(event_id: str, key: str | None) -> Outside:
    return Outside(0.0, event_id, key.encode() if key else None, b"{}")


def test_only_facts_of_one_key_swapped_count_as_out_of_order() -> None:
    """Swapping facts of different orders is no reordering; swapping one order's facts is."""
    placed, debited, other, keyless = (
        _fact("placed", "ORD-1"),
        _fact("debited", "ORD-1"),
        _fact("other", "ORD-2"),
        _fact("keyless", None),
    )
    original = [placed, debited, other, keyless]
    assert _inversions(original, original) == 0
    assert _inversions(original, [other, keyless, placed, debited]) == 0
    assert _inversions(original, [debited, other, placed, keyless]) == 1
