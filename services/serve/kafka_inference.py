"""Inference over Kafka: serve answers the ``inference_request`` events of the inference-requests
topic through the same :class:`~driftloop.services.serve.dataplane.DataPlane` as REST.

The replicas share one consumer group (``serve_kafka_group_id``): each request is answered by
the replica its partition is assigned to. A poll's requests (at most ``serve_kafka_max_batch``)
are one batch: each is checked against the serving version's card and answered as a record
request with the request's id (the model's micro-batcher groups them into few calls), then the
batch's answers go out in **one Kafka transaction** with the consumer's offsets:

- each answer is a prediction event (the request's id, the version that answered, the models in
  shadow) on the predictions topic, keyed by the request's id as every prediction is: ingest
  joins it with the label as one it logged from HTTP;
- a request that names a ``reply_to`` topic gets the same event there too (the topic must start
  with ``serve_kafka_reply_prefix``: a request cannot make serve write into the loop's topics);
- a request that is not valid JSON or breaks the schema is dead-lettered by the consumer on the
  way in; one for another model, with a bad ``reply_to``, or whose features break the model's
  contract is dead-lettered here with the rule it broke (``model_name``, ``reply_to``,
  ``feature_type``...), and one the model fails on with rule ``inference_failed``. Nothing else
  of the batch is lost. Dead letters are stored before the transaction commits (at least once).

Exactly one answer per request: the answers and the offsets commit together or not at all, so
a replica killed mid-batch leaves an open transaction that the broker aborts (at once when the
replica restarts under the same ``serve_replica_id``, its transactional id; otherwise after
``serve_kafka_transaction_timeout_ms``), and the batch is answered again from the committed
offsets. Readers of the predictions topic read committed records only (every driftloop
consumer does), so they never see the aborted answers. A swap mid-batch loses nothing: each
request finishes on the version it started on, and its answer names it. While no version is
loaded nothing is consumed; when Kafka fails the session ends (its transaction aborted) and a
new one starts from the committed offsets, with one warning per outage.

Example:
    >>> inference = KafkaInference(settings, plane)  # doctest: +SKIP
    >>> await inference.run(stop)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from prometheus_client import Counter

from driftloop.async_messaging import AsyncEventConsumer, AsyncEventProducer
from driftloop.errors import (
    BrokerUnavailable,
    DriftloopError,
    InvalidInput,
    ModelNotReady,
    SchemaViolation,
)
from driftloop.events import EventType
from driftloop.messaging import Received
from driftloop.schemas import dumps
from driftloop.services.serve.dataplane import DataPlane, Inference
from driftloop.services.serve.protocol import PredictionRow, prediction_event
from driftloop.services.serve.settings import ServeSettings
from driftloop.services.serve.shadow import ShadowRequest

log = logging.getLogger(__name__)

ANSWERED = Counter(
    "driftloop_serve_kafka_answered_total",
    "Inference requests from Kafka answered (committed with their offsets).",
)
REJECTED = Counter(
    "driftloop_serve_kafka_rejected_total",
    "Inference requests from Kafka dead-lettered here, by the rule they broke.",
    ["rule"],
)
ABORTED = Counter(
    "driftloop_serve_kafka_aborted_total",
    "Batches of inference requests whose transaction was aborted (answered again later).",
)

RETRY_S = 2.0
NOT_READY_S = 0.5
POLL_MS = 100
REPLY_METADATA_S = 5.0  # how long a reply topic's partitions are waited for


@dataclass
class Answers:
    """What one batch of requests comes to: prediction events, replies and rejections."""

    predictions: list[dict[str, Any]] = field(default_factory=list)
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (topic, event)
    rejected: list[tuple[Received, SchemaViolation]] = field(default_factory=list)


class KafkaInference:
    """serve's Kafka transport: a consumer-group member that answers inference requests.

    Parameters:
        settings: the brokers, topics, group, batch size and reply prefix.
        plane: the data plane that answers (the REST transport's).
    """

    def __init__(self, settings: ServeSettings, plane: DataPlane) -> None:
        self.settings = settings
        self.plane = plane
        self._reply_topics: set[str] = set()  # reply topics known to exist
        self._producer: AsyncEventProducer | None = None  # the session's

    async def run(self, stop: asyncio.Event) -> None:
        """Answer requests until ``stop``: a session per connection to Kafka."""
        warned = False
        while not stop.is_set():
            if not self.plane.ready():
                await _pause(stop, NOT_READY_S)
                continue
            try:
                await self.session(stop)
                warned = False
            except ProducerFenced:
                # Another process took this replica's transactional id: two replicas share a
                # SERVE_REPLICA_ID. Answering on would answer requests twice.
                log.error("another replica uses this replica's id; Kafka inference stops")
                raise
            except (KafkaError, BrokerUnavailable, ModelNotReady, OSError) as error:
                ABORTED.inc()
                if not warned:
                    log.warning(
                        "Kafka inference paused; it resumes from the committed offsets",
                        extra={"error": repr(error)},
                    )
                    warned = True
                await _pause(stop, RETRY_S)

    async def session(self, stop: asyncio.Event) -> None:
        """One consumer and one transactional producer, until ``stop`` or a failure."""
        settings = self.settings
        service = f"serve-{settings.serve_replica_id}"
        consumer = AsyncEventConsumer(
            settings,
            settings.serve_kafka_group_id,
            [EventType.INFERENCE_REQUEST],
            service=service,
            max_poll_records=settings.serve_kafka_max_batch,
        )
        producer = AsyncEventProducer(
            settings,
            service=service,
            transactional_id=f"driftloop-serve-{settings.serve_replica_id}",
            transaction_timeout_ms=settings.serve_kafka_transaction_timeout_ms,
        )
        await producer.start()
        self._producer = producer
        try:
            await consumer.start()
            try:
                while not stop.is_set():
                    batch = await consumer.poll(timeout_ms=POLL_MS)
                    positions = consumer.take_positions()
                    if positions:
                        await self.commit(consumer, producer, batch, positions)
            finally:
                await consumer.stop()
        finally:
            await producer.stop()

    async def commit(
        self,
        consumer: AsyncEventConsumer,
        producer: AsyncEventProducer,
        batch: list[Received],
        positions: dict[TopicPartition, int],
    ) -> None:
        """Answer ``batch`` and commit the answers with ``positions`` in one transaction."""
        answers = await self.answer(batch)
        for received, violation in answers.rejected:
            REJECTED.labels(violation.rule).inc()
            await consumer.reject(received, violation, model_name=received.event["model_name"])
        await consumer.flush_dead_letters()
        client = producer.client
        async with client.transaction():
            if answers.predictions:
                await producer.send_many(EventType.PREDICTION, answers.predictions, validate=False)
            for topic, event in answers.replies:
                await client.send(topic, dumps(event), key=event["request_id"].encode())
            await client.send_offsets_to_transaction(positions, self.settings.serve_kafka_group_id)
        ANSWERED.inc(len(answers.predictions))

    async def answer(self, batch: list[Received]) -> Answers:
        """The prediction events for ``batch``'s valid requests, the reply copies, and the
        requests rejected with their rule. Raises :class:`ModelNotReady` when no version is
        loaded (the batch is answered later)."""
        answers = Answers()
        accepted: list[tuple[Received, Inference, str | None]] = []
        for received in batch:
            try:
                reply = await self._reply_topic(received.event)
                inference = self._begin(received)
            except ModelNotReady:
                raise
            except DriftloopError as error:
                answers.rejected.append((received, _violation(error)))
                continue
            inference.log = []
            accepted.append((received, inference, reply))
        outcomes = await asyncio.gather(
            *(self.plane.infer(inference) for _, inference, _ in accepted),
            return_exceptions=True,
        )
        answered: list[tuple[ShadowRequest, str | None]] = []
        for (received, inference, reply), outcome in zip(accepted, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                message = f"the model failed on this request: {outcome!r}"
                violation = SchemaViolation("$", "inference_failed", message)
                answers.rejected.append((received, violation))
                continue
            assert inference.log is not None
            answered += [(logged, reply) for logged in inference.log]
        requests = [logged for logged, _ in answered]
        for rows, (_, reply) in zip(await self._shadowed(requests), answered, strict=True):
            events = [prediction_event(row) for row in rows]
            answers.predictions += events
            if reply is not None:
                answers.replies += [(reply, event) for event in events]
        return answers

    def _begin(self, received: Received) -> Inference:
        event = received.event
        name = event["model_name"]
        if name != self.plane.name:
            raise SchemaViolation(
                "model_name",
                "model_name",
                f"model_name {name!r} is not served by these replicas (they serve "
                f"{self.plane.name!r})",
            )
        records = event.get("records")
        body = event["features"] if records is None else {"records": records}
        return self.plane.begin_records(body, request_id=event["request_id"])

    async def _reply_topic(self, event: dict[str, Any]) -> str | None:
        """The request's reply topic, checked: under the prefix, and known to the brokers."""
        topic: str | None = event.get("reply_to")
        if topic is None or topic in self._reply_topics:
            return topic
        prefix = self.settings.serve_kafka_reply_prefix
        if not topic.startswith(prefix):
            raise SchemaViolation(
                "reply_to", "reply_to", f"reply_to must be a topic starting with {prefix!r}"
            )
        assert self._producer is not None
        try:
            partitions = await asyncio.wait_for(
                self._producer.client.partitions_for(topic), REPLY_METADATA_S
            )
        except (TimeoutError, KafkaError):
            partitions = None
        if not partitions:
            raise SchemaViolation("reply_to", "reply_to", f"reply topic {topic!r} does not exist")
        self._reply_topics.add(topic)
        return topic

    async def _shadowed(self, requests: list[ShadowRequest]) -> list[list[PredictionRow]]:
        """Each answered request's rows, with its models' predictions in shadow."""
        scorer = self.plane.scorer
        if scorer is None or not any(request.shadowed for request in requests):
            return [request.rows for request in requests]
        return await scorer.scored(requests)


def _violation(error: DriftloopError) -> SchemaViolation:
    """A request's problem as a dead letter names it: the field within the request event."""
    if isinstance(error, SchemaViolation):
        return error
    if isinstance(error, InvalidInput):
        name = error.field if error.field in ("$", "records") else f"features.{error.field}"
        return SchemaViolation(name, error.rule, str(error))
    return SchemaViolation("$", "invalid_input", str(error))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
