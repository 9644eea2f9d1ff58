"""`driftloop run trainer`: the trigger-consuming loop and the live-evidence loop, each in a
thread, health and metrics over HTTP.

The loops are kafka-python's, each on a thread of its own: a fit blocks for seconds to minutes,
and the event loop must go on answering health checks meanwhile, and the live evidence (the
online learner, rollbacks, challengers: :mod:`driftloop.services.trainer.live_worker`) must go on
while a fit runs. SIGTERM or SIGINT stops the HTTP server, then the loops: a fit in progress is
abandoned without a verdict and its trigger stays uncommitted, to be processed after the
restart.
"""

from __future__ import annotations

import asyncio
import os

# TensorFlow's C++ start-up lines (and, on a machine without a GPU, its CUDA probing) are noise
# in a service's log; set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from driftloop.asgi import ServiceRunner, in_thread
from driftloop.logs import configure_logging
from driftloop.messaging import ensure_topics
from driftloop.runtime import tune_gc
from driftloop.services.trainer.http import create_app
from driftloop.services.trainer.live_worker import LiveWorker
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.worker import TrainerWorker


def main() -> int:
    settings = TrainerSettings()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc()
    ensure_topics(settings)
    worker = TrainerWorker(settings)
    live = LiveWorker(settings, worker.store)

    async def close() -> None:
        await asyncio.to_thread(worker.close)
        await asyncio.to_thread(live.close)

    runner = ServiceRunner(
        "trainer",
        run={"trainer-loop": in_thread(worker.run), "live-evidence": in_thread(live.run)},
        close=[close],
        stop_timeout_s=120,  # a fit in progress notices the stop between epochs
    )
    return runner.serve(create_app(runner), settings.trainer_port)
