"""Against the real broker: outside clients (kcat) and the contracts' clients, both ways."""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from typing import Any

import orjson
import pytest

from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer, Received, ensure_topics, kafka_admin
from driftloop.settings import Settings
from driftloop.stack import LocalStack

pytestmark = pytest.mark.integration


def kcat_produce(kcat: str, settings: Settings, topic: str, key: str, value: bytes) -> None:
    subprocess.run(
        [kcat, "-b", settings.kafka_bootstrap_servers, "-P", "-t", topic, "-k", key, "-K", "\t"],
        input=key.encode() + b"\t" + value + b"\n",
        check=True,
        timeout=30,
    )


def kcat_consume(kcat: str, settings: Settings, topic: str) -> list[tuple[str, bytes]]:
    out = subprocess.run(
        [
            kcat,
            "-b",
            settings.kafka_bootstrap_servers,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k\t%s\n",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return [tuple(line.split(b"\t", 1)) for line in out.splitlines()]  # type: ignore[misc]


def read_until(consumer: EventConsumer, done: Any, timeout: float = 20.0) -> list[Received]:
    """Poll and commit until ``done(events so far)`` holds."""
    seen: list[Received] = []
    deadline = time.monotonic() + timeout
    while not done(seen) and time.monotonic() < deadline:
        seen += consumer.poll(250)
        consumer.commit()
    return seen


def group() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def test_an_event_from_kcat_is_read_and_validated(kcat: str, settings: Settings) -> None:
    request_id = f"r-{uuid.uuid4().hex}"
    label = new_event(request_id=request_id, label=1, source="kcat")
    kcat_produce(kcat, settings, settings.topic_labels, request_id, orjson.dumps(label))

    with EventConsumer(settings, group(), [EventType.LABEL], service="test") as consumer:
        seen = read_until(consumer, lambda s: any(r.event == label for r in s))
    mine = [r for r in seen if r.event["request_id"] == request_id]
    assert [r.event for r in mine] == [label]
    assert mine[0].event_type is EventType.LABEL
    assert mine[0].origin["topic"] == settings.topic_labels


def test_an_event_from_the_contracts_producer_is_read_by_kcat(
    kcat: str, settings: Settings
) -> None:
    request_id = f"r-{uuid.uuid4().hex}"
    prediction = new_event(
        request_id=request_id,
        model_name="m",
        model_version="1",
        features={"x": 1.5, "colour": "red"},
        prediction=0,
    )
    with EventProducer(settings, service="test") as producer:
        producer.send(EventType.PREDICTION, prediction).get(timeout=10)

    records = kcat_consume(kcat, settings, settings.topic_predictions)
    assert (request_id.encode(), orjson.dumps(prediction)) in records


def test_a_bad_record_is_dead_lettered_and_does_not_block_its_partition(
    kcat: str, settings: Settings
) -> None:
    key = f"r-{uuid.uuid4().hex}"
    bad = b'{"label": 1, "request_id": 7}'
    good = new_event(request_id=key, label=0)
    # Same key, so the same partition: the good record sits behind the bad one.
    kcat_produce(kcat, settings, settings.topic_labels, key, bad)
    kcat_produce(kcat, settings, settings.topic_labels, key, orjson.dumps(good))

    with EventConsumer(settings, group(), [EventType.LABEL], service="test") as consumer:
        seen = read_until(consumer, lambda s: any(r.event == good for r in s))
    assert good in [r.event for r in seen]

    with EventConsumer(settings, None, [EventType.DEAD_LETTER], service="test") as letters:
        found = read_until(letters, lambda s: any(r.event["key_b64"] for r in s if _is(r, key)))
    letter = next(r.event for r in found if _is(r, key))
    assert base64.b64decode(letter["payload_b64"]) == bad
    assert letter["service"] == "test"
    assert letter["origin"]["topic"] == settings.topic_labels
    assert letter["error"]["field"] in {"schema_version", "event_id", "event_time", "request_id"}


def _is(received: Received, key: str) -> bool:
    return received.event.get("key_b64") == base64.b64encode(key.encode()).decode()


def test_a_batch_is_committed_only_after_its_handler_succeeds(settings: Settings) -> None:
    # A topic of its own, so that nothing else the suite writes is in the way.
    topic = f"test.labels.{uuid.uuid4().hex[:8]}"
    private = settings.model_copy(update={"topic_labels": topic})
    admin = kafka_admin(private)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    admin.close()
    labels = [new_event(request_id=f"r-{i}", label=i) for i in range(5)]
    with EventProducer(private, service="test") as producer:
        for label in labels:
            producer.send(EventType.LABEL, label)
    name = group()

    def crash(batch: list[Received]) -> None:
        raise RuntimeError("handler failed")

    with (
        EventConsumer(private, name, [EventType.LABEL], service="test") as consumer,
        pytest.raises(RuntimeError, match="handler failed"),
    ):
        while True:  # until a non-empty batch reaches the handler
            consumer.run(crash, max_batches=1)

    handled: list[dict[str, Any]] = []
    with EventConsumer(private, name, [EventType.LABEL], service="test") as consumer:
        deadline = time.monotonic() + 20
        while len(handled) < len(labels) and time.monotonic() < deadline:
            consumer.run(lambda batch: handled.extend(r.event for r in batch), max_batches=1)
    assert handled == labels, "the failed batch must be read again, in order"

    with EventConsumer(private, name, [EventType.LABEL], service="test") as consumer:
        assert consumer.run(lambda batch: None, max_batches=3) == 0, "committed: nothing left"


def test_topics_exist_with_the_configured_partitions_and_ensure_is_idempotent(
    settings: Settings,
) -> None:
    assert set(ensure_topics(settings).values()) == {"exists"}
    admin = kafka_admin(settings)
    try:
        described = {t["name"]: t for t in admin.describe_topics(list(settings.topics().values()))}
    finally:
        admin.close()
    assert set(described) == set(settings.topics().values())
    partitions = {name: len(t["partitions"]) for name, t in described.items()}
    # The contracts topic has one partition: one order of versions for every reader.
    assert partitions.pop(settings.topic_contracts) == 1
    assert set(partitions.values()) == {settings.topic_partitions}


def test_a_second_up_reuses_the_running_broker(stack: LocalStack) -> None:
    before = stack.kafka.describe()
    assert stack.up()["kafka"] == "running"
    assert stack.kafka.describe() == before


def test_down_then_up_keeps_the_cluster_and_its_data(stack: LocalStack) -> None:
    settings = stack.settings
    label = new_event(request_id=f"r-{uuid.uuid4().hex}", label=1)
    with EventProducer(settings, service="test") as producer:
        producer.send(EventType.LABEL, label).get(timeout=10)
    cluster_id = stack.kafka.describe()["cluster_id"]  # type: ignore[index]

    assert stack.kafka.down() is True
    assert stack.kafka.describe() is None
    assert stack.kafka.up() == "started"

    assert stack.kafka.describe()["cluster_id"] == cluster_id  # type: ignore[index]
    with EventConsumer(settings, group(), [EventType.LABEL], service="test") as consumer:
        seen = read_until(consumer, lambda s: any(r.event == label for r in s))
    assert label in [r.event for r in seen]
