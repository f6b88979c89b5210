"""An append-only JSONL journal of final answers, so that a restarted simulator keeps them.

Without a journal, state is in memory: a restarted PSP forgets which refunds it paid and
would pay a repeated refund again, and a restarted issuer would count its stamps again.
With one, every final answer is written (and fsynced) before it is sent, so a restart
answers a repeated key as before and never pays twice. A torn last line (a crash in
mid-write) is ignored: its answer was never sent.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


class JournalError(ValueError):
    """The journal holds a damaged line before its end."""


class Journal:
    """Final answers by idempotency key, kept in a JSONL file when one is given."""

    def __init__(self, path: Path | None) -> None:
        """Open (and create) the journal at `path`; None keeps nothing on disk."""
        self._path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)

    def load(self) -> list[dict[str, Any]]:
        """Every record written so far, in order; a torn last line is cut off the file."""
        if self._path is None:
            return []
        data = self._path.read_bytes()
        complete, sep, tail = data.rpartition(b"\n")
        if tail:
            self._mend_tail(len(complete) + len(sep), tail)
            data = self._path.read_bytes()
        records: list[dict[str, Any]] = []
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                msg = f"{self._path}:{number}: damaged journal line"
                raise JournalError(msg) from exc
        return records

    def _mend_tail(self, offset: int, tail: bytes) -> None:
        """End a last line that lacks its newline: finish it if whole, else drop it."""
        assert self._path is not None  # noqa: S101 - only called with a file
        try:
            json.loads(tail)
        except json.JSONDecodeError:
            with self._path.open("r+b") as handle:
                handle.truncate(offset)
            return
        with self._path.open("ab") as handle:
            handle.write(b"\n")

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably (flush and fsync) before the caller answers."""
        if self._path is None:
            return
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
