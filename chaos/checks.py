"""The invariants checked after every round, from outside, as an auditor would.

Each reads only what the round left: the log in PostgreSQL (replayed through a fresh
decider, money checked after every fact), the commands topic in Kafka, and the
simulated providers' own accounts of what they issued and paid.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.remediation_support import (
    issued_serials,
    money_at_risk,
    refunds_paid,
    totals,
)

from reconciler.domain.decisions import DECISION_MODELS
from reconciler.jobs.handlers import result_event_id

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tests.remediation_support import Logged, Replay


@dataclass(frozen=True)
class Verdict:
    """One invariant: whether it held, and the evidence either way."""

    name: str
    held: bool
    detail: str


@dataclass(frozen=True)
class Leftovers:
    """What a round left behind, read after every process stopped."""

    log: Mapping[str, Sequence[Logged]]
    replays: Mapping[str, Replay]
    outside: set[str]
    published: Sequence[dict[str, Any]]
    psp: Mapping[str, Any]
    issuer: Mapping[str, Any]
    chain_ok: bool
    chain_detail: str
    dead_letters: int


def _facts_once(left: Leftovers) -> Verdict:
    ids = Counter(r.record_id for rs in left.log.values() for r in rs if r.kind == "fact")
    doubled = [event_id for event_id, seen in ids.items() if seen > 1]
    missing = left.outside - set(ids)
    detail = f"{len(ids)} facts logged, {len(missing)} outside facts missing, {len(doubled)} twice"
    return Verdict("no fact lost or doubled", not missing and not doubled, detail)


def _logged_commands(log: Mapping[str, Sequence[Logged]]) -> set[str]:
    """The command ids of every logged decision that carries a command."""
    found: set[str] = set()
    for records in log.values():
        for record in records:
            if record.kind != "decision":
                continue
            model = DECISION_MODELS[record.type].model_validate_json(record.payload)
            if (command := model.command()) is not None:
                found.add(command["command_id"])
    return found


def _commands_once(left: Leftovers) -> Verdict:
    logged = _logged_commands(left.log)
    jobs = {c for r in left.replays.values() for c in r.commands}  # issuance and refunds
    counts = Counter(command["command_id"] for command in left.published)
    doubled = [command_id for command_id, seen in counts.items() if seen > 1]
    unpublished = logged - set(counts)
    unlogged = set(counts) - logged  # on the topic, though no logged decision gave it
    facts = {fact_id for r in left.replays.values() for fact_id in r.fact_ids}
    unanswered = [c for c in jobs if result_event_id(c) not in facts]
    detail = (
        f"{len(logged)} commands, {len(unpublished)} not published, {len(unlogged)} published"
        f" unlogged, {len(doubled)} published twice, {len(unanswered)} unanswered"
    )
    held = not (unpublished or unlogged or doubled or unanswered)
    return Verdict("no command lost or doubled", held, detail)


def _refunds_once(left: Leftovers) -> Verdict:
    paid: dict[str, int] = left.psp["paid_out_by_refund"]
    per_payment = Counter(refund_id.split("/", 1)[0] for refund_id in paid)
    engine = refunds_paid(left.replays)
    twice = [payment for payment, seen in per_payment.items() if seen > 1]
    held = not twice and paid == engine and left.psp["paid_out_total"] == sum(engine.values())
    detail = (
        f"{len(paid)} refunds paid at the PSP (Rp {left.psp['paid_out_total']:,}),"
        f" {len(engine)} in the log, {len(twice)} payments refunded twice"
    )
    return Verdict("no refund paid twice", held, detail)


def _stamps_once(left: Leftovers) -> Verdict:
    issued: dict[str, list[str]] = left.issuer["issues_by_key"]
    serials = [serial for batch in issued.values() for serial in batch]
    held = issued == issued_serials(left.log) and len(serials) == len(set(serials))
    detail = f"{len(serials)} stamps issued under {len(issued)} commands, each logged once"
    return Verdict("no stamp issued twice", held, detail)


def _conserved(left: Leftovers) -> Verdict:
    unbalanced = [line for r in left.replays.values() for line in r.unbalanced]
    money = totals(left.replays)
    uncovered = [debit for debit in money_at_risk(left.replays) if not debit.escalations]
    held = (
        not unbalanced
        and money.balanced
        and money.refund_pending == 0
        and not uncovered
        and money.kept + money.refunded + money.at_risk == money.debited
    )
    detail = (
        f"debited Rp {money.debited:,} = kept {money.kept:,} + refunded {money.refunded:,}"
        f" + at risk {money.at_risk:,} (escalated); {len(unbalanced)} unbalanced moments,"
        f" {len(uncovered)} debits at risk without a case"
    )
    return Verdict("money conserved (SPEC rule 11)", held, detail)


def _rederived(left: Leftovers) -> Verdict:
    differing = [s for s, r in left.replays.items() if r.derived != r.recorded]
    decisions = sum(len(r.recorded) for r in left.replays.values())
    detail = f"{decisions} decisions replayed, {len(differing)} partitions differ"
    return Verdict("decisions re-derived by a replay", not differing and decisions > 0, detail)


def _chain(left: Leftovers) -> Verdict:
    chain = "chain verified" if left.chain_ok else f"chain broken: {left.chain_detail}"
    detail = f"{chain}; {left.dead_letters} dead letters"
    return Verdict(
        "hash chain intact, nothing dead-lettered", left.chain_ok and not left.dead_letters, detail
    )


CHECKS = (_facts_once, _commands_once, _refunds_once, _stamps_once, _conserved, _rederived, _chain)


def audit(left: Leftovers) -> list[Verdict]:
    """Every invariant's verdict on what a round left."""
    return [check(left) for check in CHECKS]
