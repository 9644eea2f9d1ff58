"""serve's murmur2 partitioning gives the partitions every Kafka client computes."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as reference

from services.serve.partitioning import murmur2, partition_for, partitions_for


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
