"""ingest against the real broker: private topics per test, a store in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.messaging import ensure_topics
from driftloop.settings import Settings
from driftloop.stack.process import free_port
from driftloop.store import ExampleStore
from services.ingest.settings import IngestSettings


@pytest.fixture
def ingest_settings(settings: Settings, tmp_path: Path) -> IngestSettings:
    """Shared stack, topics and group of this test's own."""
    tag = uuid.uuid4().hex[:8]
    private = IngestSettings.model_validate(
        settings.model_dump()
        | {
            f"topic_{name}": f"test-{tag}.{name}"
            for name in ("predictions", "labels", "examples", "dead_letters", "ingest_changelog")
        }
        | {
            "ingest_group_id": f"ingest-{tag}",
            "store_uri": str(tmp_path / "store"),
            "ingest_port": free_port(),
            "ingest_flush_s": 0.5,
            "ingest_join_ttl_s": 3600,
            "kafka_max_event_bytes": 4096,
            "ingest_max_body_bytes": 4096,
        }
    )
    ensure_topics(private)
    return private


def as_environment(settings: Settings) -> dict[str, str]:
    return {
        f"DRIFTLOOP_{name.upper()}": str(value)
        for name, value in settings.model_dump(mode="json").items()
    }


class IngestProcess:
    """`driftloop run ingest` as its own process, as it runs in production."""

    def __init__(self, settings: IngestSettings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{settings.ingest_port}"

    def start(self) -> None:
        env = os.environ | as_environment(self.settings) | {"DRIFTLOOP_LOG_FORMAT": "text"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftloop.cli", "run", "ingest"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"ingest exited:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"ingest did not get ready:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=30)


@pytest.fixture
def ingest(ingest_settings: IngestSettings, tmp_path: Path) -> Iterator[IngestProcess]:
    process = IngestProcess(ingest_settings, tmp_path / "ingest.log")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.kill()


def stored_rows(settings: IngestSettings) -> list[str]:
    store = ExampleStore(settings.store_uri)
    table = store.read(store.manifests())
    return table.column("request_id").to_pylist() if table.num_rows else []
