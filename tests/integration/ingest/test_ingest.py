"""ingest end to end on the real broker: the join, dead letters, crash and restart, HTTP."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import murmur2
from kafka import KafkaConsumer, TopicPartition

from driftloop.client import Client, Refused
from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer, Received, kafka_admin
from driftloop.services.ingest import worker as worker_module
from driftloop.services.ingest.join import example_id
from driftloop.services.ingest.settings import IngestSettings
from driftloop.services.ingest.worker import IngestWorker
from driftloop.store import ExampleStore
from tests.integration.ingest.conftest import stored_rows
from tests.processes import ServiceProcess

pytestmark = pytest.mark.integration


def prediction(request_id: str, **fields: Any) -> dict[str, Any]:
    return (
        new_event(
            request_id=request_id,
            model_name="m",
            model_version="1",
            features={"x": 1.0, "colour": "red"},
            prediction=0,
        )
        | fields
    )


def label(request_id: str, value: Any = 1, **fields: Any) -> dict[str, Any]:
    return new_event(request_id=request_id, label=value) | fields


def kcat_labels(kcat: str, settings: IngestSettings, records: list[tuple[str, bytes]]) -> None:
    """Labels from an outside app; murmur2, so they meet their predictions' partitions."""
    lines = b"".join(key.encode() + b"\t" + value + b"\n" for key, value in records)
    subprocess.run(
        [
            kcat,
            "-b",
            settings.kafka_bootstrap_servers,
            "-P",
            "-t",
            settings.topic_labels,
            "-K",
            "\t",
            "-X",
            "partitioner=murmur2_random",
        ],
        input=lines,
        check=True,
        timeout=30,
    )


def store_of(settings: IngestSettings) -> Any:
    """What opens the settings' example store, in the worker's writer process."""
    return functools.partial(ExampleStore, settings.store_uri)


