"""What `reconciler replay` prints: one document, as JSON for machines or tables for people.

The tables are drawn from the document itself, so both say the same. Payloads of the
decisions that differ are shown decoded, with the fields on which they part named.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from rich.table import Table

from reconciler.report import rupiah

if TYPE_CHECKING:
    from rich.console import Console

    from reconciler.domain.accounting import Money
    from reconciler.domain.rules import Rules
    from reconciler.replay.compare import DecisionDifference
    from reconciler.replay.rederive import ReplayResult
    from reconciler.replay.whatif import Ending, WhatIf

FIGURES = ("debited", "kept", "refunded", "refund_pending", "at_risk")


def replay_document(
    result: ReplayResult,
    *,
    log: str,
    shadow: str | None,
    rules: Rules,
    what_if: tuple[WhatIf, Rules] | None = None,
) -> dict[str, Any]:
    """Everything a replay found, as plain JSON values.

    `what_if` is the comparison of endings with the rules the log was recorded with.
    """
    money = result.money
    document: dict[str, Any] = {
        "log": log,
        "as_of": result.as_of.describe(),
        "records_replayed": result.records_read,
        "last_position": result.last_position,
        "facts": result.facts,
        "decisions_recorded": result.decisions_recorded,
        "decisions_rederived": result.decisions_rederived,
        "clock": result.clock.isoformat() if result.clock is not None else None,
        "money": _money(money),
        "balanced": money.balanced,
        "open_escalations": result.open_escalations(),
        "shadow": shadow,
        "honest": result.honest,
        "differences": [_difference(difference) for difference in result.differences],
    }
    if what_if is not None:
        document["what_if"] = _what_if(result, *what_if, rules)
    return document


def print_document(document: dict[str, Any], console: Console, show: int) -> None:
    """The document as tables; at most `show` rows of each long list."""
    console.print(_overview(document))
    differences = document["differences"]
    if not differences:
        console.print(
            f"Every one of the {document['decisions_recorded']:,} recorded decisions follows "
            "from the facts, and the facts lead to no other."
        )
    else:
        console.print(
            f"[bold red]{len(differences):,} decisions differ[/] from what the facts give:"
        )
        console.print(_differences(differences[:show]))
        _more(console, len(differences), show)
    if "what_if" in document:
        _print_what_if(document["what_if"], console, show)


def _overview(document: dict[str, Any]) -> Table:
    table = Table(title=f"Replay of {document['log']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("as of", document["as_of"])
    table.add_row(
        "records replayed",
        f"{document['records_replayed']:,} (to position {document['last_position']:,})",
    )
    table.add_row("facts", f"{document['facts']:,}")
    table.add_row(
        "decisions",
        f"{document['decisions_recorded']:,} recorded,"
        f" {document['decisions_rederived']:,} re-derived",
    )
    table.add_row("engine clock", document["clock"] or "no tick yet")
    money = document["money"]
    for name in FIGURES:
        table.add_row(name.replace("_", " "), rupiah(money[name]))
    table.add_row("conservation", "holds" if document["balanced"] else "[red]BROKEN[/]")
    table.add_row("open escalations", f"{document['open_escalations']:,}")
    table.add_row("shadow", document["shadow"] or "none (in memory)")
    return table


def _differences(rows: list[dict[str, Any]]) -> Table:
    table = Table("kind", "position", "source", "decision", "type", "fields that differ")
    for row in rows:
        position = row["recorded_position"]
        table.add_row(
            row["kind"],
            "" if position is None else str(position),
            row["source"],
            row["decision_id"],
            row["type"],
            ", ".join(row["fields"]),
        )
    return table


def _print_what_if(what_if: dict[str, Any], console: Console, show: int) -> None:
    console.print()
    changed = ", ".join(
        f"{name}: {old} → {new}" for name, (old, new) in what_if["rules_changed"].items()
    )
    console.print(f"[bold]What if[/] {changed or 'the same rules'}:")
    money = Table(
        "", "recorded", "what if", "moved", title="Money at the end", title_justify="left"
    )
    for name in FIGURES:
        before, after = what_if["recorded_money"][name], what_if["what_if_money"][name]
        money.add_row(
            name.replace("_", " "), rupiah(before), rupiah(after), _signed(after - before)
        )
    console.print(money)
    decisions = Table(
        "decision", "recorded rules", "what if", title="Decisions taken", title_justify="left"
    )
    for name, (before, after) in sorted(what_if["decisions"].items()):
        decisions.add_row(name, f"{before:,}", f"{after:,}")
    console.print(decisions)
    orders = what_if["orders"]
    console.print(f"{len(orders):,} orders would have ended otherwise.")
    if orders:
        table = Table("order", "source", "status", "kept", "refunded", "at risk")
        for row in orders[:show]:
            before, after = row["recorded"] or {}, row["what_if"] or {}
            table.add_row(
                row["order_id"],
                row["source"],
                f"{before.get('status', '-')} → {after.get('status', '-')}",
                _pair(before, after, "kept"),
                _pair(before, after, "refunded"),
                _pair(before, after, "at_risk"),
            )
        console.print(table)
        _more(console, len(orders), show)


def _what_if(
    result: ReplayResult, what_if: WhatIf, recorded: Rules, other: Rules
) -> dict[str, Any]:
    old, new = recorded.model_dump(mode="json"), other.model_dump(mode="json")
    kinds = result.decision_types.keys() | result.alongside_types.keys()
    return {
        "rules_changed": {name: (old[name], new[name]) for name in old if old[name] != new[name]},
        "recorded_money": _money(what_if.recorded_money),
        "what_if_money": _money(what_if.what_if_money),
        "moved": _money(what_if.moved),
        "decisions": {
            kind: (result.decision_types[kind], result.alongside_types[kind])
            for kind in sorted(kinds)
        },
        "orders": [
            {
                "source": change.source,
                "order_id": change.order_id,
                "recorded": _ending(change.recorded),
                "what_if": _ending(change.what_if),
            }
            for change in what_if.changes
        ],
    }


def _ending(ending: Ending | None) -> dict[str, Any] | None:
    if ending is None:
        return None
    return {
        "status": ending.status,
        "delivered": ending.delivered,
        "cases": list(ending.cases),
        **_money(ending.money),
    }


def _difference(difference: DecisionDifference) -> dict[str, Any]:
    recorded = _decoded(difference.recorded)
    rederived = _decoded(difference.rederived)
    fields = []
    if isinstance(recorded, dict) and isinstance(rederived, dict):
        fields = sorted(
            name
            for name in recorded.keys() | rederived.keys()
            if recorded.get(name) != rederived.get(name)
        )
    return {
        "kind": difference.kind.value,
        "source": difference.source,
        "decision_id": difference.decision_id,
        "type": difference.type,
        "recorded_position": difference.recorded_position,
        "fields": fields,
        "recorded": recorded,
        "rederived": rederived,
    }


def _decoded(payload: bytes | None) -> Any:  # noqa: ANN401 - any JSON value
    if payload is None:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")


def _money(money: Money) -> dict[str, int]:
    return asdict(money)


def _signed(amount: int) -> str:
    return f"{'+' if amount > 0 else ''}{amount:,}" if amount else "0"


def _pair(before: dict[str, Any], after: dict[str, Any], name: str) -> str:
    old, new = before.get(name, 0), after.get(name, 0)
    return f"{old:,}" if old == new else f"{old:,} → {new:,}"


def _more(console: Console, total: int, shown: int) -> None:
    if total > shown:
        console.print(f"… and {total - shown:,} more (--format json lists them all)")
