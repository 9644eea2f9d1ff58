"""Events on their way to Kafka, kept out of the requests' way: a bounded buffer in the serving
process, the sending in a process of its own.

A request hands its prediction events to :meth:`EventOutbox.put`, which never waits and never
fails. It may hand compact rows with a ``build`` that turns each into its event: the request
pays for a tuple. Every ``linger_s`` the outbox hands what it holds, pickled in one message
(well under a microsecond a row), to the sender process, which builds, serializes, partitions
and sends the events (:class:`EventSender`: aiokafka, record batches per partition) and says
how many Kafka stored. That work (some 15 us a prediction, most of it the Kafka client's
Python) would otherwise take the serving process's one core, and its GIL, from requests.

An event counts against ``capacity`` from :meth:`EventOutbox.put` until Kafka has stored it.
When the buffer is full (Kafka down for a while) new events are dropped, counted in
``driftloop_serve_log_dropped_total`` and logged at most once per ``LOG_EVERY_S``. The sender
keeps an event until Kafka has stored it, so a send that fails is sent again, the same events
(at least once; consumers dedupe on ``event_id``). Its producer is created lazily and
re-created after a failure, so serve starts without a broker and logging resumes by itself
when the broker is back. A sender process that dies is started again (what it held is counted
as dropped); one whose serving process is gone sends what it holds and exits.

The sender is started with :func:`driftloop.children.start_piped`, not run as a
:class:`~driftloop.children.HelperProcess`: it is one long exchange over pipes (hand-offs in,
each sent while the next arrives; stored counts and the producer's state out, whenever they
change), where a helper for calls carries one call at a time and an answer per call.

Example:
    >>> outbox = EventOutbox(settings, capacity=100_000)  # doctest: +SKIP
    >>> outbox.put(EventType.PREDICTION, [event])  # doctest: +SKIP
    1
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

from driftloop.async_messaging import AsyncEventProducer
from driftloop.children import exit_with_parent, start_piped
from driftloop.events import EventType
from driftloop.messaging import EVENTS_PRODUCED
from driftloop.settings import Settings

log = logging.getLogger("driftloop.services.serve.outbox")  # also when run as __main__ (the sender)

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
SEND_BATCH = 2000  # events per send (fewer, larger record batches cost the broker less)
HAND_BATCH = 2000  # events per message to the sender process
# A record batch's most bytes. At the client's default (16 KiB: some 35 predictions) a hand-off
# went out as a produce request per few dozen events; in one batch per partition it is one
# request. Measured at concurrency 8: the sender's CPU a prediction 12-14 us -> 10-11, the
# broker's 7-16 -> 3-6. Under the broker's default max.message.bytes (1 MiB), which bounds a
# batch.
SEND_BATCH_BYTES = 512 * 1024
RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
RESTART_S = 1.0  # before starting a sender process that died again
FRAME = struct.Struct("!I")
SENDER_NICE = 10

Build = Callable[[Any], dict[str, Any]] | None


# --- the serving process's side ---------------------------------------------------------------


class EventOutbox:
    """A bounded buffer of events, and the task that hands them to the sender process.

    Parameters:
        settings: where the brokers and topics are (the sender process gets them).
        capacity: most events held (here or in the sender, not yet stored by Kafka); past it
            new events are dropped and counted.
        linger_s: how often what arrived is handed to the sender (and how long the sender's
            first event waits for others to share its send). Each hand-off wakes the sender
            and becomes a produce request: at 100 ms rather than 20, the sender's CPU a
            prediction fell from 19-31 us to 14-18 and the broker's from 15-32 to 7-12, at
            concurrency 8 on two cores, where both share the cores with the serving process.
        service: the producer's client id suffix.
    """

    def __init__(
        self, settings: Settings, capacity: int, linger_s: float = 0.1, service: str = "serve"
    ) -> None:
        self.settings = settings
        self.capacity = capacity
        self.linger_s = linger_s
        self.service = service
        # (event type, event or compact row, what builds the event from the row or None)
        self._pending: list[tuple[EventType, Any, Build]] = []
        self._in_flight = 0  # handed to the sender process, not yet stored by Kafka
        self._arrived = asyncio.Event()
        self._dropped_since_log = 0
        self._last_log = 0.0
        self._timeout_s = max(settings.kafka_client_timeout_ms / 1000, 1.0)

    def __len__(self) -> int:
        return len(self._pending) + self._in_flight

    def put(self, event_type: EventType, events: list[Any], build: Build = None) -> int:
        """Buffer ``events`` for sending; returns how many were kept (the rest are dropped).

        ``build``, when given, turns each of ``events`` into the event to send, later, in the
        sender process (compact rows from a request, built off its path).
        """
        pending = self._pending
        room = self.capacity - len(pending) - self._in_flight
        if room < len(events):
            self._drop(event_type, len(events) - max(room, 0))
            events = events[: max(room, 0)]
        if len(events) == 1:
            pending.append((event_type, events[0], build))
        else:
            pending.extend((event_type, event, build) for event in events)
        if events and not self._arrived.is_set():
            self._arrived.set()
        return len(events)

    def _drop(self, event_type: EventType, count: int) -> None:
        DROPPED.labels(event_type.schema_name).inc(count)
        self._dropped_since_log += count
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            log.warning(
                "the event buffer is full (Kafka is not taking events): dropping",
                extra={"dropped": self._dropped_since_log, "capacity": self.capacity},
            )
            self._dropped_since_log, self._last_log = 0, now

    async def run(self, stop: asyncio.Event) -> None:
        """Hand buffered events to the sender process until ``stop`` is set, starting it again
        when it dies; then hand it the rest and give it its timeout to send them."""
        while True:
            try:
                process = await start_piped("driftloop.services.serve.outbox")
            except OSError as error:
                log.error("cannot start the event sender process", extra={"error": str(error)})
                if await _stopped(stop, RESTART_S):
                    return
                continue
            assert process.stdin is not None and process.stdout is not None
            writer = process.stdin
            reports = asyncio.create_task(self._read_reports(process.stdout))
            exited = asyncio.create_task(process.wait())
            try:
                # no linger there: what it gets is already linger_s of events
                _write(writer, ("settings", self.settings, 0.0, self.service))
                await self._hand_until(stop, writer, {reports, exited})
                if stop.is_set():
                    self._hand(writer)
                    _write(writer, ("stop",))
                    with contextlib.suppress(ConnectionError):
                        await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), self._timeout_s * 2 + 5)
                    return
            except Exception as error:  # the sender died under a write: started again below
                log.debug("handing events to the sender failed", extra={"error": repr(error)})
            finally:
                exited.cancel()
                if process.returncode is None and (stop.is_set() or reports.done()):
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), 5.0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reports, 5.0)
                reports.cancel()
                KAFKA_UP.set(0)
            lost, self._in_flight = self._in_flight, 0
            log.error(
                "the event sender process died; starting another",
                extra={"lost": lost, "returncode": process.returncode},
            )
            if lost:
                DROPPED.labels(EventType.PREDICTION.schema_name).inc(lost)
            BUFFERED.set(len(self))
            if await _stopped(stop, RESTART_S):
                return

    async def _hand_until(
        self, stop: asyncio.Event, writer: asyncio.StreamWriter, gone: set[asyncio.Task[Any]]
    ) -> None:
        """Hand what arrives to the sender until ``stop``, or until one of ``gone`` (its
        reports end, it exits) says the sender is gone."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set() and not any(task.done() for task in gone):
                if not self._pending:
                    self._arrived.clear()
                    arrived = asyncio.create_task(self._arrived.wait())
                    await asyncio.wait(
                        {arrived, stopping, *gone}, return_when=asyncio.FIRST_COMPLETED
                    )
                    arrived.cancel()
                    continue
                if len(self._pending) < HAND_BATCH:
                    await asyncio.wait({stopping, *gone}, timeout=self.linger_s)
                self._hand(writer)
                await writer.drain()  # a sender that does not read holds this task only
        finally:
            stopping.cancel()

    def _hand(self, writer: asyncio.StreamWriter) -> None:
        """Write what is pending to the sender, grouped by (event type, build)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        groups: list[tuple[EventType, Build, list[Any]]] = []
        for event_type, event, build in pending:
            if not groups or groups[-1][0] is not event_type or groups[-1][1] is not build:
                groups.append((event_type, build, []))
            groups[-1][2].append(event)
        self._in_flight += len(pending)
        _write(writer, ("events", groups))
        BUFFERED.set(len(self))

    async def _read_reports(self, reader: asyncio.StreamReader) -> None:
        """What the sender process says: how many events Kafka stored, and the producer's state."""
        while True:
            message = await _read(reader)
            if message is None:
                return
            if message[0] == "stored":
                for event_type, count in message[1].items():
                    LOGGED.labels(event_type.schema_name).inc(count)
                    EVENTS_PRODUCED.labels(self.settings.topic_for(event_type)).inc(count)
                    self._in_flight = max(self._in_flight - count, 0)
                BUFFERED.set(len(self))
            elif message[0] == "connected":
                KAFKA_UP.set(1 if message[1] else 0)


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def _write(writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    writer.write(FRAME.pack(len(payload)) + payload)


async def _read(reader: asyncio.StreamReader) -> Any:
    """The next message, or None at the end of the stream."""
    try:
        (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
        return pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


# --- the sender process -----------------------------------------------------------------------


class EventSender:
    """A buffer of events and the task that sends them to their topics, with retries: what runs
    in the sender process (the serving process's :class:`EventOutbox` bounds what it holds).

    Parameters:
        settings: where the brokers and topics are.
        linger_s: how long the first event waits for others to share its send.
        service: the producer's client id suffix.
        stored: told how many events of each type Kafka stored, after each send.
        connected: told when the producer connects (True) or is dropped (False).
    """

    def __init__(
        self,
        settings: Settings,
        linger_s: float = 0.02,
        service: str = "serve",
        stored: Callable[[dict[EventType, int]], None] = lambda counts: None,
        connected: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self.settings = settings
        self.linger_s = linger_s
        self.service = service
        self._stored = stored
        self._connected_to = connected
        # (event type, event or compact row, what builds the event from the row or None)
        self._buffer: deque[tuple[EventType, Any, Callable[[Any], dict[str, Any]] | None]] = deque()
        # events built and being sent: kept as built until Kafka stores them, so a retry
        # sends the same event ids
        self._sending: list[tuple[EventType, dict[str, Any]]] = []
        self._arrived = asyncio.Event()
        self._producer: AsyncEventProducer | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._last_log = 0.0
        self._timeout_s = max(settings.kafka_client_timeout_ms / 1000, 1.0)

    def __len__(self) -> int:
        return len(self._buffer) + len(self._sending)

    def put(
        self,
        event_type: EventType,
        events: list[Any],
        build: Callable[[Any], dict[str, Any]] | None = None,
    ) -> None:
        """Buffer ``events``; ``build``, when given, turns each into the event to send."""
        self._buffer.extend((event_type, event, build) for event in events)
        if events:
            self._arrived.set()

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
        error: BaseException | None = None
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
        self._stored({event_type: len(events) for event_type, events in by_type.items()})
        return True

    async def _deliver(self, by_type: dict[EventType, list[dict[str, Any]]]) -> None:
        producer = await self._connected()
        futures: list[asyncio.Future[Any]] = []
        for event_type, events in by_type.items():
            # Built here from validated parts (serve's tests check them against the schemas):
            # a second check would cost as much as the send.
            futures += await producer.send_many(event_type, events, validate=False)
        await asyncio.gather(*futures)

    async def _connected(self) -> AsyncEventProducer:
        if self._producer is None:
            producer = AsyncEventProducer(
                self.settings,
                service=self.service,
                request_timeout_ms=max(int(self._timeout_s * 1000), 1000),
                # At least once either way (a failed batch is sent again, consumers dedupe on
                # event_id); without idempotence a new producer needs no id from the broker.
                enable_idempotence=False,
                max_batch_size=SEND_BATCH_BYTES,
            )
            self._producer = producer  # dropped (and stopped) by the caller if start fails
            await producer.start()
            self._connected_to(True)
            log.info("sending events to Kafka", extra={"buffered": len(self)})
        return self._producer

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            self._connected_to(False)
        if producer is not None and hasattr(producer, "client"):
            task = asyncio.create_task(self._stop(producer))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    @staticmethod
    async def _stop(producer: AsyncEventProducer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5.0)

    def _note_failure(self, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.warning(
                "Kafka is not taking events; keeping them and retrying",
                extra={"error": str(error) or type(error).__name__, "buffered": len(self)},
            )


async def _send_for(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The sender process's loop: events in from the serving process, reports back to it."""
    from driftloop.logs import configure_logging

    first = await _read(reader)
    if first is None:
        return
    _, settings, linger_s, service = first
    configure_logging(settings.log_level, settings.log_format)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # the sender logs outages once

    def stored(counts: dict[EventType, int]) -> None:
        _write(writer, ("stored", counts))

    def connected(up: bool) -> None:
        _write(writer, ("connected", up))

    sender = EventSender(settings, linger_s, service, stored, connected)
    stop = asyncio.Event()
    sending = asyncio.create_task(sender.run(stop))
    while (message := await _read(reader)) is not None and message[0] == "events":
        for event_type, build, events in message[1]:
            sender.put(event_type, events, build)
    stop.set()  # asked to stop, or the serving process is gone: send what is left, once
    await sending
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _sender_process() -> None:
    exit_with_parent()  # its end of the pipe closing says so too; this is in case it does not
    loop = asyncio.get_running_loop()
    reports = os.dup(1)  # the reports' channel; anything printed goes to stderr instead
    os.dup2(2, 1)
    reader = asyncio.StreamReader(limit=1 << 30)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(reports, "wb")
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    await _send_for(reader, writer)


if __name__ == "__main__":  # the sender process, started by EventOutbox.run
    import signal

    # it stops when the serving process says so, or is gone (its end of the pipe closes)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # When the cores are short, requests come first: the buffer takes the lag, and past its
    # bound predictions are dropped and counted rather than requests slowed.
    with contextlib.suppress(OSError):
        os.nice(SENDER_NICE)
    asyncio.run(_sender_process())
