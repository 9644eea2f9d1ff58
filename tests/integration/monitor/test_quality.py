"""Data quality on the real broker: a burst of invalid labels holds the model's triggers; once
it ends, quality recovers, the hold is released and the loop goes on by itself."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer, Received
from driftloop.registry import ModelRegistry
from driftloop.services.monitor.report import WindowReports
from driftloop.services.monitor.settings import MonitorSettings
from driftloop.services.monitor.worker import MonitorWorker
from driftloop.store import store_blobs
from tests.integration.monitor.conftest import register_version
from tests.integration.monitor.test_worker import example

pytestmark = pytest.mark.integration

Batch = list[tuple[EventType, dict[str, Any]]]


def invalid_label(settings: MonitorSettings, offset: int) -> dict[str, Any]:
    """What ingest dead-letters for a label that is none of the model's classes."""
    payload = json.dumps({"request_id": f"r-{offset}", "label": 7}).encode()
    return new_event(
        service="ingest",
        origin={"topic": settings.topic_labels, "partition": 0, "offset": offset},
        key_b64=base64.b64encode(f"r-{offset}".encode()).decode(),
        payload_b64=base64.b64encode(payload).decode(),
        error={
            "message": "label 7 is not a class of this model (0, 1)",
            "field": "label",
            "rule": "unknown_class",
        },
        model_name=settings.model_name,
    )


async def feed(worker: MonitorWorker, producer: EventProducer, batch: Batch) -> None:
    """Send ``batch`` and let the worker handle all of it (its topics' order is not ours)."""
    for event_type, event in batch:
        producer.send(event_type, event)
    producer.flush()
    handled, deadline = 0, time.monotonic() + 30
    while handled < len(batch) and time.monotonic() < deadline:
        handled += await worker.step(timeout_ms=200)
    assert handled == len(batch)


def read(settings: MonitorSettings, event_type: EventType, count: int) -> list[Received]:
    """The topic's events, once ``count`` are there (and a second more, to see no extra)."""
    with EventConsumer(settings, None, [event_type], service="test") as consumer:
        events: list[Received] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(events) < count:
            events += consumer.poll(timeout_ms=500)
        events += consumer.poll(timeout_ms=1000)
    return events


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_a_burst_of_invalid_labels_holds_triggers_until_quality_recovers(
    monitor_settings: MonitorSettings,
) -> None:
    settings = monitor_settings.model_copy(
        update={
            "monitor_data_arrival_examples": 300,
            "monitor_quality_window": 200,
            "monitor_quality_min_events": 50,
        }
    )
    name = settings.model_name
    version = register_version(settings, name)
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    worker = MonitorWorker(settings, registry, WindowReports(store_blobs(settings)))
    await worker.start()
    rng = np.random.default_rng(4)

    def labelled() -> tuple[EventType, dict[str, Any]]:
        return EventType.LABELLED_EXAMPLE, example(settings, version, rng)

    offsets = iter(range(1_000_000))
    try:
        with EventProducer(settings, service="test") as producer:
            # Clean: 200 labelled examples, no trigger yet (data arrival fires at 300).
            await feed(worker, producer, [labelled() for _ in range(200)])
            assert not worker.quality.degraded(name)
            # The burst: 3 in 10 labels refused for an unknown class, 140 valid ones among
            # them. The 300th example comes during the burst: its trigger is held.
            for _ in range(20):
                letters = [invalid_label(settings, next(offsets)) for _ in range(3)]
                chunk = [(EventType.DEAD_LETTER, letter) for letter in letters]
                chunk += [labelled() for _ in range(7)]
                await feed(worker, producer, chunk)
            assert worker.quality.degraded(name)
            assert worker.monitor.policy(name).withheld == {"data_arrival"}
            assert gauge("driftloop_monitor_data_quality_degraded", model=name) == 1
            # A person's trigger still goes out.
            await worker.manual_trigger(name, {"why": "test"})
            held = read(settings, EventType.TRIGGER, 1)
            assert [t.event["reason"] for t in held] == ["manual"]
            # The burst ends: clean labels push it out of the window.
            for _ in range(20):
                await feed(worker, producer, [labelled() for _ in range(10)])
    finally:
        await worker.close()

    quality = [q.event for q in read(settings, EventType.DATA_QUALITY, 2)]
    assert [(q["status"], q["holding_triggers"]) for q in quality] == [
        ("degraded", True),
        ("recovered", False),
    ]
    degraded, recovered = quality
    assert degraded["model_name"] == name and degraded["threshold"] == 0.1
    assert degraded["invalid_share"] > 0.1
    assert set(degraded["window"]["invalid_by_rule"]) == {"unknown_class"}
    assert recovered["invalid_share"] <= 0.05
    assert set(recovered["window"]["label_balance"]) <= {"0", "1"}
    # Released by itself: the data-arrival trigger held through the burst went out.
    fired = [t.event for t in read(settings, EventType.TRIGGER, 2)]
    assert [t["reason"] for t in fired] == ["manual", "data_arrival"]
    assert fired[1]["model_version"] == version
    assert not worker.quality.degraded(name)
    assert gauge("driftloop_monitor_data_quality_degraded", model=name) == 0
    assert gauge("driftloop_monitor_triggers_held_total", model=name, reason="data_arrival") == 1
