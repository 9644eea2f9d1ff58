"""Kafka's key partitioning (murmur2, as the Java client and aiokafka compute it), faster.

Prediction events are keyed by request id so a later label lands on the same partition;
the partition must be the one every other client computes for that key. aiokafka's murmur2
reads the key byte by byte in Python (~9 us for a 32-byte id, more than everything else an
event costs); this reads it four bytes at a time with :mod:`struct` and gives the same hash.

Example:
    >>> murmur2(b"21")  # as aiokafka.partitioner.murmur2 (and Kafka's Java client) hash it
    3321034988
    >>> partition_for(b"request-1", 12)
    7
"""

from __future__ import annotations

import struct

SEED = 0x9747B28C
M = 0x5BD1E995
MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data``, as an unsigned 32-bit integer."""
    length = len(data)
    h = (SEED ^ length) & MASK
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data) if words else ():
        k = (k * M) & MASK
        k ^= k >> 24
        k = (k * M) & MASK
        h = ((h * M) & MASK) ^ k
    tail = words << 2
    extra = length & 3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * M) & MASK
    h ^= h >> 13
    h = (h * M) & MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition index (of ``partitions``) Kafka's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
