"""Kafka clients with safe defaults, and the event producer and consumer every service uses.

- :func:`kafka_producer` writes with ``acks=all`` and idempotence: a retried send is not a
  duplicate and a written record survives the leader's loss.
- :func:`kafka_consumer` never auto-commits: :class:`EventConsumer` commits only after the
  handler has processed a batch and its dead letters are on the broker (at-least-once).
- :class:`EventConsumer` validates every record against its schema; a record that fails goes
  to the dead-letter topic with its original bytes and never blocks its partition.
- :func:`ensure_topics` creates the topics from settings, idempotently.

Example:
    >>> settings = Settings()
    >>> producer = EventProducer(settings, service="docs")  # doctest: +SKIP
    >>> producer.send(EventType.LABEL, new_event(request_id="r-1", label=1))  # doctest: +SKIP
    >>> with EventConsumer(settings, "docs", [EventType.LABEL], service="docs") as consumer:
    ...     consumer.run(lambda batch: print(len(batch)), max_batches=1)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, NamedTuple, Self

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition
from prometheus_client import Counter, Gauge

from driftloop.errors import BrokerUnavailable, SchemaViolation
from driftloop.events import EventType, RecordOrigin, new_event
from driftloop.schemas import EventSchemas, dumps
from driftloop.settings import Settings

log = logging.getLogger(__name__)

# A dead letter carries the original record in base64 (4/3 of its size) plus the error, so its
# topic and producer allow more than the broker's 1 MiB default.
DEAD_LETTER_BYTES = 8 << 20

EVENTS_PRODUCED = Counter(
    "driftloop_events_produced_total", "Events handed to the Kafka producer.", ["topic"]
)
EVENTS_CONSUMED = Counter(
    "driftloop_events_consumed_total",
    "Records read from Kafka, by outcome (valid or dead_lettered).",
    ["topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "driftloop_dead_letters_total",
    "Records sent to the dead-letter topic, by the schema rule they broke.",
    ["topic", "rule"],
)
CONSUMER_LAG = Gauge(
    "driftloop_consumer_lag",
    "Records on the broker not yet read by this consumer.",
    ["topic", "partition"],
)


def _unavailable(settings: Settings, error: Exception) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answered at {settings.kafka_bootstrap_servers} within "
        f"{settings.kafka_client_timeout_ms} ms ({error}); start one with `driftloop stack up`"
    )


def _client_config(settings: Settings, service: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "client_id": f"driftloop-{service}",
        "bootstrap_timeout_ms": settings.kafka_client_timeout_ms,
    }


def kafka_producer(settings: Settings, service: str, **overrides: Any) -> KafkaProducer:
    """A producer with ``acks=all`` and idempotence; ``overrides`` win over the defaults."""
    config = _client_config(settings, service) | {
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": settings.kafka_linger_ms,
        "max_block_ms": settings.kafka_client_timeout_ms,
    }
    try:
        return KafkaProducer(**(config | overrides))
    except KafkaTimeoutError as error:
        raise _unavailable(settings, error) from None


def kafka_consumer(
    settings: Settings, service: str, group_id: str | None, *topics: str, **overrides: Any
) -> KafkaConsumer:
    """A consumer that never commits on its own and starts a new group at the earliest record."""
    config = _client_config(settings, service) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": settings.kafka_max_poll_records,
    }
    try:
        return KafkaConsumer(*topics, **(config | overrides))
    except KafkaTimeoutError as error:
        raise _unavailable(settings, error) from None


def kafka_admin(settings: Settings, service: str = "admin") -> KafkaAdminClient:
    try:
        return KafkaAdminClient(**_client_config(settings, service))
    except KafkaTimeoutError as error:
        raise _unavailable(settings, error) from None


def ensure_topics(settings: Settings) -> dict[str, str]:
    """Create every configured topic that is missing; returns ``{topic: created|exists}``.

    A topic that exists with fewer partitions than configured is grown, since partitions are
    the unit of consumer parallelism; one with more is left alone (Kafka cannot shrink them).
    """
    admin = kafka_admin(settings)
    try:
        wanted = sorted(set(settings.topics().values()))
        existing = {t["name"]: len(t["partitions"]) for t in admin.describe_topics()}
        missing = [name for name in wanted if name not in existing]
        outcome = {name: "exists" for name in wanted if name in existing}
        if missing:
            spec: dict[str, Any] = {
                "num_partitions": settings.topic_partitions,
                "replication_factor": settings.topic_replication_factor,
            }
            specs = {name: dict(spec) for name in missing}
            if settings.topic_dead_letters in specs:
                specs[settings.topic_dead_letters]["configs"] = {
                    "max.message.bytes": str(DEAD_LETTER_BYTES)
                }
            if settings.topic_contracts in specs:
                # One partition, kept forever: every reader sees the versions in one order.
                specs[settings.topic_contracts] |= {
                    "num_partitions": 1,
                    "configs": {"retention.ms": "-1", "cleanup.policy": "delete"},
                }
            if settings.topic_online_models in specs:
                # The latest decision per model is the state: a replica reads it at start.
                specs[settings.topic_online_models]["configs"] = {"cleanup.policy": "compact"}
            # Another process may create them between our describe and our create.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(specs, wait_for_metadata=True)
            outcome |= {name: "created" for name in missing}
        grow = {
            name: settings.topic_partitions
            for name, count in existing.items()
            if name in outcome
            and count < settings.topic_partitions
            and name != settings.topic_contracts
        }
        if grow:
            admin.create_partitions(grow)
            outcome |= {name: "grown" for name in grow}
        return outcome
    finally:
        admin.close()


class ClosesOnExit:
    """``with`` support for a client with a ``close()``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EventProducer(ClosesOnExit):
    """Validates events and writes them to their topic, keyed for ordering.

    Parameters:
        settings: where the brokers and topics are.
        service: the writing service's name (client id, logs).
        schemas: the schemas to validate against; the repo's by default.
        overrides: extra ``KafkaProducer`` settings.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        service: str,
        schemas: EventSchemas | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings
        self.schemas = schemas or EventSchemas(settings.schemas_dir)
        self._producer = kafka_producer(settings, service, **overrides)

    def send(
        self, event_type: EventType, event: dict[str, Any], *, key: bytes | None = None
    ) -> FutureRecordMetadata:
        """Validate ``event`` (raising :class:`SchemaViolation`) and send it without waiting.

        The record key is the event type's own (see :class:`EventType`) unless ``key`` is given.
        """
        self.schemas.validate(event_type, event)
        topic = self.settings.topic_for(event_type)
        EVENTS_PRODUCED.labels(topic).inc()
        return self._producer.send(topic, value=dumps(event), key=key or event_type.key(event))

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout)


class Received(NamedTuple):
    """A valid event with the record it came from (one per record read: a tuple is cheapest)."""

    event_type: EventType
    event: dict[str, Any]
    origin: RecordOrigin
    value: bytes  # the record's value as read: the event's JSON, for a consumer that keeps it


DeadLetter = tuple[bytes | None, dict[str, Any]]  # (the original key, the dead-letter event)


class RecordCheck:
    """Decodes and validates raw records of some event types; what fails becomes a dead letter.

    Shared by the consumers of both Kafka clients (any record with ``topic``, ``partition``,
    ``offset``, ``key`` and ``value`` will do).
    """

    def __init__(
        self,
        settings: Settings,
        schemas: EventSchemas,
        service: str,
        event_types: Iterable[EventType],
    ) -> None:
        self.settings = settings
        self.schemas = schemas
        self.service = service
        self._type_of_topic = {settings.topic_for(t): t for t in event_types}
        self.topics = list(self._type_of_topic)

    def __call__(
        self, topic: str, records: Iterable[Any]
    ) -> tuple[list[Received], list[DeadLetter]]:
        event_type = self._type_of_topic[topic]
        decode = self.schemas.decoder(event_type)
        limit = self.settings.kafka_max_event_bytes
        valid: list[Received] = []
        letters: list[DeadLetter] = []
        for record in records:
            origin: RecordOrigin = {
                "topic": topic,
                "partition": record.partition,
                "offset": record.offset,
            }
            value = record.value or b""
            try:
                # Dead letters carry a whole record and more; the limit is for what apps send.
                if len(value) > limit and event_type is not EventType.DEAD_LETTER:
                    raise SchemaViolation(
                        "$", "maxBytes", f"{len(value)} bytes, over the {limit} allowed"
                    )
                event = decode(value)
            except SchemaViolation as violation:
                if event_type is EventType.DEAD_LETTER:
                    # Never dead-letter a dead letter: that would loop on its own topic.
                    log.error("skipped an invalid dead letter", extra={"origin": origin})
                    continue
                letters.append((record.key, self.letter(record.key, value, origin, violation)))
                continue
            valid.append(Received(event_type, event, origin, value))
        EVENTS_CONSUMED.labels(topic, "valid").inc(len(valid))
        return valid, letters

    def letter(
        self,
        key: bytes | None,
        value: bytes,
        origin: RecordOrigin,
        violation: SchemaViolation,
        model_name: str | None = None,
    ) -> dict[str, Any]:
        """The dead-letter event for one record (counted and logged); ``model_name`` names
        the model whose contract it broke."""
        EVENTS_CONSUMED.labels(origin["topic"], "dead_lettered").inc()
        DEAD_LETTERS.labels(origin["topic"], violation.rule).inc()
        log.warning(
            "dead-lettered a record",
            extra={"origin": origin, "field": violation.field, "rule": violation.rule},
        )
        letter = new_event(
            service=self.service,
            origin=origin,
            key_b64=base64.b64encode(key).decode() if key is not None else None,
            payload_b64=base64.b64encode(value).decode(),
            error=violation.as_detail(),
        )
        if model_name is not None:
            letter["model_name"] = model_name
        return letter


class EventConsumer(ClosesOnExit):
    """Reads, validates and hands over events in batches; commits after the handler is done.

    Parameters:
        settings: where the brokers and topics are.
        group_id: the consumer group; replicas that share it share the partitions. ``None``
            reads without a group (every replica sees everything, nothing is committed).
        event_types: the events to read; each comes from its configured topic.
        service: the reading service's name, written into its dead letters.
        schemas: the schemas to validate against; the repo's by default.
        listener: told when partitions are assigned or revoked (a service with state per
            partition saves and restores it there).
        overrides: extra ``KafkaConsumer`` settings.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str | None,
        event_types: Iterable[EventType],
        *,
        service: str,
        schemas: EventSchemas | None = None,
        listener: ConsumerRebalanceListener | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings
        self.service = service
        self.schemas = schemas or EventSchemas(settings.schemas_dir)
        self._check = RecordCheck(settings, self.schemas, service, event_types)
        self._consumer = kafka_consumer(settings, service, group_id, **overrides)
        self._consumer.subscribe(self._check.topics, listener=listener)
        self._dead_letters = EventProducer(
            settings, service=service, schemas=self.schemas, max_request_size=DEAD_LETTER_BYTES
        )
        self._grouped = group_id is not None
        self.uncommitted = 0  # records polled (valid or not) since the last commit

    def poll(self, timeout_ms: int = 1000) -> list[Received]:
        """The next batch of valid events; invalid records are dead-lettered on the way."""
        batch: list[Received] = []
        for partition, records in self._consumer.poll(timeout_ms=timeout_ms).items():
            self.uncommitted += len(records)
            valid, letters = self._check(partition.topic, records)
            batch += valid
            for key, letter in letters:
                self._dead_letters.send(EventType.DEAD_LETTER, letter, key=key)
            self._observe_lag(partition)
        return batch

    def commit(self) -> None:
        """Commit everything :meth:`poll` returned, once its dead letters are on the broker."""
        self._dead_letters.flush()
        if self._grouped:
            self._consumer.commit()
        self.uncommitted = 0

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching ``partitions`` until :meth:`resume` (the group keeps them)."""
        self._consumer.pause(*partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._consumer.resume(*partitions)

    def assigned(self, topic: str) -> list[TopicPartition]:
        """The partitions of ``topic`` this consumer reads now (none before the group assigns
        them); the assignment changes only inside :meth:`poll`."""
        return [p for p in self._consumer.assignment() or () if p.topic == topic]

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Each partition's end: the offset the next record written there gets (a round trip
        to the broker)."""
        wanted = list(partitions)
        return dict(self._consumer.end_offsets(wanted)) if wanted else {}

    def offsets_for_time(
        self, partitions: Iterable[TopicPartition], timestamp_ms: int
    ) -> dict[TopicPartition, int | None]:
        """Per partition, the offset of its first record written at or after ``timestamp_ms``
        (the record's timestamp: milliseconds since the epoch); None where there is none yet.
        A round trip to the broker."""
        wanted = {partition: timestamp_ms for partition in partitions}
        found = self._consumer.offsets_for_times(dict(wanted)) if wanted else {}
        return {p: None if found.get(p) is None else int(found[p].offset) for p in wanted}

    def position(self, partition: TopicPartition) -> int | None:
        """The offset of the next record :meth:`poll` returns from the assigned ``partition``
        (every record before it has been returned); None while unknown."""
        position = self._consumer.position(partition)
        return None if position is None else int(position)

    def commit_before(self, limits: Mapping[TopicPartition, int]) -> None:
        """:meth:`commit`, but no partition in ``limits`` past its offset there: a record read
        but not acted on yet (held) is read again after a restart."""
        if not limits:
            self.commit()
            return
        self._dead_letters.flush()
        if self._grouped:
            offsets = {}
            for partition in self._consumer.assignment() or ():
                position = self.position(partition)
                if position is not None:
                    offset = min(position, limits.get(partition, position))
                    offsets[partition] = OffsetAndMetadata(offset, "", -1)
            if offsets:
                self._consumer.commit(offsets)
        self.uncommitted = 0

    def run(
        self,
        handle: Callable[[list[Received]], None],
        *,
        stop: threading.Event | None = None,
        max_batches: int | None = None,
        timeout_ms: int = 1000,
    ) -> int:
        """Poll, hand each non-empty batch to ``handle``, commit; returns the events handled.

        If ``handle`` raises, nothing of that batch is committed: after a restart the group
        reads it again (at-least-once), so handlers must be idempotent.
        """
        handled = batches = 0
        while not (stop and stop.is_set()) and (max_batches is None or batches < max_batches):
            batch = self.poll(timeout_ms)
            batches += 1
            if batch:
                handle(batch)
                handled += len(batch)
            self.commit()
        return handled

    def close(self) -> None:
        self._dead_letters.close()
        self._consumer.close()

    def _observe_lag(self, partition: TopicPartition) -> None:
        highwater = self._consumer.highwater(partition)
        if highwater is not None:
            lag = highwater - self._consumer.position(partition)
            CONSUMER_LAG.labels(partition.topic, str(partition.partition)).set(lag)
