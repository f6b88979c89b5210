"""Checks on what callers pass to the queries, and opaque cursors for keyset paging.

A cursor is the sort key of the last row of a page, with the name of the query it
belongs to, as URL-safe base64 JSON: opaque to callers, and refused by another query.
Anything a caller passes that does not fit raises InvalidQueryError (a ValueError), so
an HTTP layer can answer 400 with its message.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from enum import StrEnum

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100

Key = list[str | int]
E = TypeVar("E", bound="StrEnum")


class InvalidQueryError(ValueError):
    """A filter, limit or cursor the read models cannot take; the message says which."""


def checked_limit(limit: int) -> int:
    """A page size between 1 and MAX_LIMIT."""
    if not 1 <= limit <= MAX_LIMIT:
        msg = f"limit must be between 1 and {MAX_LIMIT}, got {limit}"
        raise InvalidQueryError(msg)
    return limit


def member(enum: type[E], value: str | None, name: str) -> E | None:
    """The enum member named by `value` (None stays None), or InvalidQueryError."""
    if value is None:
        return None
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(member.value for member in enum)
        msg = f"{name} must be one of {known}; got {value!r}"
        raise InvalidQueryError(msg) from None


def one_of(value: str | None, allowed: Collection[str], name: str) -> str | None:
    """`value` if it is one of `allowed` (None stays None), or InvalidQueryError."""
    if value is not None and value not in allowed:
        msg = f"{name} must be one of {', '.join(allowed)}; got {value!r}"
        raise InvalidQueryError(msg)
    return value


def encode_cursor(query: str, key: Sequence[str | int]) -> str:
    """The cursor after a row whose sort key is `key`."""
    text = json.dumps([query, *key], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(query: str, cursor: str | None, types: Sequence[type]) -> Key | None:
    """The sort key in a cursor of `query`, checked against the key's `types`."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error):
        decoded = None
    valid = (
        isinstance(decoded, list)
        and len(decoded) == len(types) + 1
        and decoded[0] == query
        and all(type(part) is kind for part, kind in zip(decoded[1:], types, strict=True))
    )
    if not valid or not isinstance(decoded, list):
        msg = f"not a cursor of this query ({query}): {cursor[:60]!r}"
        raise InvalidQueryError(msg)
    return decoded[1:]
