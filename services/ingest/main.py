"""`driftloop run ingest`: the HTTP intake and the consuming worker on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from driftloop.asgi import ServiceServer
from driftloop.async_messaging import AsyncEventProducer
from driftloop.logs import configure_logging
from driftloop.runtime import tune_gc
from driftloop.store import open_store
from services.ingest.http import create_app
from services.ingest.settings import IngestSettings
from services.ingest.worker import IngestWorker

log = logging.getLogger(__name__)


def main() -> int:
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc()
    worker = IngestWorker(
        settings, functools.partial(open_store, settings, settings.ingest_join_ttl_s)
    )
    intake = AsyncEventProducer(settings, service="ingest-http")
    failed = False
    server: ServiceServer

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await intake.start()
        await worker.start()
        stop = asyncio.Event()
        consuming = asyncio.create_task(worker.run(stop), name="ingest-worker")

        def stopped(task: asyncio.Task[None]) -> None:
            nonlocal failed
            if not task.cancelled() and task.exception() is not None:
                # Exit rather than serve without consuming: a restart resumes from the last
                # commit.
                log.error("the ingest worker failed; stopping", exc_info=task.exception())
                failed = True
                server.should_exit = True

        consuming.add_done_callback(stopped)
        app.state.ready = lambda: not consuming.done()
        try:
            yield
        finally:
            stop.set()  # the worker checkpoints once more before it returns
            with contextlib.suppress(Exception):
                await consuming
            await worker.close()
            await intake.stop()

    app = create_app(settings, intake, lifespan, worker.guard)
    server = ServiceServer(app, settings.ingest_port)
    server.run()
    return 1 if failed else 0
