"""Turn one producer record into a validated fact, or a rejection that says why.

Bad input is data: the caller keeps every rejection with its reason. Fields beyond the
contract are kept in the raw record and not passed to the engine's models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from reconciler.domain.events import FACT_MODELS, AnyFact, Fact

if TYPE_CHECKING:
    from collections.abc import Sequence

MAX_RECORD_BYTES = 1 << 20
_KNOWN_TYPES = sorted({name for name, _ in FACT_MODELS})
_DISCRIMINATED = Annotated[AnyFact, Field(discriminator="type")]
_ANY_FACT: TypeAdapter[AnyFact] = TypeAdapter(_DISCRIMINATED)
_FACT_ARRAY: TypeAdapter[list[AnyFact]] = TypeAdapter(list[_DISCRIMINATED])
# Joins records into one JSON array. A JSON string cannot hold a raw newline, so no
# string of one record can run on into the next.
_SEPARATOR = b"\n,"
_OPEN, _CLOSE = ord("{"), ord("}")
_SHORTEST = len(b"{}")
# Looked up once: pydantic's class-level `model_fields` is slow to reach per record.
_FIELDS = {key: frozenset(model.model_fields) for key, model in FACT_MODELS.items()}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a valid fact, and the reason, naming the field."""

    reason: str


def parse_record(raw: bytes | str) -> Fact | Rejected:
    """Decode and validate one record; never raises on bad input."""
    if len(raw) > MAX_RECORD_BYTES:
        return Rejected(f"record is {len(raw)} bytes, more than the {MAX_RECORD_BYTES} allowed")
    try:
        # Fast path for the common case, a valid record with no extra fields: parsed and
        # validated in one pass by pydantic-core. Anything else takes the path below,
        # which says precisely what is wrong.
        return _ANY_FACT.validate_json(raw, strict=True)
    except ValueError:
        pass
    try:
        # UTF-8 and nothing else, as SPEC's JSON: json.loads alone would take UTF-16 or
        # a byte-order mark, and readers of the stored bytes decode them as UTF-8.
        data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, RecursionError) as error:
        return Rejected(f"not JSON: {_short(str(error))}")
    if not isinstance(data, dict):
        return Rejected(f"not a JSON object but {type(data).__name__}")
    return validate_object(data)


def parse_records(raws: Sequence[bytes]) -> list[Fact | Rejected]:
    """`parse_record` of each record, in order; valid ones are validated many per call."""
    together = _validate_together(raws) if len(raws) > 1 else None
    if together is not None:
        return together
    return [parse_record(raw) for raw in raws]


def _validate_together(raws: Sequence[bytes]) -> list[Fact | Rejected] | None:
    """The facts of `raws` validated as one JSON array; None if any record needs a closer look.

    The array's elements are the records exactly when each record is one object whose
    first byte is `{`, whose last byte is `}`, with no other brace anywhere (a brace in
    a string just sends the records the slow way). Strings end before each separator's
    newline, so both braces are JSON's own, and the `}` can only close that `{`.
    """
    lengths = list(map(len, raws))
    if min(lengths) < _SHORTEST or max(lengths) > MAX_RECORD_BYTES:
        return None
    if not all(raw[0] == _OPEN and raw[-1] == _CLOSE for raw in raws):
        return None
    array = b"[" + _SEPARATOR.join(raws) + b"]"
    count = len(raws)
    if array.count(b"{") != count or array.count(b"}") != count:
        return None
    try:
        # The first record alone, first: a producer whose every record carries an extra
        # field fails here, cheaply, rather than in the whole array.
        _ANY_FACT.validate_json(raws[0], strict=True)
        facts: list[Fact | Rejected] = list(_FACT_ARRAY.validate_json(array, strict=True))
    except (ValueError, RecursionError):
        return None  # at least one record is not a valid fact: each says why on its own
    return facts if len(facts) == count else None


def validate_object(data: dict[str, Any]) -> Fact | Rejected:  # noqa: PLR0911 - one exit per reason
    """Validate a decoded JSON object against the model of its type and version."""
    kind = data.get("type")
    if kind is None:
        return Rejected("field 'type': missing")
    if not isinstance(kind, str):
        return Rejected(f"field 'type': expected a string, got {type(kind).__name__}")
    if kind not in _KNOWN_TYPES:
        return Rejected(f"field 'type': unknown type {_short(kind)!r}; known: {_KNOWN_TYPES}")
    version = data.get("version")
    if version is None:
        return Rejected("field 'version': missing")
    if type(version) is float and version.is_integer():
        # JSON Schema's integer, as events/*.json publish it and the one-pass path reads it.
        version = int(version)
        data = {**data, "version": version}
    if type(version) is not int:
        return Rejected(f"field 'version': expected an integer, got {type(version).__name__}")
    model = FACT_MODELS.get((kind, version))
    fields = _FIELDS.get((kind, version))
    if model is None or fields is None:
        return Rejected(f"field 'version': unsupported version {version} of {kind}")
    known = data if fields.issuperset(data) else {k: v for k, v in data.items() if k in fields}
    try:
        return model.model_validate(known)
    except ValidationError as error:
        return Rejected(f"{kind}: {describe(error)}")


def describe(error: ValidationError) -> str:
    """Name each failing field and why, briefly, in a stable order."""
    parts = []
    for detail in error.errors(include_url=False, include_input=False):
        location = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"field '{location}': {message}" if location else message)
    return "; ".join(parts)


def _short(text: str, limit: int = 120) -> str:
    """Keep reasons readable when the input is huge."""
    return text if len(text) <= limit else text[:limit] + "..."
