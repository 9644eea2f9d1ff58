"""send_batches and send_many without a broker: a client that records the batches it is given."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.partitioner import murmur2

from driftloop.async_messaging import AsyncEventProducer, send_batches
from driftloop.events import EventType
from driftloop.schemas import dumps
from driftloop.settings import Settings


class Batch:
    """A record batch with room for ``room`` records (aiokafka's: for so many bytes)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes | None, bytes | None]] = []

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: None) -> Any:
        if len(self.records) >= self.room:
            return None  # full, as aiokafka says it
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class Client:
    """The producer's calls send_batches and send_many make; what was sent, in order."""

    def __init__(self, room: int, partitions: set[int]) -> None:
        self.room = room
        self.partitions = partitions
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent.append((topic, partition, batch.records))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_send_batches_sends_one_batch_per_partition_and_a_new_one_when_full() -> None:
    client = Client(room=2, partitions={0, 1})
    records = [(0, b"a", b"1"), (1, b"b", None), (0, b"c", b"3"), (0, b"d", b"4"), (1, b"e", b"5")]
    records += [(0, b"f", None)]
    futures = await send_batches(client, "t", records)  # type: ignore[arg-type]
    assert client.sent == [
        ("t", 0, [(b"a", b"1"), (b"c", b"3")]),  # full: sent when "d" did not fit
        ("t", 0, [(b"d", b"4"), (b"f", None)]),  # None: a tombstone, kept as such
        ("t", 1, [(b"b", None), (b"e", b"5")]),
    ]
    assert len(futures) == 3
    assert await send_batches(client, "t", []) == []  # nothing: no batch
    assert len(client.sent) == 3


async def test_send_many_partitions_by_murmur2_and_keeps_each_keys_order() -> None:
    producer = AsyncEventProducer(Settings(), service="test")
    producer.client = Client(room=3, partitions={0, 1, 2, 3})  # type: ignore[assignment]
    events: list[dict[str, Any]] = [{"request_id": f"r-{i % 7}", "n": i} for i in range(40)]
    events += [{"n": i} for i in range(5)]  # no key: spread by index
    futures = await producer.send_many(EventType.PREDICTION, events, validate=False)
    sent = producer.client.sent  # type: ignore[attr-defined]
    assert len(futures) == len(sent)
    assert all(topic == Settings().topic_for(EventType.PREDICTION) for topic, _, _ in sent)
    placed = {(key, value): partition for _, partition, records in sent for key, value in records}
    for index, event in enumerate(events):
        key = EventType.PREDICTION.key(event)
        expected = index % 4 if key is None else (murmur2(key) & 0x7FFFFFFF) % 4
        assert placed[(key, dumps(event))] == expected
    for request in {f"r-{i}" for i in range(7)}:  # one key's events: one partition, in order
        order = [v for _, _, records in sent for k, v in records if k == request.encode()]
        assert order == [dumps(e) for e in events if e.get("request_id") == request]
