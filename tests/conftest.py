"""Shared fixtures. Integration fixtures start the real local stack on free ports in a temporary
state folder; when it cannot start, every test that needs it fails with the reason."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from driftloop.errors import DriftloopError
from driftloop.stack import LocalStack, LocalStackSettings
from driftloop.stack.process import free_port


def local_settings(state_dir: Path, **overrides: object) -> LocalStackSettings:
    """Settings for a stack of our own: free ports, its own state, the shared jar cache. Its
    clients' addresses (Kafka's bootstrap servers, MLflow's tracking URI) follow the ports."""
    return LocalStackSettings(
        state_dir=state_dir,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        mlflow_port=free_port(),
        kafka_client_timeout_ms=5000,
        **overrides,
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real local stack (Kafka broker, topics, MLflow server) for the whole session."""
    local = LocalStack(local_settings(tmp_path_factory.mktemp("stack")))
    try:
        local.up()
    except DriftloopError as error:
        local.down()
        pytest.fail(f"the local stack could not start: {error}", pytrace=False)
    yield local
    local.down()


@pytest.fixture(scope="session")
def settings(stack: LocalStack) -> LocalStackSettings:
    return stack.settings


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3 API on loopback (moto's server), with a bucket; yields its endpoint."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for variable, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(variable, value)
    endpoint = f"http://127.0.0.1:{port}"
    # moto keeps its buckets per process, not per server: start every test from an empty S3.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="driftloop-test")
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def kcat() -> str:
    """Debian's kcat: a Kafka client that is not ours, as an outside app would use."""
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        pytest.fail("kcat is not installed; `make test` installs it (apt-get install kcat)")
    return path
