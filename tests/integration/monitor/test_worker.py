"""MonitorWorker in-process on the real broker: labelled examples, promotions, data arrival."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer
from driftloop.registry import ModelRegistry
from driftloop.services.monitor.report import WindowReports
from driftloop.services.monitor.settings import MonitorSettings
from driftloop.services.monitor.worker import MonitorWorker
from driftloop.store import store_blobs
from tests.integration.monitor.conftest import features, register_version

pytestmark = pytest.mark.integration


def example(settings: MonitorSettings, version: str, rng: np.random.Generator) -> dict[str, Any]:
    row = features(rng)
    predicted = int(row["age"] > 40)
    now = new_event()["event_time"]
    return new_event(
        request_id=f"r-{time.monotonic_ns()}",
        model_name=settings.model_name,
        model_version=version,
        features=row,
        prediction=predicted,
        label=predicted if rng.random() < 0.9 else 1 - predicted,
        prediction_time=now,
        label_time=now,
    )


async def drain(worker: MonitorWorker, seconds: float = 4.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await worker.step(timeout_ms=200)


async def test_data_arrival_fires_after_n_examples_and_restarts_on_a_promotion(
    monitor_settings: MonitorSettings,
) -> None:
    settings = monitor_settings.model_copy(update={"monitor_data_arrival_examples": 300})
    version = register_version(settings, settings.model_name)
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    worker = MonitorWorker(settings, registry, WindowReports(store_blobs(settings)))
    await worker.start()
    rng = np.random.default_rng(2)
    try:
        with EventProducer(settings, service="test") as producer:
            for i in range(450):
                producer.send(EventType.LABELLED_EXAMPLE, example(settings, version, rng))
                if i == 100:  # from a clock far ahead: refused, it counts for nothing
                    ahead = example(settings, version, rng) | {"event_time": "2099-01-01T00:00:00Z"}
                    producer.send(EventType.LABELLED_EXAMPLE, ahead)
            producer.flush()
            await drain(worker)
            promotion = new_event(
                model_name=settings.model_name,
                model_version="7",
                run_id="run-7",
                trigger_id=None,
                alias="champion",
                previous_version=version,
                metrics={"accuracy": 0.91},
            )
            producer.send(EventType.MODEL_UPDATE, promotion)
            producer.flush()
            await drain(worker, 2.0)
            # 150 before the promotion are forgotten: 250 after it are not yet 300.
            for _ in range(250):
                producer.send(EventType.LABELLED_EXAMPLE, example(settings, version, rng))
            producer.flush()
            await drain(worker)
    finally:
        await worker.close()

    with EventConsumer(settings, None, [EventType.TRIGGER], service="test") as consumer:
        fired = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not fired:
            fired += consumer.poll(timeout_ms=500)
        fired += consumer.poll(timeout_ms=1000)
    assert [t.event["reason"] for t in fired] == ["data_arrival"]
    assert fired[0].event["model_version"] == version  # the champion when it fired
    assert fired[0].event["evidence"] == {"new_examples": 300}
    assert worker.monitor.champions[settings.model_name] == "7"
    detector = worker.monitor.detectors()[(settings.model_name, version)]
    assert detector.examples == 700 and detector.holdout_accuracy == 0.9
    with EventConsumer(settings, None, [EventType.DEAD_LETTER], service="test") as consumer:
        letters: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not letters:
            letters += consumer.poll(timeout_ms=500)
    assert [letter.event["error"]["rule"] for letter in letters] == ["ahead_of_clock"]
