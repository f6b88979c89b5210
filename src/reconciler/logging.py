"""structlog set up once by the entry points: key/value events, JSON lines for machines.

Personal references (`customer_ref` of an order, `payer_ref` of a debit) are kept out of
the log unless `RECONCILER_LOG_PERSONAL_REFS=true`: `redact_personal_refs` replaces the
value of a key of that name, and the value written after that name in any text (an
exception's message or traceback, a validation error that repeats its input, a raw
record), whether as `'payer_ref': 'X'`, `"payer_ref": "X"` or `payer_ref=X`; and the
whole record a validation error repeats (`input_value={...}`), where pydantic may have
cut the name off.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any

import structlog

PERSONAL_REFS_ENV = "RECONCILER_LOG_PERSONAL_REFS"
PERSONAL_KEYS = frozenset({"customer_ref", "payer_ref"})
REDACTED = "[redacted]"
_TRUE = frozenset({"1", "true", "yes", "on"})
# The name, an optional closing quote, `:` or `=`, then a quoted value or a bare word.
# A quoted value may hold escaped quotes; a bare one ends at a separator.
_IN_TEXT = re.compile(
    r"""(?P<key>\b(?:customer_ref|payer_ref)\b\\?['"]?\s*[:=]\s*)"""
    r"""(?P<value>\\".*?\\"|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;)}\]'"\\]+)"""
)

# A validation error repeats a whole record as `input_value={...}`, shortened in its
# middle, so the name of a reference in it may be cut off: such a value goes whole.
_RECORD_INPUT = re.compile(r"input_value=(?:\{.*?\}|\[.*?\])(?=, input_type=)", re.DOTALL)


def personal_refs_allowed(environ: dict[str, str] | None = None) -> bool:
    """Whether the environment asks for personal references to be logged as they are."""
    value = (os.environ if environ is None else environ).get(PERSONAL_REFS_ENV, "")
    return value.strip().lower() in _TRUE


def redact_text(text: str) -> str:
    """`text` with the value after every reference's name, and every record input, replaced."""
    text = _RECORD_INPUT.sub("input_value=" + REDACTED, text)
    return _IN_TEXT.sub(lambda match: match["key"] + REDACTED, text)


def _redact(value: Any) -> Any:  # noqa: ANN401 - any logged value
    """`value` with personal references replaced, looking into strings, dicts and lists."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if key in PERSONAL_KEYS else _redact(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def redact_personal_refs(
    _logger: Any,  # noqa: ANN401 - structlog's processor signature
    _method: str,
    event_dict: structlog.typing.EventDict,
) -> structlog.typing.EventDict:
    """A structlog processor: no `customer_ref` / `payer_ref` value leaves in an event."""
    return {
        key: REDACTED if key in PERSONAL_KEYS else _redact(value)
        for key, value in event_dict.items()
    }


def processors(*, json: bool = True, personal_refs: bool = False) -> list[Any]:
    """The processor chain: redaction runs after tracebacks are rendered into text."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if not personal_refs:
        chain.append(redact_personal_refs)
    return [*chain, renderer]


def configure_logging(
    *, json: bool = True, level: int = logging.INFO, personal_refs: bool | None = None
) -> None:
    """Log key/value events to stderr, as JSON lines or for a console.

    `personal_refs` (default: `RECONCILER_LOG_PERSONAL_REFS`) lets personal references
    through; otherwise they are redacted.
    """
    allowed = personal_refs_allowed() if personal_refs is None else personal_refs
    structlog.configure(
        processors=processors(json=json, personal_refs=allowed),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
