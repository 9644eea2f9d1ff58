"""`driftloop run monitor`: the consuming worker and the HTTP page on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from driftloop.asgi import ServiceServer
from driftloop.logs import configure_logging
from driftloop.registry import ModelRegistry
from driftloop.runtime import tune_gc
from services.monitor.http import create_app
from services.monitor.report import WindowReports, report_blobs
from services.monitor.settings import MonitorSettings
from services.monitor.worker import MonitorWorker

log = logging.getLogger(__name__)


def main() -> int:
    settings = MonitorSettings()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc()
    reports = WindowReports(report_blobs(settings))
    worker = MonitorWorker(settings, ModelRegistry(settings.mlflow_tracking_uri), reports)
    failed = False
    server: ServiceServer

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await worker.start()
        stop = asyncio.Event()
        consuming = asyncio.create_task(worker.run(stop), name="monitor-worker")

        def stopped(task: asyncio.Task[None]) -> None:
            nonlocal failed
            if not task.cancelled() and task.exception() is not None:
                # Exit rather than look healthy without consuming; a restart resumes.
                log.error("the monitor worker failed; stopping", exc_info=task.exception())
                failed = True
                server.should_exit = True

        consuming.add_done_callback(stopped)
        app.state.ready = lambda: worker.started and not consuming.done()
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await consuming
            await worker.close()

    app = create_app(lambda: list(worker.recent), reports, worker.manual_trigger, lifespan)
    server = ServiceServer(app, settings.monitor_port)
    server.run()
    return 1 if failed else 0
