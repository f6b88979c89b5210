"""Small shared pieces: building facts cheaply, numbering them, and stamp serial numbers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from reconciler.domain.events import Fact

if TYPE_CHECKING:
    from datetime import datetime

FactT = TypeVar("FactT", bound=Fact)


def build(model: type[FactT], **fields: Any) -> FactT:  # noqa: ANN401 - any field of any fact
    """A fact of this type, version 1, without validation.

    The demo makes hundreds of thousands of facts it knows to be valid; validating each
    would cost more than the rest of the simulation. The tests validate every line.
    """
    values: dict[str, Any] = {"version": 1, "type": model.__name__, **fields}
    return cast("FactT", model.model_construct(**values))


class Arrival(NamedTuple):
    """A fact and when it reaches the engine, which may be hours after it occurred."""

    arrives_at: datetime
    fact: Fact


class Numbering:
    """Readable, deterministic ids from a counter: `<prefix>-000001`, `<prefix>-000002`, ..."""

    def __init__(self, prefix: str) -> None:
        """Start counting at 1 under this prefix."""
        self._prefix = prefix
        self._count = 0

    def next(self) -> str:
        """The next id."""
        self._count += 1
        return f"{self._prefix}-{self._count:06d}"


class SerialNumbers:
    """The serial numbers of the stamps the portal delivers itself."""

    def __init__(self, prefix: str) -> None:
        """Number serials under this prefix, from 1."""
        self._prefix = prefix
        self._count = 0

    def take(self, quantity: int) -> tuple[str, ...]:
        """Fresh serial numbers, never handed out before."""
        start = self._count
        self._count += quantity
        return tuple(f"{self._prefix}{n:010d}" for n in range(start + 1, self._count + 1))
