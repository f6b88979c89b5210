"""Hostile records for the ingest boundary, in families, from a seeded random source.

Each family is a plain function of a `random.Random`, so the fuzz campaign
(scripts/fuzz.py) draws hundreds of thousands cheaply, and hypothesis drives the very
same functions through `st.randoms()`. A hostile record says which field it spoiled,
when there is one, so a test can check that the rejection names it.
"""

from __future__ import annotations

import json
import random
import unicodedata
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

from hypothesis import strategies as st

from reconciler.ingest.validation import MAX_RECORD_BYTES


class Hostile(NamedTuple):
    """One record as a producer might send it, its family, and the field it spoiled."""

    family: str
    raw: bytes
    field: str | None = None


Family = Callable[[random.Random], Hostile]

T0 = "2024-09-04T10:00:00+07:00"
IDS = ("A1", "B2", "P1", "P2", "S1", "S2")


def _envelope(rng: random.Random, kind: str) -> dict[str, Any]:
    """SPEC's envelope with a small-world id, so some records repeat an event_id."""
    return {"event_id": f"e{rng.randrange(5000)}", "type": kind, "version": 1, "occurred_at": T0}


def _valid(rng: random.Random) -> dict[str, Any]:  # noqa: PLR0911 - one record per event type
    """A valid record of a random event type."""
    kind = rng.choice(EVENT_TYPES)
    record = _envelope(rng, kind)
    pick = rng.choice
    if kind == "OrderPlaced":
        quantity = rng.randint(1, 3)
        return record | {
            "order_id": pick(IDS),
            "customer_ref": "c",
            "quantity": quantity,
            "unit_price": 10_000,
            "unit_fee": 2_500,
            "total": quantity * 12_500,
            "expires_at": "2024-09-04T10:15:00+07:00",
            "channel": "web",
        }
    if kind == "OrderCancelled":
        return record | {"order_id": pick(IDS), "reason": "customer"}
    if kind == "PaymentDebited":
        return record | {
            "payment_id": pick(IDS),
            "order_id": pick((None, *IDS)),
            "amount": 12_500,
            "method": "QRIS",
            "payer_ref": "payer",
            "source": "callback",
        }
    if kind == "StampIssued":
        serials = rng.sample(IDS, rng.randint(1, 3))
        return record | {"order_id": pick(IDS), "serial_numbers": serials, "command_id": None}
    if kind == "StampIssuanceFailed":
        return record | {"order_id": pick(IDS), "reason": "down", "retryable": True}
    if kind == "RefundSucceeded":
        return record | {
            "refund_id": pick(IDS),
            "payment_id": pick(IDS),
            "amount": 12_500,
            "psp_refund_ref": "r",
        }
    if kind == "RefundFailed":
        return record | {
            "refund_id": pick(IDS),
            "payment_id": pick(IDS),
            "reason": "x",
            "retryable": False,
        }
    if kind == "ClockTicked":
        return record | {"at": T0}
    if kind == "EscalationResolved":
        return record | {
            "escalation_id": pick(IDS),
            "outcome": "NO_MONEY_AT_STAKE",
            "operator": "op",
            "note": "n",
        }
    return record | {"incident_id": pick(IDS), "operator": "op", "note": "n"}


EVENT_TYPES = (
    "OrderPlaced",
    "OrderCancelled",
    "PaymentDebited",
    "StampIssued",
    "StampIssuanceFailed",
    "RefundSucceeded",
    "RefundFailed",
    "ClockTicked",
    "EscalationResolved",
    "HeldRefundsApproved",
    "HeldRefundsRejected",
)


