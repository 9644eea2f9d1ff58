"""How a replica learns what serves: model-update events and a timer for the champion, and the
online-model topic for which model answers.

Every replica must see every event, so its consumers join no group: each is assigned every
partition of its topic (:func:`follow`, which also reconnects when Kafka fails, with one
warning per outage).

The champion: a model-update consumer starts at the topic's end (what came before is covered
by resolving the alias at start). An event is only a wake-up: the replica re-resolves the
aliases and swaps to what they name, so a late or out-of-order event cannot move it backwards.
The timer re-resolves every ``serve_alias_poll_s`` as well, so a replica that missed an event
(Kafka down, started late) converges anyway.

The online model: the trainer's decision (which model answers, and the snapshot of the online
model) is the latest ``online_model`` event for the model, on a compacted topic. The consumer
reads it from the start, so a replica that starts late, or reconnects, learns the current
decision; on the way it keeps only the latest event and loads only that event's snapshot, once
it has read all there is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from driftloop.async_messaging import AsyncEventConsumer
from driftloop.events import EventType
from driftloop.messaging import Received
from driftloop.online_snapshots import OnlineSnapshots
from driftloop.services.serve.online import OnlineAnswers
from driftloop.services.serve.repository import ModelRepository
from driftloop.services.serve.settings import ServeSettings

log = logging.getLogger(__name__)

RETRY_S = 2.0

# What a watcher does with each poll's events (the batch may be empty); it may ask the
# consumer about its partitions.
Handle = Callable[[AsyncEventConsumer, list[Received]], Awaitable[None]]


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def follow(
    settings: ServeSettings,
    event_type: EventType,
    offset: str,
    handle: Handle,
    stop: asyncio.Event,
) -> None:
    """Hand every poll of ``event_type``'s topic to ``handle`` until ``stop``; reconnect when
    Kafka fails, from ``offset`` again.

    Parameters:
        settings: the topic, the brokers, this replica's name.
        event_type: the events to read.
        offset: where a new consumer starts: ``earliest`` or ``latest``.
        handle: takes the consumer and each poll's events.
        stop: set when serve stops.
    """
    what = event_type.schema_name.replace("_", "-") + " events"
    warned = False  # one warning per outage, not one per retry
    while not stop.is_set():
        consumer = AsyncEventConsumer(
            settings,
            None,  # no group: every replica gets every partition
            [event_type],
            service=f"serve-{settings.serve_replica_id}",
            auto_offset_reset=offset,
        )
        try:
            await consumer.start()
        except Exception as error:
            level = logging.DEBUG if warned else logging.WARNING
            log.log(level, f"cannot listen for {what} yet", extra={"error": str(error)})
            warned = True
            await _pause(stop, RETRY_S)
            continue
        if warned:
            log.info(f"listening for {what}")
        warned = False
        try:
            while not stop.is_set():
                await handle(consumer, await consumer.poll(500))
        except Exception as error:
            log.warning(f"the {what} consumer failed; reconnecting", extra={"error": str(error)})
            await _pause(stop, RETRY_S)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5.0)


class ChampionWatcher:
    """Keeps ``repository`` on the champion: listens for model updates and polls the alias.

    Parameters:
        settings: the topic, the brokers and the poll interval.
        repository: what to refresh.
    """

    def __init__(self, settings: ServeSettings, repository: ModelRepository) -> None:
        self.settings = settings
        self.repository = repository

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self.poll(stop), self.listen(stop))

    async def poll(self, stop: asyncio.Event) -> None:
        """Re-resolve the alias now and then every ``serve_alias_poll_s`` until ``stop``."""
        while not stop.is_set():
            try:
                await self.repository.refresh()
            except Exception:  # never let the timer die: it is how a replica converges
                log.exception("refreshing the model failed")
            await _pause(stop, self.settings.serve_alias_poll_s)

    async def listen(self, stop: asyncio.Event) -> None:
        """Refresh on every model-update event for this model; reconnect when Kafka fails."""
        await follow(self.settings, EventType.MODEL_UPDATE, "latest", self._updates, stop)

    async def _updates(self, consumer: AsyncEventConsumer, received: list[Received]) -> None:
        for update in received:
            if update.event["model_name"] == self.repository.name:
                log.info("model update", extra={"event": update.event})
                await self.repository.refresh()


class OnlineWatcher:
    """Keeps ``answers`` on the trainer's latest decision: which model answers, and the online
    model's snapshot.

    Parameters:
        settings: the topic and the brokers.
        answers: what to tell.
        snapshots: where the snapshots are (the store's ``online/`` keys).
    """

    def __init__(
        self, settings: ServeSettings, answers: OnlineAnswers, snapshots: OnlineSnapshots
    ) -> None:
        self.settings = settings
        self.answers = answers
        self.snapshots = snapshots
        self._latest: dict[str, Any] | None = None  # read, not yet followed

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the online-model topic from its start until ``stop``."""
        await follow(self.settings, EventType.ONLINE_MODEL, "earliest", self._decisions, stop)

    async def _decisions(self, consumer: AsyncEventConsumer, received: list[Received]) -> None:
        for decision in received:
            if decision.event["model_name"] == self.answers.name:
                self._latest = decision.event
        if self._latest is None or (received and await self._behind(consumer)):
            return  # still reading what came before: only the latest decision counts
        latest, self._latest = self._latest, None
        await self.answers.follow(latest, self.snapshots.get)

    @staticmethod
    async def _behind(consumer: AsyncEventConsumer) -> bool:
        """Whether any partition holds events not read yet."""
        for partition in consumer.assignment():
            if await consumer.has_more(partition):
                return True
        return False
