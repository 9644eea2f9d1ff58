"""The example store on S3 (a real S3 API on loopback, through boto3)."""

from __future__ import annotations

import boto3
import pytest

from driftloop.store import ExampleStore, S3Blobs
from tests.unit.test_store import example

pytestmark = pytest.mark.integration


def test_the_store_on_s3_writes_reads_and_dedupes_across_restarts(s3: str) -> None:
    client = boto3.client("s3", endpoint_url=s3)
    store = ExampleStore(S3Blobs("driftloop-test", "team/store", client))
    written = store.write([example(i) for i in range(30)], offsets={"driftloop.labels:1": [0, 59]})
    assert written is not None and sum(m.rows for m in written) == 30

    keys = [o["Key"] for o in client.list_objects_v2(Bucket="driftloop-test")["Contents"]]
    assert any(k.startswith("team/store/examples/date=2026-11-22/hour=10/") for k in keys)
    assert sum(k.endswith(".manifest.json") for k in keys) == len(written)

    restarted = ExampleStore(S3Blobs("driftloop-test", "team/store", client))
    assert restarted.write([example(i) for i in range(25, 35)]) is not None
    window = restarted.manifests()
    table = restarted.read(window)
    assert table.num_rows == 35 and len(set(table.column("event_id").to_pylist())) == 35
    assert restarted.window_hash(window) == ExampleStore(
        S3Blobs("driftloop-test", "team/store", client)
    ).window_hash(window)
