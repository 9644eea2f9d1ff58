"""The monitor against the real broker and MLflow: private topics, model and store per test."""

from __future__ import annotations

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
from driftloop.services.monitor.settings import MonitorSettings
from driftloop.settings import Settings
from driftloop.stack.process import free_port
from tests.processes import ServiceProcess

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
    topics = (
        "predictions",
        "examples",
        "drift",
        "triggers",
        "model_updates",
        "training_results",
        "dead_letters",
        "data_quality",
    )
    private = MonitorSettings.model_validate(
        settings.model_dump()
        | {f"topic_{name}": f"test-{tag}.{name}" for name in topics}
        | {
            "model_name": f"monitor-{tag}",
            "monitor_group_id": f"monitor-{tag}",
            "store_uri": str(tmp_path / "store"),
            "monitor_port": free_port(),
            "monitor_window_size": 200,
            # Triggers at once: these tests send predictions without labels (the hold of a
            # trigger until labelled examples arrive is the unit tests' subject).
            "monitor_trigger_min_examples": 0,
            "topic_partitions": 1,  # one partition: the stream's order is the test's order
        }
    )
    ensure_topics(private)
    return private


@pytest.fixture
def monitor(monitor_settings: MonitorSettings, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess("monitor", monitor_settings, tmp_path / "monitor.log")
    yield process
    if process.alive():
        process.kill()
