"""Where kafka-python's default partitioner puts a key, computed without a producer.

A producer given a key and no partition sends the record to
`(murmur2(key) & 0x7FFFFFFF) % partitions` (the Java client's rule, which
kafka-python's `DefaultPartitioner` copies, over the topic's sorted partition ids).
Computing it here lets a process route or broadcast deterministically: it knows,
before sending, which partition a key's records are in.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_R = 24
_MASK32 = 0xFFFFFFFF
_POSITIVE = 0x7FFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit MurmurHash2 of `data` as Kafka computes it, as an unsigned int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK32
        k ^= k >> _R
        k = (k * _M) & _MASK32
        h = (h * _M) & _MASK32
        h ^= k
    tail = data[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition kafka-python's default partitioner picks for `key` among `partitions`."""
    if partitions <= 0:
        message = f"a topic has at least one partition, not {partitions}"
        raise ValueError(message)
    return (murmur2(key) & _POSITIVE) % partitions
