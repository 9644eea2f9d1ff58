"""How a replica learns that the champion moved: model-update events, and a timer.

Every replica must see every model-update event, so the consumer joins no group: it is
assigned every partition of the topic and starts at its end (what came before is covered by
resolving the alias at start). An event is only a wake-up: the replica re-resolves the alias
and swaps to what it names, so a late or out-of-order event cannot move it backwards. The timer
re-resolves every ``serve_alias_poll_s`` as well, so a replica that missed an event (Kafka
down, started late) converges anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from driftloop.async_messaging import AsyncEventConsumer
from driftloop.events import EventType
from services.serve.repository import ModelRepository
from services.serve.settings import ServeSettings

log = logging.getLogger(__name__)

RETRY_S = 2.0


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


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
        warned = False  # one warning per outage, not one per retry
        while not stop.is_set():
            consumer = AsyncEventConsumer(
                self.settings,
                None,  # no group: every replica gets every partition
                [EventType.MODEL_UPDATE],
                service=f"serve-{self.settings.serve_replica_id}",
                auto_offset_reset="latest",
            )
            try:
                await consumer.start()
            except Exception as error:
                level = logging.DEBUG if warned else logging.WARNING
                log.log(level, "cannot listen for model updates yet", extra={"error": str(error)})
                warned = True
                await _pause(stop, RETRY_S)
                continue
            if warned:
                log.info("listening for model updates")
            warned = False
            try:
                while not stop.is_set():
                    for received in await consumer.poll(500):
                        if received.event["model_name"] == self.repository.name:
                            log.info("model update", extra={"event": received.event})
                            await self.repository.refresh()
            except Exception as error:
                log.warning(
                    "model-update consumer failed; reconnecting", extra={"error": str(error)}
                )
                await _pause(stop, RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 5.0)