def _dump(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")


def valid(rng: random.Random) -> Hostile:
    """A valid record (the control family: it should be accepted)."""
    return Hostile("valid", _dump(_valid(rng)))


def malformed_json(rng: random.Random) -> Hostile:
    """A valid record truncated, with garbage, invalid UTF-8 or NUL bytes spliced in."""
    raw = bytearray(_dump(_valid(rng)))
    cut = rng.randrange(len(raw))
    how = rng.randrange(6)
    if how == 0:
        raw = raw[:cut]
    elif how == 1:
        raw[cut:cut] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif how == 2:
        raw[cut:cut] = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf8"))
    elif how == 3:
        raw[cut:cut] = b"\x00"
    elif how == 4:
        raw[cut] = rng.randrange(256)
    else:
        raw = bytearray(
            rng.choice((b"", b" ", b"null", b"[]", b"{}", b'"x"', b"{{}}", b"\xef\xbb\xbf{}"))
        )
    return Hostile("malformed_json", bytes(raw))


_WRONG: tuple[object, ...] = (
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "1",
    [],
    [1],
    {},
    {"a": 1},
    2**64,
    -(2**63) - 1,
    "x" * 129,
)


def wrong_types(rng: random.Random) -> Hostile:
    """A valid record with one field (any field of any type) replaced or removed."""
    record = _valid(rng)
    field = rng.choice(list(record))
    if rng.random() < 0.2:
        del record[field]
    else:
        record[field] = rng.choice(_WRONG)
    return Hostile("wrong_types", _dump(record), field)


def huge(rng: random.Random) -> Hostile:
    """Records past the size limit, or just under it with huge strings and lists."""
    record = _valid(rng)
    how = rng.randrange(4)
    if how == 0:
        record["payer_ref"] = "x" * (MAX_RECORD_BYTES + rng.randrange(1000))
        return Hostile("huge", _dump(record))
    if how == 1:
        record["event_id"] = "é" * (MAX_RECORD_BYTES // 2 - 500)  # two bytes each: just under
        return Hostile("huge", _dump(record), "event_id")
    if how == 2:
        record["extra"] = list(range(rng.randrange(50_000)))
        return Hostile("huge", _dump(record))
    serials = [f"S{n}" for n in range(rng.choice((1000, 1001, 20_000)))]
    record = _envelope(rng, "StampIssued") | {"order_id": "A1", "serial_numbers": serials}
    return Hostile("huge", _dump(record), "serial_numbers" if len(serials) > 1000 else None)


def deep_nesting(rng: random.Random) -> Hostile:
    """Arrays or objects nested thousands deep, alone or in a field of a valid record."""
    depth = rng.choice((50, 1000, 5000, 100_000))
    opener, closer = rng.choice(((b"[", b"]"), (b'{"a":', b"}")))
    nested = opener * depth + b"1" + closer * depth
    if rng.random() < 0.5:
        return Hostile("deep_nesting", nested)
    raw = _dump(_valid(rng))
    return Hostile("deep_nesting", raw[:-1] + b', "trace": ' + nested + b"}")


_ODD = (
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\ufeff",  # byte-order mark
    "\u0301",  # a combining accent with nothing to combine
    "👩‍👩‍👧",
    "🏳️‍🌈",
    "\U0010ffff",
    "\x00",
    "\x7f",
)


def odd_unicode(rng: random.Random) -> Hostile:
    """Ids with RTL marks, zero-width, NFC/NFD variants, emoji, or escaped surrogates."""
    record = _valid(rng)
    field = rng.choice([k for k, v in record.items() if isinstance(v, str)])
    how = rng.randrange(4)
    if how == 0:
        record[field] = rng.choice(_ODD) + str(record[field]) + rng.choice(_ODD)
        return Hostile("odd_unicode", _dump(record))
    if how == 1:
        form: Literal["NFC", "NFD", "NFKC", "NFKD"] = rng.choice(("NFC", "NFD", "NFKC", "NFKD"))
        record[field] = unicodedata.normalize(form, "Café Ω Å ﬁ " + str(record[field]))
        return Hostile("odd_unicode", _dump(record))
    if how == 2:
        record[field] = rng.choice(("\ud800", "\udfff", "a\udc80b", "\ud83d"))
        raw = json.dumps(record).encode()  # ascii escapes: `\ud800` stays six characters
        return Hostile("odd_unicode", raw, field)
    raw = _dump(record)
    if rng.random() < 0.5:
        return Hostile("odd_unicode", raw.decode().encode(rng.choice(("utf-16", "utf-32"))))
    return Hostile("odd_unicode", b"\xef\xbb\xbf" + raw)


_NUMBERS = (
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1" + b"0" * 400,
    b"9" * 5000,
    b"1e308",
    b"1e309",
    b"-1e999",
    b"1E+99999",
    b"4.9e-324",
    b"1e-99999",
    b"-0",
    b"-0.0",
    b"12500.0",
    b"1.25e4",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"0x10",
    b"01",
    b"+1",
)


def big_numbers(rng: random.Random) -> Hostile:
    """A field (numeric or not) set to an integer past 64 bits, a huge float or exponent."""
    record = _valid(rng)
    field = rng.choice(list(record))
    record[field] = "@@NUMBER@@"
    number = rng.choice(_NUMBERS)
    return Hostile("big_numbers", _dump(record).replace(b'"@@NUMBER@@"', number), field)


_TIMES = (
    "9999-12-31T23:59:59+00:00",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T00:00:00Z",
    "3000-01-01T00:00:00+00:00",
    "2999-12-31T23:59:59+00:00",
    "0001-01-01T00:00:00+00:00",
    "0001-01-01T00:00:00+23:59",
    "1969-12-31T23:59:59+00:00",
    "1970-01-01T00:00:00-01:00",
    "2024-09-04T10:00:00",
    "2024-09-04",
    "2024-09-04T10:00:00+24:00",
    "2024-09-04T10:00:00+23:59:59.999999",
    "2024-09-04T10:00:00-00:00",
    "2024-09-04T10:00:00+0700",
    "2024-09-04T10:00:00+07",
    "2024-09-04T10:00:00.123456789+07:00",
    "2024-09-04T23:59:60+00:00",
    "2024-02-30T10:00:00+07:00",
    "2024-W36-3T10:00:00+07:00",
    "2024-09-04 10:00:00+07:00",
    "+12024-09-04T10:00:00+07:00",
    "2024-09-04T10:00:00+07:00[Asia/Jakarta]",
    "",
)


def timestamps(rng: random.Random) -> Hostile:
    """A timestamp field far in the future or past, without offset, or with an odd one."""
    record = _valid(rng)
    field = rng.choice([k for k in ("occurred_at", "at", "expires_at") if k in record])
    record[field] = rng.choice(_TIMES)
    return Hostile("timestamps", _dump(record), field)


FAMILIES: dict[str, Family] = {
    family.__name__: family
    for family in (
        valid,
        malformed_json,
        wrong_types,
        huge,
        deep_nesting,
        odd_unicode,
        big_numbers,
        timestamps,
    )
}


def hostile(name: str | None = None) -> st.SearchStrategy[Hostile]:
    """Records of one family (or of any), drawn by hypothesis through a seeded Random."""
    names = [name] if name is not None else list(FAMILIES)
    return st.builds(
        lambda family, rng: FAMILIES[family](rng),
        st.sampled_from(names),
        st.randoms(use_true_random=False),
    )
