"""Read a JSONL file of events, line by line, keeping line numbers (counted from 1)."""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

from reconciler.ingest.source import InputRecord

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Lines validated per pydantic call: enough to spread its cost, few enough that a bad
# line, which sends its chunk through the one-by-one path, costs little.
CHUNK_LINES = 128


class UnreadableInputError(Exception):
    """The input file cannot be opened or read at all."""


def read_jsonl(path: Path) -> Iterator[InputRecord]:
    """Every non-blank line of `path` as an input record; bad lines become rejections."""
    for chunk in read_jsonl_chunks(path):
        yield from chunk


def read_jsonl_chunks(path: Path, size: int = CHUNK_LINES) -> Iterator[list[InputRecord]]:
    """The records of `read_jsonl`, in order, as lists of those from up to `size` lines."""
    source = str(path)
    try:
        handle = path.open("rb")
    except OSError as error:
        msg = f"{path}: cannot read: {error.strerror or error}"
        raise UnreadableInputError(msg) from error
    with handle:
        number = 0  # the line before the chunk
        try:
            while lines := list(islice(handle, size)):
                raws = [line.rstrip(b"\r\n") for line in lines]
                positions = [n for n, raw in enumerate(raws, number + 1) if raw.strip()]
                if len(positions) < len(raws):
                    raws = [raw for raw in raws if raw.strip()]
                number += len(lines)
                yield InputRecord.from_raws(source, positions, raws)
        except OSError as error:
            msg = f"{path}: read failed: {error.strerror or error}"
            raise UnreadableInputError(msg) from error
