"""IngestWorker: predictions and labels from Kafka, through the join, into the example store.

Delivery is at-least-once with idempotent writes. The worker checkpoints every
``ingest_flush_rows`` examples or ``ingest_flush_s`` seconds, in this order:

1. buffered examples are written to the store (durable on return);
2. the join entries changed since the last checkpoint go to the compacted changelog topic;
3. the examples topic, the changelog and the dead letters are flushed (``acks=all``);
4. the consumed offsets are committed.

A crash anywhere re-reads the records since the last commit on top of the state of the last
checkpoint (or a newer one): re-made examples carry the same ``event_id`` and the store drops
them, so every joined request is stored exactly once. On assignment, a partition is paused until
its join state is rebuilt from the changelog; on revocation, its state and unwritten examples
are dropped, for the new owner re-reads them from the committed offsets.

The join needs predictions and labels of one request on the same partition number: topics
with equal partition counts and producers that share the key partitioner (the Java client's
murmur2, which kafka-python, serve and ingest's HTTP intake use; kcat needs
``-X partitioner=murmur2_random``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter as CounterOf
from collections.abc import Iterable
from typing import Any

import orjson
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter, Gauge

from driftloop.events import EventType
from driftloop.messaging import (
    EventConsumer,
    EventProducer,
    Received,
    kafka_admin,
    kafka_consumer,
    kafka_producer,
)
from services.ingest.join import LabelJoin
from services.ingest.settings import IngestSettings
from services.ingest.store import ExampleStore

log = logging.getLogger(__name__)

JOIN_OUTCOMES = Counter(
    "driftloop_ingest_join_outcomes_total",
    "Predictions and labels by what the join did with them (see services/ingest/join.py).",
    ["outcome"],
)
JOIN_ENTRIES = Gauge(
    "driftloop_ingest_join_entries", "Requests the join holds, by status.", ["status"]
)
STORE_FILES = Counter("driftloop_ingest_store_files_total", "Parquet files written to the store.")
STORE_ROWS = Counter("driftloop_ingest_store_rows_total", "Examples written to the store.")
STORE_BYTES = Counter("driftloop_ingest_store_bytes_total", "Parquet bytes written to the store.")
CHECKPOINTS = Counter(
    "driftloop_ingest_checkpoints_total", "Checkpoints (store, changelog, commit)."
)


class IngestWorker(ConsumerRebalanceListener):
    """The consuming half of ingest. :meth:`step` once per poll; :meth:`run` until stopped."""

    def __init__(self, settings: IngestSettings, store: ExampleStore) -> None:
        self.settings = settings
        self.store = store
        self.join = LabelJoin(settings.ingest_join_ttl_s, settings.ingest_join_max_entries)
        self._buffer: list[tuple[int, dict[str, Any]]] = []  # (partition, example)
        self._offsets: dict[str, list[int]] = {}
        self._last_checkpoint = time.monotonic()
        self._paused: set[TopicPartition] = set()  # assigned, state not yet restored
        self._owned: set[int] = set()
        self._published: CounterOf[str] = CounterOf()
        ensure_changelog(settings)
        # Nothing waits on single records here (each checkpoint flushes), so batch generously:
        # fewer, larger produce requests leave more of the GIL to the join.
        batching = {"linger_ms": 200, "batch_size": 512 * 1024}
        self.examples = EventProducer(settings, service="ingest", **batching)
        self.changelog = kafka_producer(settings, "ingest", **batching)
        self.consumer = EventConsumer(
            settings,
            settings.ingest_group_id,
            [EventType.PREDICTION, EventType.LABEL],
            service="ingest",
            listener=self,
        )

    # --- the loop ------------------------------------------------------------------------

    def step(self, timeout_ms: int = 500) -> int:
        """One poll: join what came, checkpoint when due; returns the events handled."""
        batch = self.consumer.poll(timeout_ms)
        if self._paused:
            self._restore()
        for received in batch:
            self._handle(received)
        self.join.expire()
        due = time.monotonic() - self._last_checkpoint >= self.settings.ingest_flush_s
        if len(self._buffer) >= self.settings.ingest_flush_rows or (
            due and self.consumer.uncommitted
        ):
            self.checkpoint()
        return len(batch)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
        self.checkpoint()

    def checkpoint(self) -> None:
        """Store, changelog, flush, commit: in that order (see the module's docstring)."""
        if self._buffer:
            manifests = self.store.write([example for _, example in self._buffer], self._offsets)
            for manifest in manifests or []:
                STORE_FILES.inc()
                STORE_ROWS.inc(manifest.rows)
                STORE_BYTES.inc(manifest.bytes)
        topic = self.settings.topic_ingest_changelog
        for request_id, (partition, snapshot) in self.join.drain_changes().items():
            value = orjson.dumps(snapshot) if snapshot is not None else None
            self.changelog.send(topic, key=request_id.encode(), value=value, partition=partition)
        self.changelog.flush()
        self.examples.flush()
        self.consumer.commit()
        self._buffer.clear()
        self._offsets.clear()
        self._last_checkpoint = time.monotonic()
        CHECKPOINTS.inc()
        self._publish_outcomes()
        waiting = self.join.waiting
        JOIN_ENTRIES.labels("waiting").set(waiting)
        JOIN_ENTRIES.labels("finished").set(len(self.join) - waiting)

    def _publish_outcomes(self) -> None:
        # Counted by the join, published per checkpoint: cheaper than per event.
        for outcome, total in self.join.outcomes.items():
            new = total - self._published[outcome]
            if new:
                JOIN_OUTCOMES.labels(outcome).inc(new)
                self._published[outcome] = total

    def close(self) -> None:
        self.consumer.close()
        self.examples.close()
        self.changelog.close()

    def _handle(self, received: Received) -> None:
        origin = received.origin
        span = self._offsets.setdefault(f"{origin['topic']}:{origin['partition']}",
                                        [origin["offset"], origin["offset"]])  # fmt: skip
        span[0], span[1] = min(span[0], origin["offset"]), max(span[1], origin["offset"])
        if received.event_type is EventType.PREDICTION:
            result = self.join.add_prediction(received.event, origin["partition"])
        else:
            result = self.join.add_label(received.event, origin["partition"])
        if result.example is not None:
            self.examples.send(EventType.LABELLED_EXAMPLE, result.example)
            self._buffer.append((origin["partition"], result.example))

    # --- partitions come and go ----------------------------------------------------------

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # Runs on the consumer's I/O loop: no blocking I/O here. Pause the new partitions and
        # rebuild their state from the changelog in the next step, before any record of them.
        new = {tp for tp in assigned if tp.partition not in self._owned}
        if new:
            self.consumer.pause(*new)
            self._paused |= new

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        gone = {tp.partition for tp in revoked}
        self._owned -= gone
        self._paused = {tp for tp in self._paused if tp.partition not in gone}
        self.join.drop_partitions(gone)
        # The new owner re-reads these from the committed offsets; writing them here too
        # would store them twice.
        self._buffer = [(p, example) for p, example in self._buffer if p not in gone]

    def _restore(self) -> None:
        paused, self._paused = self._paused, set()
        partitions = {tp.partition for tp in paused}
        restored = read_changelog(self.settings, partitions)
        for request_id, snapshot in restored.items():
            self.join.restore(request_id, snapshot)
        self._owned |= partitions
        self.consumer.resume(*paused)
        log.info("join state restored", extra={"partitions": sorted(partitions),
                                               "entries": len(restored)})  # fmt: skip


def ensure_changelog(settings: IngestSettings) -> None:
    """The changelog topic: compacted, with as many partitions as the predictions topic."""
    admin = kafka_admin(settings, "ingest")
    try:
        described = admin.describe_topics([settings.topic_predictions])
        partitions = len(described[0]["partitions"]) or settings.topic_partitions
        spec = {
            "num_partitions": partitions,
            "replication_factor": settings.topic_replication_factor,
            "configs": {"cleanup.policy": "compact"},
        }
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics({settings.topic_ingest_changelog: spec}, wait_for_metadata=True)
    finally:
        admin.close()


def read_changelog(
    settings: IngestSettings, partitions: Iterable[int]
) -> dict[str, dict[str, Any] | None]:
    """The latest snapshot of every request_id in the changelog's ``partitions``."""
    topic = settings.topic_ingest_changelog
    consumer = kafka_consumer(settings, "ingest-restore", None)
    try:
        assigned = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        latest: dict[str, dict[str, Any] | None] = {}
        while any(consumer.position(tp) < end[tp] for tp in assigned):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    latest[record.key.decode()] = (
                        orjson.loads(record.value) if record.value else None
                    )
        return latest
    finally:
        consumer.close()
