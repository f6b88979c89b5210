"""Read a JSONL file of events, line by line, keeping line numbers (counted from 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.ingest.source import InputRecord

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class UnreadableInputError(Exception):
    """The input file cannot be opened or read at all."""


def read_jsonl(path: Path) -> Iterator[InputRecord]:
    """Every non-blank line of `path` as an input record; bad lines become rejections."""
    source = str(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        msg = f"{path}: cannot read: {error.strerror or error}"
        raise UnreadableInputError(msg) from error
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                raw = line.rstrip(b"\r\n")
                if raw.strip():
                    yield InputRecord.from_raw(source, number, raw)
        except OSError as error:
            msg = f"{path}: read failed: {error.strerror or error}"
            raise UnreadableInputError(msg) from error
