"""The jobs' retry policy: exponential backoff, jitter, Retry-After, cap, deadline."""

from __future__ import annotations

import random

import pytest

from reconciler.jobs.retry import BackoffPolicy, Retrier, RetriesExhaustedError, TransientError


def _rng(seed: int) -> random.Random:
    """A seeded random source: jitter in tests is reproducible."""
    return random.Random(seed)  # noqa: S311 - jitter, not security


class FakeTime:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        """Start at 0 s, with no sleeps."""
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        """Record the wait and move the clock by it."""
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        """The current fake time."""
        return self.now


def _retrier(policy: BackoffPolicy, clock: FakeTime, seed: int = 7) -> Retrier:
    return Retrier(policy, rng=_rng(seed), sleep=clock.sleep, monotonic=clock.monotonic)


def test_backoff_grows_exponentially_until_the_cap() -> None:
    """Without jitter the waits are base * multiplier**(n-1), never above the cap."""
    policy = BackoffPolicy(base_s=0.5, multiplier=2.0, cap_s=5.0, jitter=0.0)
    rng = _rng(1)
    assert [policy.delay(n, rng) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_of_a_huge_retry_number_is_the_cap() -> None:
    """A retry number whose power overflows a float still waits the cap, no error."""
    policy = BackoffPolicy(base_s=1.0, multiplier=10.0, cap_s=7.0, jitter=0.0)
    assert policy.delay(10_000, _rng(1)) == 7.0


def test_jitter_stays_within_its_bounds_and_varies() -> None:
    """With jitter j the wait lies in [c*(1-j), c] for the ceiling c, and is not constant."""
    policy = BackoffPolicy(base_s=1.0, multiplier=2.0, cap_s=30.0, jitter=0.5)
    rng = _rng(42)
    for retry in range(1, 6):
        ceiling = policy.ceiling(retry)
        waits = [policy.delay(retry, rng) for _ in range(200)]
        assert all(ceiling * 0.5 <= wait <= ceiling for wait in waits)
        assert len(set(waits)) > 100


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    """The same seed gives the same waits: tests and replays are deterministic."""
    policy = BackoffPolicy(jitter=1.0)
    first = [policy.delay(n, _rng(3)) for n in range(1, 5)]
    again = [policy.delay(n, _rng(3)) for n in range(1, 5)]
    assert first == again


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """A Retry-After longer than the backoff is waited; one beyond the cap waits the cap."""
    policy = BackoffPolicy(base_s=0.5, cap_s=10.0, jitter=0.0)
    rng = _rng(1)
    assert policy.delay(1, rng, retry_after_s=3.0) == 3.0
    assert policy.delay(1, rng, retry_after_s=100.0) == 10.0
    assert policy.delay(4, rng, retry_after_s=1.0) == 4.0  # the backoff is longer: kept


def test_policy_rejects_settings_that_make_no_sense() -> None:
    """Zero attempts, a shrinking multiplier or jitter beyond 1 are refused at once."""
    with pytest.raises(ValueError, match="attempts"):
        BackoffPolicy(attempts=0)
    with pytest.raises(ValueError, match="multiplier"):
        BackoffPolicy(multiplier=0.5)
    with pytest.raises(ValueError, match="jitter"):
        BackoffPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="retries count from 1"):
        BackoffPolicy().ceiling(0)


def test_transient_failures_are_retried_until_success() -> None:
    """Two transient failures, then a result: the result, after 3 attempts and 2 waits."""
    clock = FakeTime()
    policy = BackoffPolicy(attempts=5, base_s=1.0, jitter=0.5)
    outcomes: list[Exception | str] = [TransientError("a"), TransientError("b"), "done"]

    def attempt(_remaining: float) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert _retrier(policy, clock, seed=5).call(attempt) == ("done", 3)
    rng = _rng(5)
    assert clock.sleeps == [policy.delay(1, rng), policy.delay(2, rng)]


def test_exhausted_attempts_raise_with_the_last_error() -> None:
    """Always transient: after `attempts` tries, RetriesExhaustedError names the last error."""
    clock = FakeTime()
    calls: list[float] = []

    def attempt(remaining: float) -> str:
        calls.append(remaining)
        message = f"failure {len(calls)}"
        raise TransientError(message)

    with pytest.raises(RetriesExhaustedError) as caught:
        _retrier(BackoffPolicy(attempts=4, deadline_s=1000.0), clock).call(attempt)
    assert caught.value.attempts == 4
    assert str(caught.value.last_error) == "failure 4"
    assert len(calls) == 4
    assert len(clock.sleeps) == 3


def test_the_deadline_stops_retrying_early_and_bounds_each_call() -> None:
    """No attempt starts after the deadline; each attempt is told the time that is left."""
    clock = FakeTime()
    remaining_seen: list[float] = []

    def attempt(remaining: float) -> str:
        remaining_seen.append(remaining)
        clock.now += 2.0  # each call takes 2 s
        message = "slow"
        raise TransientError(message)

    policy = BackoffPolicy(attempts=100, base_s=1.0, multiplier=1.0, jitter=0.0, deadline_s=10.0)
    with pytest.raises(RetriesExhaustedError) as caught:
        _retrier(policy, clock).call(attempt)
    assert caught.value.attempts == 4  # starts at 0, 3, 6, 9; a 5th would start at 12
    assert remaining_seen == [10.0, 7.0, 4.0, 1.0]
    assert clock.now <= 10.0 + 2.0


def test_other_errors_are_not_retried_whatever_their_message() -> None:
    """Retrying is decided by type: a ValueError saying "503 timeout" propagates at once."""
    clock = FakeTime()
    calls = 0

    def attempt(_remaining: float) -> str:
        nonlocal calls
        calls += 1
        message = "503 transient timeout"
        raise ValueError(message)

    with pytest.raises(ValueError, match="503"):
        _retrier(BackoffPolicy(), clock).call(attempt)
    assert calls == 1
    assert clock.sleeps == []


def test_a_transient_error_carries_its_retry_after_hint() -> None:
    """The provider's Retry-After reaches the wait: 4 s asked, 4 s waited (cap 10 s)."""
    clock = FakeTime()
    outcomes: list[Exception | str] = [TransientError("busy", retry_after_s=4.0), "ok"]

    def attempt(_remaining: float) -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    policy = BackoffPolicy(base_s=0.1, cap_s=10.0)
    assert _retrier(policy, clock).call(attempt) == ("ok", 2)
    assert clock.sleeps == [4.0]
