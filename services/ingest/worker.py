"""IngestWorker: predictions and labels from Kafka, through the join, into the example store.

Delivery is at-least-once with idempotent writes. The worker checkpoints every
``ingest_flush_rows`` examples or ``ingest_flush_s`` seconds, in this order:

1. buffered examples are written to the store (durable on return; by a process of its own,
   :class:`~driftloop.services.ingest.writer.StoreWriter`), and sent to the examples topic;
2. the join entries changed since the last checkpoint go to the compacted changelog topic;
3. the examples topic, the changelog and the dead letters are flushed (``acks=all``);
4. the consumed offsets are committed.

Checkpoints overlap: the worker goes on joining while they run, and a checkpoint's changelog
is sent as soon as its store write is durable, behind the previous checkpoint's changelog
(so that a request's later snapshot always follows its earlier one) but without waiting for
the previous commit. Commits go in checkpoint order. The changelog may thus run ahead of the
committed offsets, never ahead of the store, which is what a restart relies on.

Every event meets its model's contract first
(:class:`~driftloop.services.ingest.guard.ContractGuard`): a prediction whose features break it, or
an example whose label does, is dead-lettered with the rule it broke and the model's name, and never
reaches the join, the examples topic or the store. A model without a contract has its first examples
held while one is inferred from them; the worker publishes it on the contracts topic
(:class:`~driftloop.contract_log. ContractLog`: the first version there wins, whichever replica
wrote it), checks the held examples against the contract in force, and only then checkpoints again
(a crash before that re-reads them).

It also checkpoints when partitions are revoked (a rebalance or a shutdown), then forgets
their state; on assignment it rebuilds a partition's state from the changelog before reading
any of its records.

Each poll reads, of a partition's predictions and labels, the one behind in time first
(:mod:`driftloop.services.ingest.alignment`): on a backlog, a label is read soon after its
prediction, so most requests are joined between two checkpoints and never reach the changelog.

A crash anywhere re-reads the records since the last commit on top of the state of the last
checkpoint (or a newer one): re-made examples carry the same ``event_id`` and the store drops
them, so every joined request is stored exactly once.

The join needs predictions and labels of one request on the same partition number: topics
with equal partition counts and producers that share the key partitioner (the Java client's
murmur2, which kafka-python, aiokafka and ingest's HTTP intake use; kcat needs
``-X partitioner=murmur2_random``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter as CounterOf
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter, Gauge

from driftloop.async_messaging import (
    AsyncEventConsumer,
    AsyncEventProducer,
    ConsumerRebalanceListener,
    send_batches,
)
from driftloop.contract import FeatureContract
from driftloop.contract_log import ContractLog
from driftloop.errors import SchemaViolation
from driftloop.events import EventType, ahead_of_clock
from driftloop.messaging import Received, kafka_admin
from driftloop.schemas import dumps
from driftloop.services.ingest.alignment import Progress, behind_first
from driftloop.services.ingest.guard import ADMIT, ContractGuard
from driftloop.services.ingest.join import AHEAD_OF_CLOCK, LabelJoin
from driftloop.services.ingest.settings import IngestSettings
from driftloop.services.ingest.writer import StoreWriter
from driftloop.store import ExampleStore, Manifest

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
CONTRACT_VIOLATIONS = Counter(
    "driftloop_ingest_contract_violations_total",
    "Predictions and labels dead-lettered for breaking their model's contract, by rule.",
    ["model", "rule"],
)
UNKNOWN_CATEGORIES = Counter(
    "driftloop_ingest_unknown_categories_total",
    "Stored examples with a category their contract does not know (drift, not an error).",
    ["model", "feature"],
)
HELD_EXAMPLES = Gauge(
    "driftloop_ingest_held_examples",
    "Examples held while their model's contract is inferred (nothing past them is committed).",
)

# The worker hands the producers whole batches, one per partition and checkpoint: large ones
# (fewer produce requests leave more of the process to the join), sent at once (a linger would
# only hold a finished batch back, 20 ms per checkpoint on its critical path).
BATCHING: dict[str, Any] = {"linger_ms": 0, "max_batch_size": 1 << 20}
IN_FLIGHT = 3
POLL_RECORDS = 1000


class IngestWorker(ConsumerRebalanceListener):
    """The consuming half of ingest: ``await start()``, then :meth:`step` or :meth:`run`.

    Parameters:
        settings: its topics, group, join and checkpoint settings.
        store: opens the example store, in the writer process (picklable; see
            :class:`~driftloop.services.ingest.writer.StoreWriter`).
    """

    def __init__(self, settings: IngestSettings, store: Callable[[], ExampleStore]) -> None:
        self.settings = settings
        self.join = LabelJoin(settings.ingest_join_ttl_s, settings.ingest_join_max_entries)
        self.guard = ContractGuard(
            sample=settings.contract_sample,
            minority=settings.contract_minority_share,
            min_class_share=settings.contract_min_class_share,
            max_wait_s=settings.contract_max_wait_s,
        )
        self.contracts = ContractLog(settings, "ingest")
        self._contracts_read = -math.inf  # when the contracts topic was last read (monotonic)
        self._buffer: list[dict[str, Any]] = []
        self._partitions: list[int] = []  # each buffered example's request partition
        # Whether an example may go to its request's partition number (see ensure_changelog).
        self._co_partitioned = False
        self._last_checkpoint = time.monotonic()
        self._aligned = True  # whether the next poll reads the partitions behind first
        self._published: CounterOf[str] = CounterOf()
        self._in_flight: list[asyncio.Task[None]] = []  # checkpoints, oldest first
        # Resolved once the newest checkpoint has sent its changelog (or failed to).
        self._changelog_sent: asyncio.Future[None] | None = None
        # One writer: the store's files are written in checkpoint order.
        self._store_writer = StoreWriter(store)
        self.examples = AsyncEventProducer(settings, service="ingest", **BATCHING)
        self.changelog: AIOKafkaProducer
        self.consumer = AsyncEventConsumer(
            settings,
            settings.ingest_group_id,
            [EventType.PREDICTION, EventType.LABEL],
            service="ingest",
            listener=self,
            # Range assignment gives one replica partition p of both topics: the join needs
            # a request's prediction and label in one process (aiokafka's default is
            # round-robin, which would split them).
            partition_assignment_strategy=(RangePartitionAssignor,),
            # Large fetches: fewer round trips to the broker for a worker that reads in bulk.
            max_partition_fetch_bytes=8 << 20,
            # Polls of a thousand: large enough to cost little each, small enough that the
            # partitions behind in time catch up often (see _behind_first).
            max_poll_records=max(settings.kafka_max_poll_records, POLL_RECORDS),
        )

    async def start(self) -> None:
        self._co_partitioned = ensure_changelog(self.settings)
        await asyncio.to_thread(self._declare)
        await self._read_contracts()
        await self._store_writer.start()
        await self.examples.start()
        self.changelog = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers.split(","),
            client_id="driftloop-ingest",
            acks="all",
            enable_idempotence=True,
            **BATCHING,
        )
        await self.changelog.start()
        await self.consumer.start()

    # --- the loop ------------------------------------------------------------------------

    async def step(self, timeout_ms: int = 500) -> int:
        """One poll: join what came, checkpoint when due; returns the events handled."""
        chosen = await self._behind_first()
        if self.consumer.uncommitted:
            # Wait no longer than the next checkpoint is due: a backlog's last records (or a
            # quiet stream's) are stored ``ingest_flush_s`` after the last checkpoint, not a
            # whole poll timeout later.
            due_in = self._last_checkpoint + self.settings.ingest_flush_s - time.monotonic()
            timeout_ms = max(0, min(timeout_ms, math.ceil(due_in * 1000)))
        batch = await self.consumer.poll(timeout_ms, chosen)
        # Nothing from the partitions behind within the timeout (a fetch that did not come, or
        # records all dead-lettered): read everything next time rather than wait on them.
        self._aligned = not (chosen and not batch)
        examples, partitions = self._buffer, self._partitions
        join, guard = self.join, self.guard
        now, allowed, clock = time.time(), self.settings.max_event_ahead_s, time.monotonic()
        join.horizon = now + allowed
        for received in batch:
            partition = received.origin["partition"]
            if received.event_type is EventType.PREDICTION:
                event = received.event
                violation = guard.prediction(event)
                if violation is not None:
                    await self._refuse(received, event["model_name"], violation)
                    continue
                result = join.add_prediction(event, partition, received.value)
            else:
                result = join.add_label(received.event, partition)
            example = result.example
            if example is not None:
                verdict = guard.admit(example, (partition, received), clock)
                if verdict is ADMIT:
                    examples.append(example)
                    partitions.append(partition)
                elif verdict.violation is not None:
                    await self._refuse_example(received, example, verdict.violation)
            elif result is AHEAD_OF_CLOCK:
                why = ahead_of_clock(received.event["event_time"], now, allowed)
                assert why is not None  # past now + allowed: what the join refused
                await self.consumer.reject(received, why)
        self.join.expire()
        if guard.holding or time.monotonic() - self._contracts_read >= self._contracts_every:
            await self._settle_contracts()
        if guard.holding:
            return len(batch)  # nothing is committed past a held example
        due = time.monotonic() - self._last_checkpoint >= self.settings.ingest_flush_s
        if len(self._buffer) >= self.settings.ingest_flush_rows or (
            due and self.consumer.uncommitted
        ):
            await self._begin_checkpoint()
        return len(batch)

    # --- contracts -----------------------------------------------------------------------

    @property
    def _contracts_every(self) -> float:
        # Held examples wait on a contract another replica may publish: look more often.
        every = self.settings.contract_refresh_s
        return min(every, 1.0) if self.guard.holding else every

    def _declare(self) -> None:
        """Register the declared contract (``contract_file``), if any: a new version only
        when its terms differ from the model's latest."""
        path = self.settings.contract_file
        if path is None:
            return
        contract = FeatureContract.model_validate_json(path.read_bytes())
        if not contract.model_name:
            contract = contract.model_copy(update={"model_name": self.settings.model_name})
        in_force = self.contracts.register(contract)
        log.info(
            "declared contract in force",
            extra={"model": in_force.model_name, "contract_version": in_force.version},
        )

    async def _read_contracts(self) -> None:
        self.guard.adopt((await asyncio.to_thread(self.contracts.refresh)).values())
        self._contracts_read = time.monotonic()

    async def _settle_contracts(self) -> None:
        """Publish the contracts inferred, adopt those in force, and decide on what was held."""
        guard = self.guard
        for contract in guard.inferred(time.monotonic()):
            in_force = await asyncio.to_thread(self.contracts.publish, contract)
            guard.adopt([in_force])
            log.info(
                "contract in force",
                extra={
                    "model": in_force.model_name,
                    "contract_version": in_force.version,
                    "source": in_force.source,
                    "ours": in_force.same_terms(contract),
                },
            )
        # Called every step while examples are held; the log is read only when due.
        if time.monotonic() - self._contracts_read >= self._contracts_every:
            await self._read_contracts()
        for example, (partition, received), verdict in guard.release():
            if verdict is ADMIT:
                self._buffer.append(example)
                self._partitions.append(partition)
            elif verdict.violation is not None:
                await self._refuse_example(received, example, verdict.violation)
        HELD_EXAMPLES.set(guard.held())

    async def _refuse(
        self,
        received: Received,
        model_name: str,
        violation: SchemaViolation,
        value: bytes | None = None,
    ) -> None:
        CONTRACT_VIOLATIONS.labels(model_name, violation.rule).inc()
        await self.consumer.reject(received, violation, model_name=model_name, value=value)

    async def _refuse_example(
        self, received: Received, example: dict[str, Any], violation: SchemaViolation
    ) -> None:
        """Dead-letter the half of ``example`` that broke its contract: the record read, when
        it is that half, else the example (the other half was read earlier)."""
        label_rule = violation.field == "label"
        own = (received.event_type is EventType.LABEL) == label_rule
        await self._refuse(
            received, example["model_name"], violation, None if own else dumps(example)
        )

    async def _behind_first(self) -> list[TopicPartition]:
        """The partitions to poll: of each prediction and label partition of one number, the
        one behind in time (see :mod:`driftloop.services.ingest.alignment`); [] for all of them."""
        consumer = self.consumer
        assigned = consumer.assignment()
        if not self._aligned or not assigned or consumer.paused():
            return []  # a paused partition (its state being restored) would be waited on

        async def progress(partition: TopicPartition) -> Progress:
            more = await consumer.has_more(partition)
            return Progress(partition, consumer.read_time(partition), more)

        labels = self.settings.topic_labels
        pairs = [
            (await progress(tp), await progress(TopicPartition(labels, tp.partition)))
            for tp in assigned
            if tp.topic == self.settings.topic_predictions
        ]
        if len(pairs) * 2 != len(assigned):  # range assignment pairs them; anything else: all
            return []
        chosen = behind_first(pairs)
        return [] if len(chosen) == len(assigned) else chosen

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
        await self.checkpoint()

    async def checkpoint(self) -> None:
        """Checkpoint everything handled so far and wait until every checkpoint is done.

        While examples are held for a contract, what was handled since the last checkpoint is
        dropped instead, uncommitted: whoever reads these partitions next reads it again.
        """
        if self.guard.holding:
            self._forget_uncommitted()
        else:
            await self._begin_checkpoint()
        pending, self._in_flight = self._in_flight, []
        # All of them settle before a failure is raised: none is left running behind it.
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    def _forget_uncommitted(self) -> None:
        dropped = self.guard.drop_held() + len(self._buffer)
        self._buffer, self._partitions = [], []
        self.consumer.take_positions()
        self.consumer.take_ranges()
        self.join.drain_changes()
        HELD_EXAMPLES.set(0)
        log.info(
            "dropped examples not yet committed, to be read again", extra={"examples": dropped}
        )

    async def _begin_checkpoint(self) -> None:
        """Start a checkpoint of everything handled so far; the worker goes on joining.

        What it writes (examples, changelog entries, offsets) is taken now. Checkpoints overlap
        (the next one's Parquet file is written while this one commits) but finish in order,
        and at most ``IN_FLIGHT`` run at once, which bounds the memory they hold.
        """
        while True:
            for done in [task for task in self._in_flight if task.done()]:
                self._in_flight.remove(done)
                done.result()  # a failed checkpoint fails the worker
            if len(self._in_flight) < IN_FLIGHT:
                break
            await asyncio.wait(self._in_flight[:1])
        examples, partitions = self._buffer, self._partitions
        self._buffer, self._partitions = [], []
        offsets = self.consumer.take_ranges()
        changes = self.join.drain_changes()
        positions = self.consumer.take_positions()
        self._last_checkpoint = time.monotonic()
        # Serialized once, for the store and the examples topic.
        values = [dumps(example) for example in examples]
        stored = self._store_writer.write(values, offsets, self.guard.contracts)
        previous = self._in_flight[-1] if self._in_flight else None
        changelog_before = self._changelog_sent
        self._changelog_sent = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            self._finish(
                stored,
                (examples, values, partitions),
                changes,
                positions,
                previous,
                (changelog_before, self._changelog_sent),
            )
        )
        self._in_flight.append(task)

    async def _finish(
        self,
        stored: asyncio.Future[list[Manifest] | None],
        examples: tuple[list[dict[str, Any]], list[bytes], list[int]],
        changes: dict[str, tuple[int, dict[str, Any] | None]],
        positions: dict[TopicPartition, int],
        previous: asyncio.Task[None] | None,
        changelog: tuple[asyncio.Future[None] | None, asyncio.Future[None]],
    ) -> None:
        """Store, changelog, examples, commit: in that order (see the module's docstring).

        ``changelog`` is the previous checkpoint's changelog hand-off, awaited before this
        one's changelog is sent, and this one's, resolved once it is sent (or failed).
        """
        before, mine = changelog
        try:
            if before is not None:
                await before  # a failed one fails this one: its changes would be missing
            sent = await self._send_examples(*examples)
            for manifest in await stored or []:
                STORE_FILES.inc()
                STORE_ROWS.inc(manifest.rows)
                STORE_BYTES.inc(manifest.bytes)
            sent += await self._send_changelog(changes)
        except BaseException as error:
            mine.set_exception(error)
            mine.exception()  # retrieved here: the next checkpoint may never come to look
            raise
        mine.set_result(None)
        await asyncio.gather(*sent)
        if previous is not None:
            await previous  # commits go in checkpoint order
        await self.consumer.commit(positions)
        CHECKPOINTS.inc()
        self._publish_metrics()

    async def _send_examples(
        self, examples: list[dict[str, Any]], values: list[bytes], partitions: list[int]
    ) -> list[asyncio.Future[Any]]:
        if not examples:
            return []
        # Built from two validated events; tests check the result against its schema.
        return await self.examples.send_many(
            EventType.LABELLED_EXAMPLE,
            examples,
            validate=False,
            partitions=partitions if self._co_partitioned else None,
            values=values,
        )

    async def _send_changelog(
        self, changes: dict[str, tuple[int, dict[str, Any] | None]]
    ) -> list[asyncio.Future[Any]]:
        # One batch per partition: a record at a time would cost as much as the join itself.
        # Keyed by request id, to the request's partition; no snapshot: a tombstone.
        records = (
            (partition, request_id.encode(), None if snapshot is None else orjson.dumps(snapshot))
            for request_id, (partition, snapshot) in changes.items()
        )
        return await send_batches(self.changelog, self.settings.topic_ingest_changelog, records)

    async def close(self) -> None:
        """Checkpoint what was handled, then :meth:`stop`."""
        await self.checkpoint()
        await self.stop()

    async def stop(self) -> None:
        """Stop the clients and the store's writer without a checkpoint (after a failed one:
        what was not committed is read again by whoever reads these partitions next)."""
        await self.consumer.stop()
        await self.examples.stop()
        await self.changelog.stop()
        self._store_writer.close()
        await asyncio.to_thread(self.contracts.close)

    def _publish_metrics(self) -> None:
        # Counted by the join, published per checkpoint: cheaper than per event.
        for outcome, total in self.join.outcomes.items():
            new = total - self._published[outcome]
            if new:
                JOIN_OUTCOMES.labels(outcome).inc(new)
                self._published[outcome] = total
        for (model, feature), total in self.guard.unknown_categories.items():
            new = total - self._published[f"unknown:{model}:{feature}"]
            if new:
                UNKNOWN_CATEGORIES.labels(model, feature).inc(new)
                self._published[f"unknown:{model}:{feature}"] = total
        waiting = self.join.waiting
        JOIN_ENTRIES.labels("waiting").set(waiting)
        JOIN_ENTRIES.labels("finished").set(len(self.join) - waiting)

    # --- partitions come and go ----------------------------------------------------------

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        try:
            await self.checkpoint()
        except Exception:
            # Whoever gets these partitions re-reads them from the last commit; the state they
            # rebuild from the changelog is never behind that commit.
            log.exception("checkpoint on revocation failed")
        finally:
            self.join.drop_partitions({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        taken = list(assigned)
        partitions = {tp.partition for tp in taken}
        # aiokafka hands the new partitions to poll() before it calls this listener, and the
        # loop goes on polling while it runs: a label joined against a state not yet restored
        # would wait alone, and its snapshot would overwrite its prediction's in the changelog.
        # Paused partitions return nothing (what was fetched for them is dropped and fetched
        # again from the same position on resume), so pause them before the first await.
        self.consumer.pause(*taken)
        # The changelog is the truth for a partition being taken on, even one held before.
        self.join.drop_partitions(partitions)
        while True:
            try:
                restored = await read_changelog(self.settings, partitions)
                break
            except Exception:
                # Joining against a partial state would lose examples: wait for the changelog.
                log.exception("reading the join changelog failed; retrying")
                await asyncio.sleep(1)
        for request_id, snapshot in restored.items():
            self.join.restore(request_id, snapshot)
        self.consumer.resume(*taken)
        log.info(
            "join state restored",
            extra={"partitions": sorted(partitions), "entries": len(restored)},
        )


def ensure_changelog(settings: IngestSettings) -> bool:
    """The changelog topic: compacted, with as many partitions as the predictions topic.

    Returns whether the predictions, labels and examples topics have as many partitions
    each, so that an example's partition can be its request's without hashing the key again.
    """
    admin = kafka_admin(settings, "ingest")
    try:
        topics = [settings.topic_predictions, settings.topic_labels, settings.topic_examples]
        described = {
            topic["name"]: len(topic["partitions"]) for topic in admin.describe_topics(topics)
        }
        sizes = [described.get(topic, 0) for topic in topics]
        partitions = sizes[0] or settings.topic_partitions
        spec = {
            "num_partitions": partitions,
            "replication_factor": settings.topic_replication_factor,
            "configs": {"cleanup.policy": "compact"},
        }
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics({settings.topic_ingest_changelog: spec}, wait_for_metadata=True)
        return len(set(sizes)) == 1 and sizes[0] > 0
    finally:
        admin.close()


async def read_changelog(
    settings: IngestSettings, partitions: Iterable[int]
) -> dict[str, dict[str, Any] | None]:
    """The latest snapshot of every request_id in the changelog's ``partitions``."""
    topic = settings.topic_ingest_changelog
    assigned = [TopicPartition(topic, p) for p in partitions]
    if not assigned:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers.split(","),
        client_id="driftloop-ingest-restore",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        end = await consumer.end_offsets(assigned)
        latest: dict[str, dict[str, Any] | None] = {}
        while any([await consumer.position(tp) < end[tp] for tp in assigned]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    value = orjson.loads(record.value) if record.value else None
                    latest[record.key.decode()] = value
        return latest
    finally:
        await consumer.stop()
