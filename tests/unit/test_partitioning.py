"""driftloop's murmur2 partitioning gives the partitions every Kafka client computes."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as reference

from driftloop.partitioning import choose_partitions, murmur2, partition_for, partitions_for


def expected(key: bytes, partitions: int) -> int:
    return (reference(key) & 0x7FFFFFFF) % partitions


def test_murmur2_matches_aiokafka_for_every_length() -> None:
    rng = random.Random(0)
    for length in range(0, 70):
        for _ in range(20):
            key = rng.randbytes(length)
            assert murmur2(key) == reference(key) & 0xFFFFFFFF
            assert partition_for(key, 12) == expected(key, 12)


@pytest.mark.parametrize("partitions", [1, 3, 12])
def test_partitions_for_many_keys_matches_one_at_a_time(partitions: int) -> None:
    rng = random.Random(partitions)
    keys = [rng.randbytes(16).hex().encode() for _ in range(40)]  # one length: hashed as arrays
    keys += [f"{keys[0].decode()}-{i}".encode() for i in range(120)]  # three lengths
    keys += [rng.randbytes(rng.randint(0, 9)) for _ in range(30)]  # short and mixed
    assert partitions_for(keys, partitions) == [expected(k, partitions) for k in keys]
    assert partitions_for([], partitions) == []


@pytest.mark.parametrize("known", [[0], [0, 1, 2], [2, 5, 7, 11]])
def test_choose_partitions_is_what_send_many_chose_with_aiokafkas_murmur2(known: list[int]) -> None:
    """AsyncEventProducer.send_many's choice before it used choose_partitions: murmur2 of the
    key from aiokafka, and records without a key spread by their index."""
    rng = random.Random(len(known))
    keys: list[bytes | None] = [rng.randbytes(16).hex().encode() for _ in range(60)]
    keys += [None if i % 3 else f"r-{i}".encode() for i in range(60)]  # keyed and not, mixed
    rng.shuffle(keys)
    before = [
        known[i % len(known)] if key is None else known[expected(key, len(known))]
        for i, key in enumerate(keys)
    ]
    assert choose_partitions(keys, known) == before
    assert choose_partitions([None] * 5, known) == [known[i % len(known)] for i in range(5)]
