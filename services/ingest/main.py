"""`driftloop run ingest`: the HTTP intake and the consuming worker on one event loop."""

from __future__ import annotations

import functools

from driftloop.asgi import ServiceRunner
from driftloop.async_messaging import AsyncEventProducer
from driftloop.logs import configure_logging
from driftloop.runtime import tune_gc
from driftloop.services.ingest.http import create_app
from driftloop.services.ingest.settings import IngestSettings
from driftloop.services.ingest.worker import IngestWorker
from driftloop.store import open_store


def main() -> int:
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc()
    worker = IngestWorker(
        settings, functools.partial(open_store, settings, settings.ingest_join_ttl_s)
    )
    intake = AsyncEventProducer(settings, service="ingest-http")
    runner = ServiceRunner(
        "ingest",
        run={"ingest-worker": worker.run},
        start=[intake.start, worker.start],
        close=[worker.close, intake.stop],  # the worker checkpoints once more as it closes
    )
    app = create_app(settings, intake, runner, worker.guard)
    return runner.serve(app, settings.ingest_port)
