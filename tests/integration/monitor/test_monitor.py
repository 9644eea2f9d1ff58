"""The monitor end to end: real broker, real MLflow registry, `driftloop run monitor`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest

from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer, Received
from driftloop.services.monitor.settings import MonitorSettings
from tests.integration.monitor.conftest import features, register_version
from tests.processes import ServiceProcess

pytestmark = pytest.mark.integration


def prediction(settings: MonitorSettings, version: str, row: dict[str, Any]) -> dict[str, Any]:
    return new_event(
        request_id=f"r-{time.monotonic_ns()}",
        model_name=settings.model_name,
        model_version=version,
        features=row,
        prediction=int(row["age"] > 40),
    )


def collect(
    consumer: EventConsumer, until: Any, timeout_s: float = 60, settle_s: float = 0.0
) -> list[Received]:
    """Events until ``until(events)`` holds, then ``settle_s`` more seconds of them."""
    events: list[Received] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(events):
        events += consumer.poll(timeout_ms=500)
    settle = time.monotonic() + settle_s
    while time.monotonic() < settle:
        events += consumer.poll(timeout_ms=500)
    return events


def test_a_shift_gives_drift_events_with_reports_and_one_trigger(
    monitor_settings: MonitorSettings, monitor: ServiceProcess
) -> None:
    settings = monitor_settings
    version = register_version(settings, settings.model_name)
    monitor.start()
    rng = np.random.default_rng(1)
    with EventProducer(settings, service="test") as producer:
        # A version the registry does not know: windows without a verdict, and why.
        for _ in range(200):
            producer.send(EventType.PREDICTION, prediction(settings, "99", features(rng)))
        # Two clean windows, then eight drifted ones (age +15): one episode.
        for i in range(2000):
            row = features(rng, age_shift=15.0 if i >= 400 else 0.0)
            producer.send(EventType.PREDICTION, prediction(settings, version, row))
        producer.flush()

    with (
        EventConsumer(settings, None, [EventType.DRIFT], service="test") as drift,
        EventConsumer(settings, None, [EventType.TRIGGER], service="test") as triggers,
    ):
        fired = collect(triggers, lambda events: len(events) >= 1, settle_s=0)
        drifted = collect(drift, lambda events: len(events) >= 8)
        fired += collect(triggers, lambda events: False, timeout_s=0, settle_s=3)

    assert len(fired) == 1, [t.event for t in fired]
    trigger = fired[0].event
    assert trigger["reason"] == "drift"
    assert trigger["model_name"] == settings.model_name
    assert trigger["model_version"] == version
    assert trigger["evidence"]["drifted_features"] == ["age"]
    assert len(drifted) == 8
    events = [d.event for d in drifted]
    assert trigger["drift_event_id"] in {e["event_id"] for e in events}
    assert all(e["model_version"] == version and e["window"]["size"] == 200 for e in events)
    assert all(any(f["feature"] == "age" and f["drifted"] for f in e["features"]) for e in events)

    # Reports are written beside the example store and linked from the events.
    linked = [e for e in events if "report_uri" in e]
    assert linked
    for event in linked:
        path = Path(urlparse(event["report_uri"]).path)
        assert path.parent == Path(settings.store_uri) / "reports"
        assert path.read_bytes().lstrip().startswith(b"<!DOCTYPE html>")
        assert json.loads(path.with_suffix(".json").read_text())["metrics"]

    # The page and its JSON twin list the windows, with the reason for those without a verdict.
    windows = json.loads(monitor.read("/v1/windows"))["windows"]
    verdicts = [w["verdict"] for w in windows if w["model_version"] == version]
    assert verdicts.count("drift") == 8 and verdicts.count("clean") == 2
    unknown = [w for w in windows if w["model_version"] == "99"]
    assert unknown and unknown[0]["verdict"] == "no_verdict"
    assert "no model card" in unknown[0]["reason"]
    page = monitor.read("/").decode()
    assert "no verdict" in page and f"v{version}" in page
    served = [w["report"] for w in windows if w["report"]]
    assert served and monitor.read(served[0]).lstrip().startswith(b"<!DOCTYPE html>")
    metrics = monitor.read("/metrics").decode()
    name = settings.model_name
    assert f'driftloop_monitor_triggers_total{{model="{name}",reason="drift"}} 1.0' in metrics
    assert "driftloop_monitor_feature_drift_score" in metrics

    # A person can ask for a refit too.
    status, body = monitor.post("/v1/triggers", {"evidence": {"who": "on-call"}})
    assert status == 202, body
    answer = json.loads(body)
    with EventConsumer(settings, None, [EventType.TRIGGER], service="test") as triggers:
        every = collect(triggers, lambda events: len(events) >= 2)
    manual = every[-1].event
    assert (manual["reason"], manual["trigger_id"]) == ("manual", answer["trigger_id"])
    assert manual["evidence"] == {"who": "on-call"} and manual["model_version"] == version
    assert monitor.stop() == 0
