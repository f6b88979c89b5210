"""The finance model in memory: one shard per source, fed the log's records in order.

Applying a record changes the model and notes in a `Changes` what the read models must
write. The model is a function of the log prefix it was fed, nothing else: after a
restart the projector feeds it the records up to its stored position again, and it is
the same model that wrote them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, TypeAdapter

from reconciler.domain.decisions import AnyDecision
from reconciler.ingest.validation import Rejected, parse_record
from reconciler.projections.errors import ProjectionError
from reconciler.projections.shard import Shard

if TYPE_CHECKING:
    from reconciler.domain.rules import Rules
    from reconciler.projections.changes import Changes
    from reconciler.store import StoredRecord

_DECISION: TypeAdapter[AnyDecision] = TypeAdapter(
    Annotated[AnyDecision, Field(discriminator="type")]
)


class FinanceModel:
    """Every source's shard, under the rules the engine runs with."""

    def __init__(self, rules: Rules) -> None:
        """Start with no shard; a source's first record makes its shard."""
        self.rules = rules
        self._shards: dict[str, Shard] = {}

    def shard(self, source: str) -> Shard:
        """The shard of one source (empty if it has seen nothing)."""
        shard = self._shards.get(source)
        if shard is None:
            shard = self._shards[source] = Shard(source, self.rules)
        return shard

    def apply(self, record: StoredRecord, changes: Changes) -> None:
        """Apply one log record to its shard."""
        shard = self.shard(record.source)
        if record.kind == "fact":
            fact = parse_record(record.payload)
            if isinstance(fact, Rejected):
                msg = f"logged fact {record.record_id} no longer validates: {fact.reason}"
                raise ProjectionError(msg)
            shard.apply_fact(record.position, fact, changes)
        else:
            decision = _DECISION.validate_json(record.payload)
            shard.apply_decision(record.position, record.record_id, decision, changes)
