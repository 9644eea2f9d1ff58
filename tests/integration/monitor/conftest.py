"""The monitor against the real broker and MLflow: private topics, model and store per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from driftloop.messaging import ensure_topics
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.reference import ReferenceSketch
from driftloop.registry import log_model_card
from driftloop.settings import Settings
from driftloop.stack.process import free_port
from services.monitor.settings import MonitorSettings

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="region", kind="categorical", categories=["n", "s"]),
    ],
    classes=[0, 1],
    metrics={"accuracy": 0.9},
)


def features(rng: np.random.Generator, age_shift: float = 0.0) -> dict[str, float | str]:
    return {"age": float(rng.normal(40 + age_shift, 10)), "region": str(rng.choice(["n", "s"]))}


def register_version(settings: Settings, name: str) -> str:
    """A registered version with a card and a reference, as the trainer leaves one.

    The version's source is the run's artifacts: the monitor needs no model, only what the
    registry holds beside it.
    """
    rng = np.random.default_rng(0)
    rows = [features(rng) for _ in range(2000)]
    reference = ReferenceSketch.build(CARD, rows, predictions=[int(r["age"] > 40) for r in rows])
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = MlflowClient(settings.mlflow_tracking_uri)
    with mlflow.start_run() as run:
        log_model_card(CARD, reference)
    client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}", run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


@pytest.fixture
def monitor_settings(settings: Settings, tmp_path: Path) -> MonitorSettings:
    """Shared stack; topics, group, model name, store and port of this test's own."""
    tag = uuid.uuid4().hex[:8]
    topics = ("predictions", "examples", "drift", "triggers", "model_updates", "dead_letters")
    private = MonitorSettings.model_validate(
        settings.model_dump()
        | {f"topic_{name}": f"test-{tag}.{name}" for name in topics}
        | {
            "model_name": f"monitor-{tag}",
            "monitor_group_id": f"monitor-{tag}",
            "store_uri": str(tmp_path / "store"),
            "monitor_port": free_port(),
            "monitor_window_size": 200,
            "topic_partitions": 1,  # one partition: the stream's order is the test's order
        }
    )
    ensure_topics(private)
    return private


def as_environment(settings: Settings) -> dict[str, str]:
    return {
        f"DRIFTLOOP_{name.upper()}": str(value)
        for name, value in settings.model_dump(mode="json").items()
    }


class MonitorProcess:
    """`driftloop run monitor` as its own process, as it runs in production."""

    def __init__(self, settings: MonitorSettings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{settings.monitor_port}"

    def start(self) -> None:
        env = os.environ | as_environment(self.settings) | {"DRIFTLOOP_LOG_FORMAT": "text"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftloop.cli", "run", "monitor"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"monitor exited:\n{self.log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"monitor did not get ready:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return bytes(response.read())

    def post(self, path: str, document: object) -> bytes:
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(document).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            assert response.status == 202
            return bytes(response.read())

    def stop(self) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=30)


@pytest.fixture
def monitor(monitor_settings: MonitorSettings, tmp_path: Path) -> Iterator[MonitorProcess]:
    process = MonitorProcess(monitor_settings, tmp_path / "monitor.log")
    yield process
    if process.process is not None and process.process.poll() is None:
        process.process.kill()
        process.process.wait(timeout=10)