async def run_until(worker: IngestWorker, done: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await worker.step(200)
    await worker.checkpoint()
    assert done(), f"not done after {timeout} s; outcomes so far: {dict(worker.join.outcomes)}"


def dead_letters(settings: IngestSettings, expected: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with EventConsumer(settings, None, [EventType.DEAD_LETTER], service="test") as consumer:
        deadline = time.monotonic() + 20
        while len(found) < expected and time.monotonic() < deadline:
            found += [r.event for r in consumer.poll(250)]
    return found


async def test_the_join_in_either_order_with_duplicates_and_poison_around_it(
    ingest_settings: IngestSettings, kcat: str
) -> None:
    s = ingest_settings
    worker = IngestWorker(s, store_of(s))
    await worker.start()
    huge = orjson.dumps(label("huge", value="x" * 10_000))
    # Valid, from a clock a year ahead: joined, it would expire every request waiting.
    future = orjson.dumps(label("after", event_time="2027-11-22T10:00:00Z"))
    try:
        with EventProducer(s, service="test") as producer:
            for request_id in ("after", "twice", "alone"):
                producer.send(EventType.PREDICTION, prediction(request_id))
            producer.flush()
            await run_until(worker, lambda: worker.join.outcomes["pending"] == 3)
            kcat_labels(
                kcat,
                s,
                [
                    ("before", orjson.dumps(label("before"))),
                    ("poison", b"{not json"),
                    ("after", orjson.dumps(label("after"))),
                    ("poison", orjson.dumps({"label": 1})),
                    ("twice", orjson.dumps(label("twice", 1))),
                    ("poison", orjson.dumps(label("typed", value={"class": 1}))),
                    ("twice", orjson.dumps(label("twice", 0))),
                    ("huge", huge),
                    ("future", future),
                ],
            )
            outcomes = worker.join.outcomes
            await run_until(
                worker, lambda: outcomes["duplicate_label"] == 1 and outcomes["ahead_of_clock"] == 1
            )
            producer.send(EventType.PREDICTION, prediction("before")).get(timeout=10)
            await run_until(worker, lambda: len(stored_rows(s)) == 3)
    finally:
        await worker.close()

    assert sorted(stored_rows(s)) == ["after", "before", "twice"]
    outcomes = worker.join.outcomes
    assert outcomes["joined"] == 2 and outcomes["label_before_prediction"] == 1
    assert outcomes["duplicate_label"] == 1 and outcomes["pending"] == 4
    store = ExampleStore(s.store_uri)
    twice = [r for r in store.read(store.manifests()).to_pylist() if r["request_id"] == "twice"]
    assert twice[0]["label"] == 1, "the first label stands"

    assert outcomes["ahead_of_clock"] == 1 and outcomes["expired_prediction"] == 0
    letters = dead_letters(s, 5)
    rules = sorted(letter["error"]["rule"] for letter in letters)
    assert rules == sorted(["json", "required", "type", "maxBytes", "ahead_of_clock"])
    payloads = {base64.b64decode(letter["payload_b64"]) for letter in letters}
    assert b"{not json" in payloads and huge in payloads and future in payloads
    assert all(letter["origin"]["topic"] == s.topic_labels for letter in letters)

    received: list[Received] = []
    with EventConsumer(s, None, [EventType.LABELLED_EXAMPLE], service="test") as consumer:
        deadline = time.monotonic() + 20
        while len(received) < 3 and time.monotonic() < deadline:
            received += consumer.poll(250)
    examples = [r.event for r in received]
    assert sorted(e["request_id"] for e in examples) == ["after", "before", "twice"]
    # Each example on its request's partition: where a producer keyed by request_id puts it.
    for r in received:
        key = r.event["request_id"].encode()
        assert r.origin["partition"] == (murmur2(key) & 0x7FFFFFFF) % s.topic_partitions
    # The manifests name the source offsets their rows came from.
    sources = {source for m in store.manifests() for source in m.offsets}
    assert {source.split(":")[0] for source in sources} == {s.topic_predictions, s.topic_labels}
    assert all(first <= last for m in store.manifests() for first, last in m.offsets.values())
    assert {e["event_id"] for e in examples} == {
        example_id(r) for r in ("after", "before", "twice")
    }


async def test_a_label_after_the_ttl_is_counted_late_and_stores_nothing(
    ingest_settings: IngestSettings,
) -> None:
    s = ingest_settings.model_copy(update={"ingest_join_ttl_s": 60.0})
    worker = IngestWorker(s, store_of(s))
    await worker.start()
    try:
        with EventProducer(s, service="test") as producer:
            for request_id, minute in (("old", "00"), ("new", "05")):
                event = prediction(request_id, event_time=f"2026-11-22T10:{minute}:00Z")
                producer.send(EventType.PREDICTION, event)
            producer.flush()
            await run_until(worker, lambda: worker.join.outcomes["pending"] == 2)
            for request_id in ("old", "new"):
                producer.send(EventType.LABEL, label(request_id, event_time="2026-11-22T10:06:00Z"))
        await run_until(worker, lambda: worker.join.outcomes["late_label"] == 1)
        await run_until(worker, lambda: worker.join.outcomes["joined"] == 1)
    finally:
        await worker.close()
    assert worker.join.outcomes["expired_prediction"] == 1, dict(worker.join.outcomes)
    assert stored_rows(s) == ["new"]


async def test_labels_wait_for_the_restored_state_of_a_partition_taken_on(
    ingest_settings: IngestSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka hands new partitions to poll() before the assignment listener has run: the
    worker must not join a label before its partition's predictions are restored."""
    s = ingest_settings
    waiting = [f"w{i}" for i in range(20)]
    with EventProducer(s, service="test") as producer:
        for request_id in waiting:
            producer.send(EventType.PREDICTION, prediction(request_id))
        producer.flush()
        first = IngestWorker(s, store_of(s))
        await first.start()
        try:
            await run_until(first, lambda: first.join.outcomes["pending"] == len(waiting))
        finally:
            await first.close()  # predictions committed, their entries in the changelog
        for request_id in waiting:
            producer.send(EventType.LABEL, label(request_id))
        producer.flush()

    read_changelog = worker_module.read_changelog

    async def slow_read_changelog(*args: Any) -> Any:
        await asyncio.sleep(2)  # a loaded machine: the labels are fetched meanwhile
        return await read_changelog(*args)

    monkeypatch.setattr(worker_module, "read_changelog", slow_read_changelog)
    second = IngestWorker(s, store_of(s))
    await second.start()
    try:
        await run_until(second, lambda: len(stored_rows(s)) == len(waiting))
    finally:
        await second.close()
    assert second.join.outcomes["joined"] == len(waiting), dict(second.join.outcomes)
    assert sorted(stored_rows(s)) == sorted(waiting)


class StoreThatFailsOnce(ExampleStore):
    """Its first write of examples waits for the file ``release`` (it runs in the writer
    process), then fails (a full disk); later ones succeed."""

    def __init__(self, uri: str, release: Path) -> None:
        super().__init__(uri)
        self.release = release
        self.failed = False

    def write(self, examples: Any, offsets: Any = None, contracts: Any = None) -> Any:
        if examples and not self.failed:
            self.failed = True
            deadline = time.monotonic() + 30
            while not self.release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            raise OSError("the disk is full")
        return super().write(examples, offsets, contracts)


def finished(worker: IngestWorker) -> int:
    """Requests the worker has joined, whichever half came first (``joined`` counts only
    labels that found their prediction)."""
    return len(worker.join) - worker.join.waiting


def changelog_records(settings: IngestSettings) -> int:
    reader = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        topic = settings.topic_ingest_changelog
        partitions = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
        return sum(reader.end_offsets(partitions).values())
    finally:
        reader.close()


async def test_a_poll_waits_no_longer_than_the_next_checkpoint_is_due(
    ingest_settings: IngestSettings,
) -> None:
    """What was read is stored ``ingest_flush_s`` after the last checkpoint even when nothing
    more comes: a poll's timeout is cut short then (the end of a backlog, a quiet stream)."""
    s = ingest_settings.model_copy(update={"ingest_flush_s": 5.0, "ingest_flush_rows": 1000})
    worker = IngestWorker(s, store_of(s))
    await worker.start()
    try:
        deadline = time.monotonic() + 30
        # Settled first: partitions assigned, their join state restored.
        while (not worker.consumer.assignment() or worker.consumer.paused()) and (
            time.monotonic() < deadline
        ):
            await worker.step(200)
        await worker.checkpoint()  # the clock of the next one starts now
        with EventProducer(s, service="test") as producer:
            producer.send(EventType.PREDICTION, prediction("quiet"))
            producer.send(EventType.LABEL, label("quiet"))
        while not worker.join.outcomes["joined"] and time.monotonic() < deadline:
            await worker.step(200)
        assert worker.consumer.uncommitted, "joined and not yet checkpointed"
        # A poll that may wait two minutes for records that will not come: it returns once
        # the checkpoint is due, and begins it.
        await asyncio.wait_for(worker.step(timeout_ms=120_000), timeout=60)
        assert not worker.consumer.uncommitted
        await worker.checkpoint()
    finally:
        await worker.close()
    assert stored_rows(s) == ["quiet"]


async def test_a_backlog_is_read_in_step_so_no_prediction_waits_for_labels_read_later(
    ingest_settings: IngestSettings,
) -> None:
    """A backlog (pairs produced while ingest was away) is read in time order across the two
    topics: each partition's labels keep up with its predictions, so a prediction waits for
    about one poll at most, where reading each topic as it arrives would read a partition's
    predictions all before its labels, hold them all, and log each to the changelog."""
    s = ingest_settings.model_copy(update={"ingest_flush_rows": 1_000_000, "ingest_flush_s": 60})
    per_partition = 3 * worker_module.POLL_RECORDS
    pairs = per_partition * s.topic_partitions
    with EventProducer(s, service="test", linger_ms=20) as producer:
        for i in range(pairs):
            producer.send(EventType.PREDICTION, prediction(f"b{i}"))
            producer.send(EventType.LABEL, label(f"b{i}"))
        producer.flush()
    worker = IngestWorker(s, store_of(s))
    await worker.start()
    most_waiting = 0
    try:
        deadline = time.monotonic() + 60
        while finished(worker) < pairs and time.monotonic() < deadline:
            await worker.step(200)
            most_waiting = max(most_waiting, worker.join.waiting)
        assert finished(worker) == pairs, dict(worker.join.outcomes)
    finally:
        await worker.stop()
    # A poll is at most POLL_RECORDS records; per partition, at most one poll ahead.
    assert 0 < most_waiting <= s.topic_partitions * worker_module.POLL_RECORDS, most_waiting


async def test_after_a_failed_store_write_no_later_changelog_is_sent_nor_offset_committed(
    ingest_settings: IngestSettings, tmp_path: Path
) -> None:
    """Checkpoints overlap, and a later one's changelog may go before an earlier one commits;
    but never after an earlier one failed: its changes would be missing from the changelog."""
    s = ingest_settings.model_copy(update={"ingest_flush_rows": 1, "ingest_flush_s": 60})
    joined, waiting = ["j0", "j1", "j2"], ["w0", "w1", "w2"]
    release = tmp_path / "release"
    worker = IngestWorker(s, functools.partial(StoreThatFailsOnce, s.store_uri, release))
    await worker.start()
    try:
        deadline = time.monotonic() + 30
        while not worker.consumer.client.assignment() and time.monotonic() < deadline:
            await worker.step(200)  # the group has its member: no rebalance mid-test
        with EventProducer(s, service="test") as producer:
            for request_id in joined:
                producer.send(EventType.PREDICTION, prediction(request_id))
                producer.send(EventType.LABEL, label(request_id))
            producer.flush()
            deadline = time.monotonic() + 20
            # A step that joins begins a checkpoint: the first one's write is stuck.
            while finished(worker) < len(joined) and time.monotonic() < deadline:
                await worker.step(200)
            for request_id in waiting:  # the changelog entries of the last checkpoint
                producer.send(EventType.PREDICTION, prediction(request_id))
            producer.flush()
        while worker.join.waiting < len(waiting) and time.monotonic() < deadline:
            await worker.step(200)
        assert (finished(worker), worker.join.waiting) == (3, 3), dict(worker.join.outcomes)
        # once the last checkpoint has begun
        threading.Timer(1.0, release.touch).start()
        with pytest.raises(OSError, match="the disk is full"):
            await worker.checkpoint()
        assert changelog_records(s) == 0
        admin = kafka_admin(s, "test")
        try:
            committed = admin.list_group_offsets(s.ingest_group_id).get(s.ingest_group_id, {})
        finally:
            admin.close()
        assert not committed, committed
    finally:
        await worker.stop()

    # Nothing was committed: a restart reads it all again and stores every request once.
    with EventProducer(s, service="test") as producer:
        for request_id in waiting:
            producer.send(EventType.LABEL, label(request_id))
    again = IngestWorker(s, store_of(s))
    await again.start()
    try:
        await run_until(again, lambda: len(stored_rows(s)) == len(joined) + len(waiting))
    finally:
        await again.close()
    assert sorted(stored_rows(s)) == sorted(joined + waiting)


def test_kill_and_restart_stores_every_joined_request_exactly_once(
    ingest: ServiceProcess,
) -> None:
    s = ingest.settings.model_copy(
        update={"ingest_flush_rows": 100, "kafka_max_poll_records": 50, "ingest_flush_s": 0.2}
    )
    ingest.settings = s
    run = uuid.uuid4().hex[:6]
    first = [f"{run}-a{i}" for i in range(1500)]
    second = [f"{run}-b{i}" for i in range(1000)]
    waiting = [f"{run}-w{i}" for i in range(50)]  # their labels come after the restart
    with EventProducer(s, service="test") as producer:
        for request_id in first:
            producer.send(EventType.PREDICTION, prediction(request_id))
            producer.send(EventType.LABEL, label(request_id))
        for request_id in waiting:
            producer.send(EventType.PREDICTION, prediction(request_id))
        producer.flush()

        ingest.start()
        deadline = time.monotonic() + 30
        while not ExampleStore(s.store_uri).manifests() and time.monotonic() < deadline:
            time.sleep(0.05)
        ingest.kill()  # SIGKILL: no final checkpoint, whatever it was doing
        killed_with = len(stored_rows(s))

        for request_id in second:
            producer.send(EventType.PREDICTION, prediction(request_id))
            producer.send(EventType.LABEL, label(request_id))
        for request_id in waiting:
            producer.send(EventType.LABEL, label(request_id))
        producer.flush()

    ingest.start()
    expected = len(first) + len(second) + len(waiting)
    deadline = time.monotonic() + 90
    while len(stored_rows(s)) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(1.5)  # a few more checkpoints: nothing more may arrive
    assert ingest.stop() == 0
    rows = stored_rows(s)
    assert 0 < killed_with < expected
    assert len(rows) == expected, f"{len(rows)} rows for {expected} joined requests"
    assert sorted(rows) == sorted(first + second + waiting)


def post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_labels_are_accepted_once_on_kafka_and_bad_ones_are_refused(
    ingest: ServiceProcess,
) -> None:
    s = ingest.settings
    ingest.start()
    labels_url = f"{ingest.url}/v1/labels"

    status, body = post(labels_url, orjson.dumps({"request_id": "h1", "label": 1}))
    assert status == 202 and body["accepted"] == 1 and len(body["event_ids"]) == 1
    status, body = post(
        labels_url,
        orjson.dumps(
            {"labels": [{"request_id": "h2", "label": 0}, {"request_id": "h3", "label": "yes"}]}
        ),
    )
    assert (status, body["accepted"]) == (202, 2)

    status, body = post(labels_url, orjson.dumps([{"request_id": "h4", "label": 1}, {"label": 1}]))
    assert status == 422
    assert (body["index"], body["field"], body["rule"]) == (1, "request_id", "required")
    assert post(labels_url, b"{oops")[0] == 400
    assert post(labels_url, b"[]")[0] == 422
    status, body = post(labels_url, orjson.dumps({"request_id": "big", "label": "x" * 5000}))
    assert status == 413 and "4096" in body["error"]
    ahead = {"request_id": "h5", "label": 1, "event_time": "2099-01-01T00:00:00Z"}
    status, body = post(labels_url, orjson.dumps(ahead))
    assert (status, body["field"], body["rule"]) == (422, "event_time", "ahead_of_clock")

    # The three labels wait in the join before their predictions come; the worker reads the
    # partitions only once its state is restored, so wait for that rather than race it.
    ingest.wait_until(
        lambda: 'outcome="pending"} 3.0' in ingest.read("/metrics/").decode(), "3 pending labels"
    )
    status, _ = post(f"{ingest.url}/v1/predictions", orjson.dumps(prediction("h1")))
    assert status == 202
    # A prediction is checked against its model's contract at the door.
    typed = prediction("h6", features={"x": "high", "colour": "red"})
    status, body = post(f"{ingest.url}/v1/predictions", orjson.dumps(typed))
    assert (status, body["field"], body["rule"]) == (422, "features.x", "feature_type")
    with EventProducer(s, service="test") as producer:
        for request_id in ("h2", "h3", "h4"):
            producer.send(EventType.PREDICTION, prediction(request_id))
    deadline = time.monotonic() + 30
    while len(stored_rows(s)) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    # h4 was in a refused batch; h3's label "yes" is none of the contract's classes: it went
    # through the intake (labels name no model) and was dead-lettered when it met h3.
    assert sorted(stored_rows(s)) == ["h1", "h2"]
    violations = 'driftloop_ingest_contract_violations_total{model="m",rule="label_type"} 1.0'
    ingest.wait_until(lambda: violations in ingest.read("/metrics/").decode(), "h3 refused")

    before = 'driftloop_ingest_join_outcomes_total{outcome="label_before_prediction"} 3.0'
    # Outcomes are published once a checkpoint is committed, a moment after the rows are stored.
    ingest.wait_until(lambda: before in ingest.read("/metrics/").decode(), before)
    metrics = ingest.read("/metrics/").decode()
    assert "driftloop_ingest_store_rows_total" in metrics
    assert ingest.stop() == 0


def test_the_clients_labels_over_http_and_kafka_meet_their_predictions(
    ingest: ServiceProcess,
) -> None:
    """An app's labels through :class:`driftloop.client.Client`: over HTTP, and over Kafka
    keyed so that each lands on its prediction's partition; a prediction the app made itself;
    a refused label names its field."""
    s = ingest.settings
    ingest.start()
    with Client(
        ingest_url=ingest.url,
        bootstrap_servers=s.kafka_bootstrap_servers,
        labels_topic=s.topic_labels,
        source="client-test",
        model_name="m",
    ) as client:
        client.send_label("c-http", 1)
        client.send_label("c-kafka", 0, via="kafka")
        # A prediction the app made itself (no model yet), then its label.
        client.send_prediction("c-own", {"x": 2.0, "colour": "blue"}, 1)
        client.send_label("c-own", 1, via="kafka")
        client.flush(timeout_s=10)
        with pytest.raises(Refused) as refused:
            client.send_label("", 1)
        assert refused.value.status == 422 and "request_id" in refused.value.reason
    with EventProducer(s, service="test") as producer:
        for request_id in ("c-http", "c-kafka"):
            producer.send(EventType.PREDICTION, prediction(request_id))
    deadline = time.monotonic() + 30
    while len(stored_rows(s)) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert sorted(stored_rows(s)) == ["c-http", "c-kafka", "c-own"]
