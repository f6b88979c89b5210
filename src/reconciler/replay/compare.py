"""Recorded decisions against re-derived ones: every difference, by decision id.

Decision ids are deterministic (SPEC "Ids") and unique in the log, so the comparison
matches by id and does not depend on how the facts were batched. Each side's decisions
wait in a dict until the other side shows the same id; an honest log keeps both dicts
at a batch's worth of decisions, so memory stays bounded however long the log is.
What is left over at the end is a difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DifferenceKind(StrEnum):
    """How a recorded decision and the facts disagree."""

    MISSING = "missing"
    """Recorded in the log, but the facts do not lead to it."""
    UNRECORDED = "unrecorded"
    """The facts lead to it, but the log does not hold it."""
    CHANGED = "changed"
    """Same decision id, different content."""


@dataclass(frozen=True, slots=True)
class DecisionDifference:
    """One decision on which the log and its re-derivation disagree."""

    kind: DifferenceKind
    source: str
    decision_id: str
    type: str
    recorded_position: int | None
    recorded: bytes | None
    rederived: bytes | None


@dataclass(frozen=True, slots=True)
class _Recorded:
    source: str
    type: str
    position: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Derived:
    source: str
    type: str
    payload: bytes


class DecisionComparison:
    """Feeds of both sides in any interleaving; `differences` lists where they part."""

    def __init__(self) -> None:
        """Nothing seen on either side yet."""
        self._recorded: dict[str, _Recorded] = {}
        self._derived: dict[str, _Derived] = {}
        self.differences: list[DecisionDifference] = []
        self.recorded_count = 0
        self.rederived_count = 0

    def recorded(
        self, source: str, decision_id: str, type_: str, position: int, payload: bytes
    ) -> None:
        """A decision record read from the log."""
        self.recorded_count += 1
        derived = self._derived.pop(decision_id, None)
        if derived is None:
            self._recorded[decision_id] = _Recorded(source, type_, position, payload)
        elif derived.payload != payload:
            self.differences.append(
                DecisionDifference(
                    DifferenceKind.CHANGED,
                    source,
                    decision_id,
                    type_,
                    position,
                    payload,
                    derived.payload,
                )
            )

    def late(self, decision_id: str, position: int, payload: bytes) -> None:
        """A decision recorded beyond the cut: compared only if the replay re-derived it."""
        derived = self._derived.get(decision_id)
        if derived is not None:
            self.recorded(derived.source, decision_id, derived.type, position, payload)

    @property
    def awaiting(self) -> bool:
        """Whether some re-derived decision still waits for its recorded twin."""
        return bool(self._derived)

    def rederived(self, source: str, decision_id: str, type_: str, payload: bytes) -> None:
        """A decision the replay's decider took (and the shadow log kept)."""
        self.rederived_count += 1
        recorded = self._recorded.pop(decision_id, None)
        if recorded is None:
            self._derived[decision_id] = _Derived(source, type_, payload)
        elif recorded.payload != payload:
            self.differences.append(
                DecisionDifference(
                    DifferenceKind.CHANGED,
                    recorded.source,
                    decision_id,
                    type_,
                    recorded.position,
                    recorded.payload,
                    payload,
                )
            )

    def finish(self) -> list[DecisionDifference]:
        """Turn what is still unmatched into differences; return them all, in log order."""
        for decision_id, recorded in self._recorded.items():
            self.differences.append(
                DecisionDifference(
                    DifferenceKind.MISSING,
                    recorded.source,
                    decision_id,
                    recorded.type,
                    recorded.position,
                    recorded.payload,
                    None,
                )
            )
        for decision_id, derived in self._derived.items():
            self.differences.append(
                DecisionDifference(
                    DifferenceKind.UNRECORDED,
                    derived.source,
                    decision_id,
                    derived.type,
                    None,
                    None,
                    derived.payload,
                )
            )
        self._recorded.clear()
        self._derived.clear()
        self.differences.sort(key=_in_log_order)
        return self.differences


def _in_log_order(difference: DecisionDifference) -> tuple[bool, int, str]:
    position = difference.recorded_position
    return (position is None, position or 0, difference.decision_id)
