"""The one progress line every benchmark keeps on stderr while it runs."""

from __future__ import annotations

import sys


def progress(text: str) -> None:
    """Overwrite the progress line on stderr."""
    sys.stderr.write(f"\r\x1b[K{text}")
    sys.stderr.flush()
