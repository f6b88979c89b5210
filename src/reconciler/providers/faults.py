"""Reproducible fault draws: one `random.Random` per (seed, purpose, key, attempt).

A string seed is hashed with SHA-512 by `random.Random`, so a draw depends only on
its inputs, never on `PYTHONHASHSEED` or on what other requests the server saw. The
attempt number (how many times this key has been sent, from 1) lets a transient fault
on one try give way on the next, reproducibly.
"""

from __future__ import annotations

from random import Random


def rng(seed: int, purpose: str, key: str, attempt: int = 0) -> Random:
    """The generator for one decision about one request key."""
    return Random(f"{seed}\x1f{purpose}\x1f{key}\x1f{attempt}")  # noqa: S311 - simulation, not crypto


def hits(seed: int, purpose: str, key: str, rate: float, attempt: int = 0) -> bool:
    """Whether a fault of probability `rate` strikes this key on this attempt."""
    if rate <= 0:
        return False
    return rate >= 1 or rng(seed, purpose, key, attempt).random() < rate


def token(seed: int, purpose: str, key: str, index: int = 0) -> str:
    """A deterministic 96-bit hex token: unique per input with overwhelming probability."""
    return f"{rng(seed, purpose, key, index).getrandbits(96):024x}"
