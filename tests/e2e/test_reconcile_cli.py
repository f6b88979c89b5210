"""`reconciler reconcile`: SPEC's fixed offline interface, run as a real subprocess."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from tests.e2e.conftest import Cli, write_jsonl

if TYPE_CHECKING:
    from pathlib import Path

T0 = "2024-09-04T10:00:00+07:00"


def event(event_id: str, kind: str, occurred_at: str = T0, **fields: Any) -> dict[str, Any]:
    """One event in SPEC's envelope."""
    return {
        "event_id": event_id,
        "type": kind,
        "version": 1,
        "occurred_at": occurred_at,
        **fields,
    }


def order(event_id: str, order_id: str, at: str = T0, quantity: int = 1) -> dict[str, Any]:
    """An OrderPlaced at the standard price."""
    return event(
        event_id,
        "OrderPlaced",
        at,
        order_id=order_id,
        customer_ref="c-" + order_id,
        quantity=quantity,
        unit_price=10_000,
        unit_fee=2_500,
        total=quantity * 12_500,
        expires_at="2024-09-04T10:30:00+07:00",
        channel="web",
    )


def debit(event_id: str, payment_id: str, order_id: str | None, at: str = T0) -> dict[str, Any]:
    """A PaymentDebited of Rp 12,500 by QRIS."""
    return event(
        event_id,
        "PaymentDebited",
        at,
        payment_id=payment_id,
        order_id=order_id,
        amount=12_500,
        method="QRIS",
        payer_ref="payer",
        source="callback",
    )


def tick(event_id: str, at: str) -> dict[str, Any]:
    """A ClockTicked at `at`."""
    return event(event_id, "ClockTicked", at, at=at)


def minute_ticks(minutes: int) -> list[dict[str, Any]]:
    """A tick every minute from 10:01 for `minutes` minutes, as the live service would."""
    return [tick(f"t{m}", f"2024-09-04T10:{m:02d}:00+07:00") for m in range(1, minutes + 1)]


def reconcile(cli: Cli, path: Path, *args: str) -> dict[str, Any]:
    """Run reconcile with --format json and return the parsed report."""
    result = cli("reconcile", path, *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_spec_example_paid_not_issued_ends_refund_pending(cli: Cli, tmp_path: Path) -> None:
    """A paid order never issued: three attempts, then a full refund, as SPEC's example."""
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [tick("t0", T0), order("o1", "A1"), debit("d1", "P1", "A1"), *minute_ticks(15)],
    )
    report = reconcile(cli, path, "--until", "2024-09-04T12:00:00+07:00")
    assert report["clock"] == "2024-09-04T12:00:00+07:00"
    assert report["orders"] == [
        {
            "order_id": "A1",
            "status": "REFUND_PENDING",
            "quantity": 1,
            "delivered": 0,
            "debited": 12500,
            "kept": 0,
            "refunded": 0,
            "refund_pending": 12500,
            "at_risk": 0,
            "cases": ["PAID_NOT_ISSUED"],
        }
    ]
    assert [c["command_id"] for c in report["commands"]] == [
        "A1/issue/1",
        "A1/issue/2",
        "A1/issue/3",
        "P1/PAID_NOT_ISSUED/1",
    ]
    assert report["commands"][-1] == {
        "command_id": "P1/PAID_NOT_ISSUED/1",
        "type": "RefundPayment",
        "refund_id": "P1/PAID_NOT_ISSUED",
        "order_id": "A1",
        "payment_id": "P1",
        "amount": 12500,
        "reason": "PAID_NOT_ISSUED",
        "attempt": 1,
    }
    assert report["dead_letters"] == []
    assert report["totals"] == {
        "debited": 12500,
        "kept": 0,
        "refunded": 0,
        "refund_pending": 12500,
        "at_risk": 0,
    }


def test_unreadable_file_exits_2_naming_it(cli: Cli, tmp_path: Path) -> None:
    """A missing input file: exit status 2 and a message that names the file."""
    missing = tmp_path / "nope.jsonl"
    result = cli("reconcile", missing, "--format", "json")
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert result.stdout == ""


def test_directory_as_input_exits_2(cli: Cli, tmp_path: Path) -> None:
    """A folder given as the events file cannot be read: exit status 2."""
    result = cli("reconcile", tmp_path, "--format", "json")
    assert result.returncode == 2
    assert str(tmp_path) in result.stderr


def test_dead_letters_carry_line_numbers_and_reasons(cli: Cli, tmp_path: Path) -> None:
    """Bad lines are kept with their line (from 1) and a reason; the rest still counts."""
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            tick("t0", T0),
            "{broken",
            order("o1", "A1"),
            {**debit("d1", "P1", "A1"), "amount": "12500"},
            "",
            event("x1", "Teleported"),
            debit("d2", "P2", "A1"),
        ],
    )
    report = reconcile(cli, path)
    assert [(d["line"], d["reason"].split(":")[0]) for d in report["dead_letters"]] == [
        (2, "not JSON"),
        (4, "PaymentDebited"),
        (6, "field 'type'"),
    ]
    assert "field 'amount'" in report["dead_letters"][1]["reason"]
    assert report["orders"][0]["status"] == "PAID"
    assert report["totals"]["debited"] == 12500


