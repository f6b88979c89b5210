"""Retrying transient failures: exponential backoff with jitter, a cap, and a deadline.

Whether a failure is retried is decided by its type alone: a `TransientError` (or a
subclass) is, anything else is not and passes straight through. The clients raise
`TransientError` for what may pass by itself (5xx, timeouts, dropped connections,
answers they cannot read) and return typed answers for everything the provider decided.

The random source, the sleep and the clock are injectable, so tests run instantly and
reproducibly.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


class TransientError(Exception):
    """A failure that may pass: the same call again (same idempotency key) may succeed.

    `retry_after_s` is the provider's hint (a Retry-After header) of when to try again.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        """A transient failure described by `message`, with the provider's hint if any."""
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RetriesExhaustedError(Exception):
    """Every attempt allowed by the policy (count or deadline) failed transiently."""

    def __init__(self, last_error: TransientError, attempts: int) -> None:
        """The last transient failure, after `attempts` attempts."""
        super().__init__(f"{attempts} attempt(s) failed; last: {last_error}")
        self.last_error = last_error
        self.attempts = attempts


@dataclass(frozen=True)
class BackoffPolicy:
    """How often and how patiently to retry.

    The wait before retry n (n = 1 after the first failure) is drawn uniformly from
    `[c * (1 - jitter), c]` with `c = min(cap_s, base_s * multiplier ** (n - 1))`. A
    provider's Retry-After is honoured up to `cap_s`: the wait is at least
    `min(retry_after_s, cap_s)`. No attempt starts after `deadline_s` from the first.
    """

    attempts: int = 5
    base_s: float = 0.5
    multiplier: float = 2.0
    cap_s: float = 10.0
    jitter: float = 0.5
    deadline_s: float = 60.0

    def __post_init__(self) -> None:
        """Reject settings that make no sense (no attempt, negative waits, ...)."""
        problems = []
        if self.attempts < 1:
            problems.append(f"attempts must be >= 1, not {self.attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            problems.append("base_s and cap_s must be >= 0")
        if self.multiplier < 1:
            problems.append(f"multiplier must be >= 1, not {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter must be within [0, 1], not {self.jitter}")
        if self.deadline_s <= 0:
            problems.append(f"deadline_s must be > 0, not {self.deadline_s}")
        if problems:
            raise ValueError("; ".join(problems))

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry `retry` (1-based), before jitter."""
        if retry < 1:
            message = f"retries count from 1, not {retry}"
            raise ValueError(message)
        try:
            raw = self.base_s * self.multiplier ** (retry - 1)
        except OverflowError:
            raw = math.inf
        return min(self.cap_s, raw)

    def delay(self, retry: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        """The wait before retry `retry`, jittered with `rng`, honouring Retry-After."""
        ceiling = self.ceiling(retry)
        wait = ceiling * (1 - self.jitter) + rng.random() * ceiling * self.jitter
        if retry_after_s is not None and retry_after_s > 0:
            wait = max(wait, min(retry_after_s, self.cap_s))
        return wait


class Retrier:
    """Runs a call under a `BackoffPolicy`, retrying only on `TransientError`."""

    def __init__(
        self,
        policy: BackoffPolicy,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Retry under `policy`; `rng`, `sleep` and `monotonic` may be fakes in tests."""
        self.policy = policy
        # Jitter spreads retries out; it needs no cryptographic randomness.
        self._rng = rng if rng is not None else random.Random()  # noqa: S311
        self._sleep = sleep
        self._monotonic = monotonic

    def call(self, attempt: Callable[[float], T]) -> tuple[T, int]:
        """`attempt(remaining_s)` until it returns; its result and the attempts it took.

        `remaining_s` is what is left of the deadline, for the call to bound its own
        timeout by. Raises `RetriesExhaustedError` when the attempts or the deadline run
        out; any exception other than `TransientError` propagates at once.
        """
        policy = self.policy
        start = self._monotonic()
        number = 0
        while True:
            number += 1
            remaining = policy.deadline_s - (self._monotonic() - start)
            try:
                return attempt(remaining), number
            except TransientError as error:
                last = error
            if number >= policy.attempts:
                break
            wait = policy.delay(number, self._rng, last.retry_after_s)
            if self._monotonic() - start + wait >= policy.deadline_s:
                break
            self._sleep(wait)
        raise RetriesExhaustedError(last, number)
