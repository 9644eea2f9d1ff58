"""`driftloop run ingest`: the consuming worker in a thread, the HTTP intake in the foreground."""

from __future__ import annotations

import logging
import threading

import boto3

from driftloop.asgi import ServiceServer
from driftloop.logs import configure_logging
from driftloop.messaging import EventProducer
from services.ingest.http import create_app
from services.ingest.settings import IngestSettings
from services.ingest.store import ExampleStore, S3Blobs
from services.ingest.worker import IngestWorker

log = logging.getLogger(__name__)


def open_store(settings: IngestSettings) -> ExampleStore:
    uri = settings.ingest_store_uri
    if not uri and settings.s3_bucket:
        uri = f"s3://{settings.s3_bucket}/{settings.s3_prefix.strip('/')}"
    if uri.startswith("s3://"):
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
        return ExampleStore(S3Blobs(bucket, prefix, client), settings.ingest_join_ttl_s)
    return ExampleStore(uri or settings.state_dir / "example-store", settings.ingest_join_ttl_s)


def main() -> int:
    settings = IngestSettings()
    configure_logging(settings.log_level, settings.log_format)
    worker = IngestWorker(settings, open_store(settings))
    intake = EventProducer(settings, service="ingest-http")
    app = create_app(settings, intake)
    server = ServiceServer(app, settings.ingest_port)
    stop = threading.Event()
    failed = threading.Event()

    def consume() -> None:
        try:
            worker.run(stop)
        except Exception:
            # Exit rather than serve without consuming: a restart resumes from the last commit.
            log.exception("the ingest worker failed; stopping")
            failed.set()
            server.should_exit = True

    consuming = threading.Thread(target=consume, name="ingest-worker")
    consuming.start()
    app.state.ready = consuming.is_alive
    try:
        server.run()
    finally:
        stop.set()  # the worker checkpoints once more before it returns
        consuming.join()
        worker.close()
        intake.close()
    return 1 if failed.is_set() else 0