def test_same_input_gives_byte_identical_output(cli: Cli, tmp_path: Path) -> None:
    """Two runs over the same file print exactly the same document."""
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [tick("t0", T0), order("o1", "A1"), debit("d1", "P1", "A1"), debit("d2", "P2", None)],
    )
    first = cli("reconcile", path, "--until", "2024-09-05T00:00:00+07:00", "--format", "json")
    second = cli("reconcile", path, "--until", "2024-09-05T00:00:00+07:00", "--format", "json")
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout


def test_without_until_the_final_tick_is_the_largest_occurred_at(cli: Cli, tmp_path: Path) -> None:
    """No --until: the clock ends at the largest occurred_at in the input."""
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            tick("t0", T0),
            order("o1", "A1"),
            debit("d1", "P1", "A1", at="2024-09-04T10:10:00+07:00"),
        ],
    )
    report = reconcile(cli, path)
    assert report["clock"] == "2024-09-04T10:10:00+07:00"
    assert [c["type"] for c in report["commands"]] == ["IssueStamps"]


def test_input_without_ticks_gets_ticks_from_its_data(cli: Cli, tmp_path: Path) -> None:
    """No ClockTicked at all: each event's occurred_at moves the clock before it."""
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            order("o1", "A1", at="2024-09-04T10:00:00+07:00"),
            debit("d1", "P1", "A1", at="2024-09-04T10:01:00+07:00"),
            debit("d9", "P9", None, at="2024-09-04T10:02:00+07:00"),
            order("o2", "B1", at="2024-09-04T10:06:00+07:00"),
            order("o3", "C1", at="2024-09-04T10:09:00+07:00"),
            order("o4", "D1", at="2024-09-04T10:33:00+07:00"),
        ],
    )
    report = reconcile(cli, path)
    assert report["clock"] == "2024-09-04T10:33:00+07:00"
    assert [c["command_id"] for c in report["commands"]] == [
        "A1/issue/1",  # at the 10:06 tick, the first at or after 10:01 + ISSUE_SLA
        "A1/issue/2",  # at 10:09, the first tick past attempt 1's timeout (10:08)
        "A1/issue/3",  # at 10:33, past attempt 2's (10:11); the orphan's window falls due too
        "P9/ORPHAN_DEBIT/1",
    ]


def test_config_file_changes_the_rules(cli: Cli, tmp_path: Path) -> None:
    """ISSUE_SLA from --config moves the issuance command earlier."""
    config = tmp_path / "rules.toml"
    config.write_text("ISSUE_SLA = 60\n", encoding="utf-8")
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [tick("t0", T0), order("o1", "A1"), debit("d1", "P1", "A1")],
    )
    with_config = reconcile(
        cli, path, "--config", str(config), "--until", "2024-09-04T10:01:00+07:00"
    )
    default = reconcile(cli, path, "--until", "2024-09-04T10:01:00+07:00")
    assert [c["type"] for c in with_config["commands"]] == ["IssueStamps"]
    assert default["commands"] == []


def test_bad_config_names_the_file_and_key(cli: Cli, tmp_path: Path) -> None:
    """An unknown setting is refused with exit 2, naming the file and the key."""
    config = tmp_path / "rules.toml"
    config.write_text("ISSUE_SLAA = 60\n", encoding="utf-8")
    path = write_jsonl(tmp_path / "events.jsonl", [tick("t0", T0)])
    result = cli("reconcile", path, "--config", config, "--format", "json")
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert "ISSUE_SLAA" in result.stderr


def test_until_without_offset_is_refused(cli: Cli, tmp_path: Path) -> None:
    """--until must carry an offset, like every timestamp in SPEC."""
    path = write_jsonl(tmp_path / "events.jsonl", [tick("t0", T0)])
    result = cli("reconcile", path, "--until", "2024-09-04T12:00:00", "--format", "json")
    assert result.returncode == 2
    assert "--until" in result.stderr


def test_table_format_shows_the_same_report(cli: Cli, tmp_path: Path) -> None:
    """--format table prints the orders, statuses, commands and dead letters for a person."""
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [tick("t0", T0), order("o1", "A1"), debit("d1", "P1", "A1"), *minute_ticks(15), "oops"],
    )
    result = cli("reconcile", path, "--until", "2024-09-04T12:00:00+07:00", "--format", "table")
    assert result.returncode == 0, result.stderr
    for expected in ("A1", "REFUND_PENDING", "P1/PAID_NOT_ISSUED/1", "Rp 12.500", "not JSON"):
        assert expected in result.stdout


def test_store_option_keeps_a_hash_chained_log(cli: Cli, tmp_path: Path) -> None:
    """--store sqlite:///PATH keeps facts and decisions; a repeated event_id is stored once."""
    database = tmp_path / "log.sqlite"
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [tick("t0", T0), order("o1", "A1"), order("o1", "A1"), debit("d1", "P1", "A1")],
    )
    result = cli("reconcile", path, "--store", f"sqlite:///{database}", "--format", "json")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("select name from sqlite_master")}
    assert tables, "the store wrote no tables"
    report = json.loads(result.stdout)
    assert report["orders"][0]["status"] == "PAID"


def test_store_that_already_holds_a_log_is_refused(cli: Cli, tmp_path: Path) -> None:
    """Reconciling into a used store would skip its facts as duplicates: exit 2 instead."""
    database = tmp_path / "log.sqlite"
    path = write_jsonl(tmp_path / "events.jsonl", [tick("t0", T0), order("o1", "A1")])
    assert cli("reconcile", path, "--store", f"sqlite:///{database}").returncode == 0
    again = cli("reconcile", path, "--store", f"sqlite:///{database}")
    assert again.returncode == 2
    assert "already holds" in again.stderr
