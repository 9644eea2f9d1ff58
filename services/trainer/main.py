"""`driftloop run trainer`: the trigger-consuming loop in a thread, health and metrics over HTTP.

SIGTERM or SIGINT stops the HTTP server, then the loop: a fit in progress is abandoned
without a verdict and its trigger stays uncommitted, to be processed after the restart.
"""

from __future__ import annotations

import logging
import os
import threading

# TensorFlow's C++ start-up lines (and, on a machine without a GPU, its CUDA probing) are noise
# in a service's log; set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from driftloop.asgi import ServiceServer
from driftloop.logs import configure_logging
from driftloop.messaging import ensure_topics
from driftloop.runtime import tune_gc
from services.trainer.http import create_app
from services.trainer.settings import TrainerSettings
from services.trainer.worker import TrainerWorker

log = logging.getLogger(__name__)


def main() -> int:
    settings = TrainerSettings()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc()
    ensure_topics(settings)
    worker = TrainerWorker(settings)
    stop = threading.Event()
    failed = False
    server: ServiceServer

    def consume() -> None:
        nonlocal failed
        try:
            worker.run(stop)
        except Exception:
            # Exit rather than report healthy without consuming: a restart resumes from the
            # last commit.
            log.exception("the trainer's loop failed; stopping")
            failed = True
            server.should_exit = True

    thread = threading.Thread(target=consume, name="trainer-loop", daemon=True)
    server = ServiceServer(create_app(ready=thread.is_alive), settings.trainer_port)
    thread.start()
    try:
        server.run()
    finally:
        stop.set()
        thread.join(timeout=120)
        worker.close()
    return 1 if failed else 0
