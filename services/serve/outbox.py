"""Events on their way to Kafka, kept out of the requests' way: a bounded buffer and a sender.

A request hands its prediction events to :meth:`EventOutbox.put`, which never waits and never
fails. It may hand compact rows with a ``build`` that turns each into its event: the request
pays for a tuple, and the sender builds, serializes and partitions the events in batches. When
the buffer is full (Kafka down for a while) new events are dropped, counted in
``driftloop_serve_log_dropped_total`` and logged at most once per ``LOG_EVERY_S``. A background
task (:meth:`EventOutbox.run`) sends what is buffered in batches; an event leaves the buffer
only once Kafka has stored it, so a send that fails is sent again, the same events (consumers
dedupe on ``event_id``). The producer is created lazily and re-created after a failure, so
serve starts without a broker and logging resumes by itself when the broker is back.

Example:
    >>> outbox = EventOutbox(settings, capacity=100_000)  # doctest: +SKIP
    >>> outbox.put(EventType.PREDICTION, [event])  # doctest: +SKIP
    1
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from driftloop.async_messaging import AsyncEventProducer
from driftloop.errors import BrokerUnavailable
from driftloop.events import EventType
from driftloop.messaging import EVENTS_PRODUCED
from driftloop.schemas import dumps
from driftloop.settings import Settings
from services.serve.partitioning import partitions_for

log = logging.getLogger(__name__)

LOGGED = Counter(
    "driftloop_serve_log_sent_total", "Events serve stored on Kafka, by event.", ["event"]
)
DROPPED = Counter(
    "driftloop_serve_log_dropped_total",
    "Events serve dropped because its Kafka buffer was full, by event.",
    ["event"],
)
BUFFERED = Gauge("driftloop_serve_log_buffered", "Events waiting for Kafka.")
KAFKA_UP = Gauge("driftloop_serve_log_kafka_up", "1 while the event producer is connected.")

LOG_EVERY_S = 10.0
SEND_BATCH = 500  # per send: the encoding runs on the event loop, so keep each slice short
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


class EventOutbox:
    """A bounded buffer of events and the task that sends them to their topics.

    Parameters:
        settings: where the brokers and topics are.
        capacity: most events buffered; past it new events are dropped and counted.
        linger_s: how long the first event waits for others to share its send (a send costs
            the event loop far more than an event does).
        service: the producer's client id suffix.
    """

    def __init__(
        self, settings: Settings, capacity: int, linger_s: float = 0.02, service: str = "serve"
    ) -> None:
        self.settings = settings
        self.capacity = capacity
        self.linger_s = linger_s
        self.service = service
        # (event type, event or compact row, what builds the event from the row or None)
        self._buffer: deque[tuple[EventType, Any, Callable[[Any], dict[str, Any]] | None]] = deque()
        # events built and being sent: kept as built until Kafka stores them, so a retry
        # sends the same event ids
        self._sending: list[tuple[EventType, dict[str, Any]]] = []
        self._arrived = asyncio.Event()
        self._producer: AsyncEventProducer | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._dropped_since_log = 0
        self._last_log = 0.0
        self._timeout_s = max(settings.kafka_client_timeout_ms / 1000, 1.0)

    def __len__(self) -> int:
        return len(self._buffer) + len(self._sending)

    def put(
        self,
        event_type: EventType,
        events: list[Any],
        build: Callable[[Any], dict[str, Any]] | None = None,
    ) -> int:
        """Buffer ``events`` for sending; returns how many were kept (the rest are dropped).

        ``build``, when given, turns each of ``events`` into the event to send, later, in the
        sender (compact rows from a request, built off its path).
        """
        room = self.capacity - len(self._buffer) - len(self._sending)
        if room < len(events):
            dropped = len(events) - max(room, 0)
            DROPPED.labels(event_type.schema_name).inc(dropped)
            self._dropped_since_log += dropped
            events = events[: max(room, 0)]
            now = time.monotonic()
            if now - self._last_log >= LOG_EVERY_S:
                log.warning(
                    "the event buffer is full (Kafka is not taking events): dropping",
                    extra={"dropped": self._dropped_since_log, "capacity": self.capacity},
                )
                self._dropped_since_log, self._last_log = 0, now
        if len(events) == 1:
            self._buffer.append((event_type, events[0], build))
        else:
            self._buffer.extend((event_type, event, build) for event in events)
        if events:
            self._arrived.set()
        return len(events)

    async def run(self, stop: asyncio.Event) -> None:
        """Send buffered events until ``stop`` is set; then try once more to send the rest."""
        failures = 0
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if not self._buffer and not self._sending:
                    self._arrived.clear()
                    arrived = asyncio.create_task(self._arrived.wait())
                    await asyncio.wait({arrived, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    arrived.cancel()
                    continue
                if self.linger_s > 0 and len(self._buffer) < SEND_BATCH:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(stopping), self.linger_s)
                if await self._send_some():
                    failures = 0
                    continue
                delay = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), delay)
            if self._buffer or self._sending:
                await self._send_some()
        finally:
            stopping.cancel()
            self._drop_producer()
            if self._stopping:
                await asyncio.wait(self._stopping, timeout=5.0)

    def _take(self) -> list[tuple[EventType, dict[str, Any]]]:
        """The oldest events, built, moved from the buffer to the send in progress."""
        if not self._sending:
            buffer = self._buffer
            for _ in range(min(SEND_BATCH, len(buffer))):
                event_type, event, build = buffer.popleft()
                self._sending.append((event_type, build(event) if build else event))
        return self._sending

    async def _send_some(self) -> bool:
        """Send the oldest events; True when Kafka stored them (they leave the buffer)."""
        by_type: dict[EventType, list[dict[str, Any]]] = {}
        for event_type, event in self._take():
            by_type.setdefault(event_type, []).append(event)
        # Waited on without wait_for: a client call that ignores its cancellation (seen with
        # aiokafka after a broker restart) must not hold the sender; it is dropped instead.
        sending = asyncio.create_task(self._deliver(by_type))
        done, _ = await asyncio.wait({sending}, timeout=self._timeout_s * 2)
        error = None
        if not done:
            sending.cancel()
            error = TimeoutError(f"Kafka did not store the events within {self._timeout_s * 2} s")
        elif sending.exception() is not None:
            error = sending.exception()
        if error is not None:  # Kafka down, slow or gone: keep the events, retry later
            self._note_failure(error)
            self._drop_producer()
            return False
        self._sending = []
        for event_type, events in by_type.items():
            LOGGED.labels(event_type.schema_name).inc(len(events))
        BUFFERED.set(len(self._buffer))
        return True

    async def _deliver(self, by_type: dict[EventType, list[dict[str, Any]]]) -> None:
        producer = await self._connected()
        futures: list[Any] = []
        for event_type, events in by_type.items():
            futures += await self._send_batches(producer.client, event_type, events)
        await asyncio.gather(*futures)

    async def _send_batches(
        self, client: Any, event_type: EventType, events: list[dict[str, Any]]
    ) -> list[Any]:
        """Queue ``events`` as one record batch per partition; returns the batches' futures.

        ``AsyncEventProducer.send_many`` does the same; this one partitions with the faster
        :func:`~services.serve.partitioning.partitions_for` (same partitions), since on the
        serving event loop every microsecond an event costs is taken from requests.
        """
        topic = self.settings.topic_for(event_type)
        await client.client._wait_on_metadata(topic)
        partitions = sorted(client.client.cluster.partitions_for_topic(topic) or ())
        if not partitions:
            raise BrokerUnavailable(f"no partitions known for topic {topic}")
        count = len(partitions)
        keys = [event_type.key(event) for event in events]
        hashed = partitions_for([key for key in keys if key is not None], count)
        batches: dict[int, Any] = {}
        futures = []
        spread = 0
        for index, event in enumerate(events):
            key = keys[index]
            if key is None:
                partition = partitions[index % count]
            else:
                partition = partitions[hashed[spread]]
                spread += 1
            value = dumps(event)
            batch = batches.get(partition)
            if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
                if batch is not None:
                    futures.append(await client.send_batch(batch, topic, partition=partition))
                batch = batches[partition] = client.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for partition, batch in batches.items():
            futures.append(await client.send_batch(batch, topic, partition=partition))
        EVENTS_PRODUCED.labels(topic).inc(len(events))
        return futures

    async def _connected(self) -> AsyncEventProducer:
        if self._producer is None:
            producer = AsyncEventProducer(
                self.settings,
                service=self.service,
                request_timeout_ms=max(int(self._timeout_s * 1000), 1000),
                # At least once either way (a failed batch is sent again, consumers dedupe on
                # event_id); without idempotence a new producer needs no id from the broker.
                enable_idempotence=False,
            )
            self._producer = producer  # dropped (and stopped) by the caller if start fails
            await producer.start()
            KAFKA_UP.set(1)
            log.info("sending events to Kafka", extra={"buffered": len(self)})
        return self._producer

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        KAFKA_UP.set(0)
        if producer is not None and hasattr(producer, "client"):
            task = asyncio.create_task(self._stop(producer))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    @staticmethod
    async def _stop(producer: AsyncEventProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5.0)

    def _note_failure(self, error: Exception) -> None:
        BUFFERED.set(len(self))
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "Kafka is not taking events; keeping them and retrying",
                extra={"error": str(error) or type(error).__name__, "buffered": len(self)},
            )
