"""The ingest boundary: every bad record is rejected with a reason naming the field."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given

from reconciler.domain.events import PaymentDebited, StampIssued
from reconciler.ingest.validation import (
    MAX_RECORD_BYTES,
    Rejected,
    parse_record,
    validate_object,
)
from tests.builders import DEBIT_RECORD as DEBIT
from tests.strategies import logs

if TYPE_CHECKING:
    from tests.builders import Log

ORDER: dict[str, Any] = {
    "event_id": "e2",
    "type": "OrderPlaced",
    "version": 1,
    "occurred_at": "2024-09-04T10:00:00+07:00",
    "order_id": "A1",
    "customer_ref": "c",
    "quantity": 2,
    "unit_price": 10000,
    "unit_fee": 2500,
    "total": 25000,
    "expires_at": "2024-09-04T10:15:00+07:00",
    "channel": "web",
}


def reason(record: dict[str, Any] | str) -> str:
    """The rejection reason for a record, failing if it was accepted."""
    raw = record if isinstance(record, str) else json.dumps(record)
    result = parse_record(raw)
    assert isinstance(result, Rejected), result
    return result.reason


def test_valid_debit_is_accepted() -> None:
    """A record following the contract becomes its fact model."""
    assert isinstance(parse_record(json.dumps(DEBIT)), PaymentDebited)


def test_unknown_extra_fields_are_accepted_and_not_passed_on() -> None:
    """Fields beyond the contract do not reject the record (the raw record keeps them)."""
    fact = parse_record(json.dumps(DEBIT | {"psp_trace": "x-1"}))
    assert isinstance(fact, PaymentDebited)
    assert "psp_trace" not in fact.model_dump()


def test_version_written_as_1_0_is_version_1_with_or_without_extra_fields() -> None:
    """JSON Schema's integer: `1.0` reads as 1 on the one-pass and the field-by-field path."""
    for record in (DEBIT | {"version": 1.0}, DEBIT | {"version": 1.0, "psp_trace": "x"}):
        fact = parse_record(json.dumps(record))
        assert isinstance(fact, PaymentDebited)
        assert fact.version == 1
    assert reason(DEBIT | {"version": 1.5, "psp_trace": "x"}) == (
        "field 'version': expected an integer, got float"
    )


def test_json_array_of_serials_is_accepted() -> None:
    """`serial_numbers` as a JSON array validates (kept as a tuple in the frozen model)."""
    record = {
        "event_id": "e3",
        "type": "StampIssued",
        "version": 1,
        "occurred_at": "2024-09-04T10:00:00+07:00",
        "order_id": "A1",
        "serial_numbers": ["S1", "S2"],
        "command_id": None,
    }
    fact = parse_record(json.dumps(record))
    assert isinstance(fact, StampIssued)
    assert fact.serial_numbers == ("S1", "S2")


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object but list"),
        ({k: v for k, v in DEBIT.items() if k != "type"}, "field 'type': missing"),
        ({k: v for k, v in DEBIT.items() if k != "version"}, "field 'version': missing"),
        (DEBIT | {"type": "PaymentTeleported"}, "unknown type 'PaymentTeleported'"),
        (DEBIT | {"version": 2}, "unsupported version 2 of PaymentDebited"),
        (DEBIT | {"version": "1"}, "field 'version': expected an integer"),
        (DEBIT | {"amount": "12500"}, "field 'amount': Input should be a valid integer"),
        (DEBIT | {"amount": 12500.0}, "field 'amount': Input should be a valid integer"),
        (DEBIT | {"amount": True}, "field 'amount': Input should be a valid integer"),
        (DEBIT | {"amount": -5}, "field 'amount': Input should be greater than 0"),
        (DEBIT | {"amount": 2**70}, "field 'amount': Input should be less than or equal"),
        (DEBIT | {"method": "CASH"}, "field 'method'"),
        (DEBIT | {"event_id": ""}, "field 'event_id'"),
        (DEBIT | {"event_id": "x" * 129}, "field 'event_id'"),
        ({k: v for k, v in DEBIT.items() if k != "payer_ref"}, "field 'payer_ref': Field required"),
        (DEBIT | {"occurred_at": "2024-09-04T10:00:00"}, "must carry a UTC offset"),
        (DEBIT | {"occurred_at": 1725418800}, "must be an ISO 8601 string"),
        (DEBIT | {"occurred_at": "yesterday"}, "not an ISO 8601 timestamp"),
        (ORDER | {"total": 24000}, "total 24000 != quantity*(unit_price+unit_fee) = 25000"),
        (ORDER | {"quantity": 101}, "field 'quantity'"),
        (ORDER | {"unit_price": 0}, "field 'unit_price'"),
    ],
)
def test_bad_records_are_rejected_with_a_reason_naming_the_field(
    record: dict[str, Any] | str, expected: str
) -> None:
    """Each kind of bad input is rejected, and the reason says what and where."""
    assert expected in reason(record)


def test_duplicate_serials_in_one_delivery_are_rejected() -> None:
    """A StampIssued listing a serial twice is not a valid delivery."""
    record = {
        "event_id": "e3",
        "type": "StampIssued",
        "version": 1,
        "occurred_at": "2024-09-04T10:00:00+07:00",
        "order_id": "A1",
        "serial_numbers": ["S1", "S1"],
        "command_id": None,
    }
    assert "serial_numbers must be unique" in reason(record)


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    """Nesting deep enough to exhaust the decoder's recursion is a rejection."""
    assert "not JSON" in reason("[" * 100_000 + "]" * 100_000)


def test_oversized_record_is_rejected_before_decoding() -> None:
    """A record larger than the limit is rejected by size."""
    huge = json.dumps(DEBIT | {"payer_ref": "x" * MAX_RECORD_BYTES})
    assert "more than the" in reason(huge)


@given(logs())
def test_fast_and_precise_paths_agree_on_valid_records(log: Log) -> None:
    """Every valid fact parses to itself by the one-pass path and by the field-by-field path."""
    for fact in log.facts:
        raw = fact.model_dump_json()
        assert parse_record(raw) == fact
        assert validate_object(json.loads(raw)) == fact
        with_extra = json.dumps(json.loads(raw) | {"producer_trace": "abc"})
        assert parse_record(with_extra) == fact
