"""One-shot setup of a compose stack: the S3 bucket and every Kafka topic, then exit.

Run as ``python /opt/driftloop/bin/bootstrap.py [--bucket-only]`` in the driftloop image with
the same ``DRIFTLOOP_*`` variables as the services (and the usual ``AWS_*`` credentials). Both
steps are idempotent, so it runs on every ``docker compose up``. On Kubernetes the topics are
Strimzi KafkaTopic resources, so the dev overlay's Job makes only the bucket.
"""

from __future__ import annotations

import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from kafka.errors import KafkaError

from driftloop.errors import DriftloopError
from driftloop.messaging import ensure_topics
from driftloop.settings import Settings


def ensure_bucket(settings: Settings) -> str:
    """Create ``settings.s3_bucket`` unless it exists; returns ``created`` or ``exists``."""
    s3 = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
    try:
        s3.head_bucket(Bucket=settings.s3_bucket)
        return "exists"
    except ClientError:
        s3.create_bucket(Bucket=settings.s3_bucket)
        return "created"


def main(argv: list[str], attempts: int = 30, pause_s: float = 2.0) -> int:
    topics = "--bucket-only" not in argv
    settings = Settings()
    for attempt in range(1, attempts + 1):
        try:
            if settings.s3_bucket:
                print(f"bucket {settings.s3_bucket}: {ensure_bucket(settings)}", flush=True)
            for topic, state in sorted(ensure_topics(settings).items() if topics else []):
                print(f"topic {topic}: {state}", flush=True)
            return 0
        except (DriftloopError, KafkaError, BotoCoreError, ClientError, OSError) as error:
            # The broker and MinIO may still be starting: wait and try again.
            print(f"attempt {attempt}/{attempts}: {error}", file=sys.stderr, flush=True)
            time.sleep(pause_s)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
