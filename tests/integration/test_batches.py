"""One batch sender for every producer, against the real broker: where each record lands, in
what order, and how a full batch and a tombstone travel."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka.partitioner import murmur2
from kafka import KafkaConsumer, TopicPartition

from driftloop.async_messaging import AsyncEventProducer, send_batches
from driftloop.events import EventType, new_event
from driftloop.messaging import kafka_admin
from driftloop.schemas import dumps
from driftloop.settings import Settings

pytestmark = pytest.mark.integration

PARTITIONS = 4


def private_topic(settings: Settings) -> str:
    """A topic of its own, so that nothing else the suite writes is in the way."""
    topic = f"test.batches.{uuid.uuid4().hex[:8]}"
    admin = kafka_admin(settings)
    admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
    admin.close()
    return topic


def read_all(settings: Settings, topic: str, count: int) -> list[Any]:
    """Every record of ``topic`` (at least ``count``), partition by partition, in offset order."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records: list[Any] = []
    for _ in range(100):
        for batch in consumer.poll(500).values():
            records += batch
        if len(records) >= count:
            break
    consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


async def test_send_many_places_each_event_as_the_java_client_would_and_keeps_key_order(
    settings: Settings,
) -> None:
    topic = private_topic(settings)
    private = settings.model_copy(update={"topic_predictions": topic})
    # Batches of 1 KiB: a few events each, so that full batches are sent mid-call.
    producer = AsyncEventProducer(private, service="test", max_batch_size=1024)
    await producer.start()
    events = [new_event(request_id=f"r-{i % 9}", n=i) for i in range(120)]
    try:
        futures = await producer.send_many(EventType.PREDICTION, events, validate=False)
        for future in futures:
            await future
    finally:
        await producer.stop()
    assert len(futures) > PARTITIONS  # more batches than partitions: some filled up
    records = read_all(settings, topic, len(events))
    assert len(records) == len(events)
    for record in records:
        assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % PARTITIONS
    for request in {event["request_id"] for event in events}:
        read = [r.value for r in records if r.key == request.encode()]
        assert read == [dumps(e) for e in events if e["request_id"] == request]


async def test_send_batches_keeps_given_partitions_order_and_tombstones(
    settings: Settings,
) -> None:
    topic = private_topic(settings)
    producer = AsyncEventProducer(settings, service="test", max_batch_size=1024)
    await producer.start()
    records = [(i % PARTITIONS, f"k{i}".encode(), b"x" * 100) for i in range(60)]
    records += [(3, b"k3", None)]  # a tombstone: the compacted changelog's delete
    try:
        for future in await send_batches(producer.client, topic, records):
            await future
        assert await send_batches(producer.client, topic, []) == []
    finally:
        await producer.stop()
    read = read_all(settings, topic, len(records))
    assert [(r.partition, r.key, r.value) for r in read] == sorted(
        records, key=lambda r: r[0]
    )  # per partition, in the order given (a stable sort keeps it)
