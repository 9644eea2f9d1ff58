"""`driftloop run serve`: the HTTP server, Kafka inference, the hot-swap and online-model
watchers, the shadow scorer and the prediction log."""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from driftloop.asgi import ServiceRunner
from driftloop.logs import configure_logging
from driftloop.services.serve.settings import ServeSettings


def main() -> int:
    settings = ServeSettings()
    configure_logging(settings.log_level, settings.log_format)
    # aiokafka logs an ERROR per reconnect attempt (ten a second while a broker is down); the
    # outbox and the watcher log their own outages, once.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # The model thread waits for the GIL while the event loop is busy: the default 5 ms
    # switch interval would be the floor of every batched call's latency under load.
    sys.setswitchinterval(0.0005)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # A registry that does not answer must not hold a refresh for minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import mlflow

    from driftloop.online_snapshots import OnlineSnapshots
    from driftloop.registry import CHALLENGER, PREVIOUS, ModelRegistry
    from driftloop.services.serve.batching import MicroBatcher
    from driftloop.services.serve.dataplane import DataPlane
    from driftloop.services.serve.http import create_app
    from driftloop.services.serve.kafka_inference import KafkaInference
    from driftloop.services.serve.loading import VersionLoader
    from driftloop.services.serve.online import OnlineAnswers
    from driftloop.services.serve.outbox import EventOutbox
    from driftloop.services.serve.repository import ModelRepository
    from driftloop.services.serve.shadow import ShadowScorer
    from driftloop.services.serve.worker import ChampionWatcher, OnlineWatcher
    from driftloop.store import store_blobs

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    name = settings.model_name
    executor = ThreadPoolExecutor(1, thread_name_prefix="serve-model")
    outbox = EventOutbox(settings, settings.serve_log_buffer, settings.serve_log_linger_ms / 1000)
    # versions load in a process of their own: loading in this one stalls requests in flight
    loader = VersionLoader(registry, name, settings.serve_max_batch_size, settings.serve_fast_path)
    repository = ModelRepository(
        name,
        resolve=lambda: registry.champion(name),
        load=loader.load,
        batcher=lambda loaded: MicroBatcher(
            loaded.call,
            executor,
            settings.serve_max_batch_size,
            settings.serve_max_wait_ms / 1000,
            inline=loaded.one_row_ms is not None
            and loaded.one_row_ms < settings.serve_inline_below_ms,
        ),
        publish=outbox.put,
        replica=settings.serve_replica_id,
        resolve_challenger=lambda: registry.version_of(name, CHALLENGER),
        resolve_previous=lambda: registry.version_of(name, PREVIOUS),
        previous_s=settings.serve_shadow_previous_s,
    )
    online = OnlineAnswers(name)
    scorer = ShadowScorer(outbox.put, settings.serve_shadow_queue)
    plane = DataPlane(name, repository, outbox.put, online, scorer, executor)
    watcher = ChampionWatcher(settings, repository)
    run = {
        # the outbox stops once the scorer has handed it the predictions it still held
        "serve-outbox": lambda stop: outbox.run(scorer.finished),
        "serve-shadows": scorer.run,
        "serve-watcher": watcher.run,
    }
    if settings.serve_kafka_inference:
        run["serve-kafka-inference"] = KafkaInference(settings, plane).run
    if settings.serve_online_answers:
        snapshots = OnlineSnapshots(store_blobs(settings), name)
        run["serve-online"] = OnlineWatcher(settings, online, snapshots).run

    async def close() -> None:
        executor.shutdown(wait=False, cancel_futures=True)
        loader.close()

    runner = ServiceRunner(
        "serve",
        # the outbox sends what it still holds once stopped, within its timeout
        run=run,
        close=[close],
        stop_timeout_s=15,
    )
    # No access log: a log line per request costs more than the model.
    app = create_app(settings, plane, runner)
    return runner.serve(app, settings.serve_port, settings.serve_host, access_log=False)
