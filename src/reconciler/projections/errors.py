"""What can stop a projection, each a type of its own so that callers decide by type."""

from __future__ import annotations


class ProjectionError(Exception):
    """The read models cannot follow the log; the message says why."""


class DivergedError(ProjectionError):
    """The log holds a decision its facts do not lead to under the rules given.

    Almost always the projector was given other rules than the engine ran with.
    """

    def __init__(self, source: str, position: int, decision_id: str) -> None:
        """Name the decision and where it is in the log."""
        super().__init__(
            f"{source}: the decision {decision_id!r} at log position {position} does not "
            "follow from the facts under these rules; give the rules the engine ran with "
            "(--config)"
        )
        self.source = source
        self.position = position
        self.decision_id = decision_id


class StaleProjectionError(ProjectionError):
    """Another projector moved the views past where this one started its page."""

    def __init__(self, expected: int, stored: int) -> None:
        """Name both positions."""
        super().__init__(
            f"the read models are at log position {stored}, not {expected}: another "
            "projector wrote them; this one starts again from there"
        )
        self.expected = expected
        self.stored = stored
