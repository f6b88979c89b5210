"""Personal references (`customer_ref`, `payer_ref`) never reach the log unless configured.

The log is captured as the entry points write it: `reconciler.logging.processors` into a
buffer (without caching loggers, so other tests' `capture_logs` still works).
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
import structlog

from reconciler.api import ApiSettings, create_api
from reconciler.domain.rules import Rules
from reconciler.engine import Engine
from reconciler.ingest.source import InputRecord
from reconciler.logging import (
    PERSONAL_REFS_ENV,
    REDACTED,
    personal_refs_allowed,
    processors,
    redact_text,
)
from reconciler.store import open_store
from tests.integration.test_api_actions import AS_VIEWER, TOKENS
from tests.unit.test_jobs_runner import REFUND, _record, _runner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from reconciler.store import LogStore

CUSTOMER = "CUST-SECRET-7f3a"
PAYER = "PAYER-SECRET-91bc"
SECRETS = (CUSTOMER, PAYER)
AT = "2024-09-04T05:00:00+07:00"


def _line(**fields: Any) -> bytes:
    """One JSONL record of the log, as a producer sends it."""
    return json.dumps({"version": 1, "occurred_at": AT, **fields}).encode()


ORDER = _line(
    event_id="e1",
    type="OrderPlaced",
    order_id="A1",
    customer_ref=CUSTOMER,
    quantity=1,
    unit_price=10_000,
    unit_fee=2_500,
    total=12_500,
    expires_at="2024-09-04T06:00:00+07:00",
    channel="web",
)
DEBIT = _line(
    event_id="e2",
    type="PaymentDebited",
    payment_id="P1",
    order_id="A1",
    amount=12_500,
    method="QRIS",
    payer_ref=PAYER,
    source="callback",
)
# Dead-lettered: a wrong total, a negative amount, an unknown type, broken JSON.
BAD = [
    ORDER.replace(b'"e1"', b'"e3"').replace(b"12500", b"99"),
    DEBIT.replace(b'"e2"', b'"e4"').replace(b"12500", b"-5"),
    _line(event_id="e5", type="Gossip", customer_ref=CUSTOMER, payer_ref=PAYER),
    b'{"event_id": "e6", "payer_ref": "' + PAYER.encode() + b'", ',
]


@pytest.fixture
def logged() -> Iterator[Callable[[bool], io.StringIO]]:
    """Route structlog through the production chain into a buffer; restore it after."""
    saved = structlog.get_config()

    def configure(personal_refs: bool) -> io.StringIO:  # noqa: FBT001 - the switch itself
        buffer = io.StringIO()
        structlog.configure(
            processors=processors(json=True, personal_refs=personal_refs),
            logger_factory=structlog.WriteLoggerFactory(file=buffer),
            cache_logger_on_first_use=False,
        )
        return buffer

    try:
        yield configure
    finally:
        structlog.configure(**saved)


def _reconcile_and_read(store: LogStore) -> None:
    """Reconcile the good and bad records, then read them back through the API."""
    records = [
        InputRecord.from_raw("in.jsonl", n, raw) for n, raw in enumerate([ORDER, DEBIT, *BAD])
    ]
    Engine(Rules(), store).process(records)
    app = create_api(ApiSettings(tokens=TOKENS), store, Rules())

    async def read() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            letters = await client.get("/api/v1/dead-letters", headers=AS_VIEWER)
            assert len(letters.json()["items"]) == len(BAD)
            for path in ("/api/v1/orders/A1", "/api/v1/cases/open", f"/api/v1/orders/{CUSTOMER}"):
                await client.get(path, headers=AS_VIEWER)

    anyio.run(read)


def _run_invalid_commands() -> None:
    """Commands the jobs refuse, carrying the references (a validation error repeats them)."""
    carrying = {**REFUND, "payer_ref": PAYER, "customer_ref": CUSTOMER}
    del carrying["amount"]  # a missing field: the error repeats the whole command
    runner, _, _, _ = _runner([[_record(0, carrying), _record(1, {"payer_ref": PAYER})]])
    assert runner.poll_once() == 2


def test_real_paths_log_no_personal_reference(
    logged: Callable[[bool], io.StringIO],
) -> None:
    """Engine with dead letters, API reads, refused job commands: the refs are not logged."""
    buffer = logged(False)  # noqa: FBT003 - the switch under test
    store = open_store("sqlite://:memory:")
    try:
        _reconcile_and_read(store)
    finally:
        store.close()
    _run_invalid_commands()
    text = buffer.getvalue()
    assert '"command_invalid"' in text
    assert '"api_request"' in text
    assert REDACTED in text  # the refused command's error did carry a reference
    for secret in SECRETS:
        assert secret not in text


def test_the_switch_lets_the_references_through(logged: Callable[[bool], io.StringIO]) -> None:
    """With personal refs allowed, the refused command's error is logged as pydantic wrote it."""
    buffer = logged(True)  # noqa: FBT003 - the switch under test
    _run_invalid_commands()
    assert CUSTOMER in buffer.getvalue()


def test_keys_nested_values_and_tracebacks_are_redacted(
    logged: Callable[[bool], io.StringIO],
) -> None:
    """A ref as a key, inside a dict or list, or in an exception's text is replaced."""
    buffer = logged(False)  # noqa: FBT003 - the switch under test
    log = structlog.get_logger("test")
    log.info("fact", payer_ref=PAYER, record={"customer_ref": CUSTOMER}, raw=[DEBIT.decode()])
    try:
        message = f"bad record {{'customer_ref': '{CUSTOMER}', 'x': 1}}"
        raise ValueError(message)  # noqa: TRY301 - an exception as a caller would log it
    except ValueError:
        log.exception("failed")
    text = buffer.getvalue()
    assert text.count(REDACTED) >= 4
    for secret in SECRETS:
        assert secret not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'payer_ref': 'P X'}", "{'payer_ref': [redacted]}"),
        ('{"customer_ref": "a\\"b", "n": 1}', '{"customer_ref": [redacted], "n": 1}'),
        ("payer_ref=abc, amount=5", "payer_ref=[redacted], amount=5"),
        ('{\\"payer_ref\\": \\"abc\\"}', '{\\"payer_ref\\": [redacted]}'),
        ("my_payer_ref_count=3", "my_payer_ref_count=3"),
        (
            "amount [type=missing, input_value={'a': 1, ...ef': 'X'}, input_type=dict]",
            "amount [type=missing, input_value=[redacted], input_type=dict]",
        ),
        ("[type=int_parsing, input_value='lots', input_type=str]", "input_value='lots'"),
    ],
)
def test_redact_text_replaces_the_value_after_the_name(text: str, expected: str) -> None:
    """Quoted values, bare words, escaped JSON and whole record inputs; other text untouched."""
    assert expected in redact_text(text)


def test_the_setting_is_read_from_the_environment() -> None:
    """RECONCILER_LOG_PERSONAL_REFS=true allows the refs; unset or false does not."""
    assert personal_refs_allowed({PERSONAL_REFS_ENV: "true"})
    assert personal_refs_allowed({PERSONAL_REFS_ENV: " 1 "})
    assert not personal_refs_allowed({PERSONAL_REFS_ENV: "false"})
    assert not personal_refs_allowed({})
