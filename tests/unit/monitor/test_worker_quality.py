"""The worker's side of a data-quality hold, without a broker: what it sends, and when."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from driftloop.events import EventType, new_event
from driftloop.messaging import Received
from driftloop.schemas import EventSchemas
from driftloop.services.monitor.settings import MonitorSettings
from driftloop.services.monitor.worker import MonitorWorker


class Wire:
    """Stands in for the worker's Kafka clients: batches in, validated events out."""

    def __init__(self, worker: MonitorWorker) -> None:
        self.batches: list[list[Received]] = []
        self.sent: list[tuple[EventType, dict[str, Any]]] = []
        self.schemas = EventSchemas()
        worker.consumer.poll = self.poll  # type: ignore[method-assign]
        worker.consumer.commit = self.commit  # type: ignore[method-assign]
        worker.producer.send = self.send  # type: ignore[method-assign]

    async def poll(self, timeout_ms: int = 0) -> list[Received]:
        return self.batches.pop(0) if self.batches else []

    async def commit(self) -> None:
        return None

    async def send(self, event_type: EventType, event: dict[str, Any], **_: Any) -> Any:
        self.schemas.validate(event_type, event)
        self.sent.append((event_type, event))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def kinds(self) -> list[str]:
        return [
            event["status"] if kind == EventType.DATA_QUALITY else event["reason"]
            for kind, event in self.sent
        ]


def received(event_type: EventType, event: dict[str, Any]) -> Received:
    return Received(event_type, event, {"topic": "t", "partition": 0, "offset": 0}, b"")


def letter() -> Received:
    return received(
        EventType.DEAD_LETTER,
        new_event(
            service="ingest",
            origin={"topic": "labels", "partition": 0, "offset": 1},
            key_b64=None,
            payload_b64="",
            error={"message": "label 7 is not a class", "field": "label", "rule": "unknown_class"},
            model_name="m",
        ),
    )


def example() -> Received:
    return received(
        EventType.LABELLED_EXAMPLE,
        new_event(
            request_id="r-1",
            model_name="m",
            model_version="1",
            features={"x": 1.0},
            prediction=1,
            label=1,
            prediction_time=new_event()["event_time"],
            label_time=new_event()["event_time"],
        ),
    )


class NoRegistry:
    """A registry that knows no version: the worker's loads fail and are retried later."""

    def __getattr__(self, name: str) -> Any:
        raise OSError("no registry in this test")


async def test_a_schedule_trigger_due_during_a_hold_goes_out_when_it_ends(
    tmp_path: Path,
) -> None:
    settings = MonitorSettings(
        state_dir=tmp_path,
        model_name="m",
        monitor_schedule_s=3600,
        monitor_quality_window=1,
        monitor_quality_min_events=1,
    )
    worker = MonitorWorker(settings, NoRegistry(), None)  # type: ignore[arg-type]
    wire = Wire(worker)
    wire.batches = [[letter()], [], [example()]]
    await worker.step()
    assert wire.kinds() == ["degraded"]
    worker._last_schedule = time.monotonic() - 7200  # the schedule is due
    await worker.step()
    assert wire.kinds() == ["degraded"], "held"
    assert worker.monitor.policy("m").withheld == {"schedule"}
    await worker.manual_trigger("m")
    assert wire.kinds() == ["degraded", "manual"], "a person's trigger is not held"
    await worker.step()
    assert wire.kinds() == ["degraded", "manual", "recovered", "schedule"]
    await worker.step()
    assert wire.kinds() == ["degraded", "manual", "recovered", "schedule"], "sent once"
    worker._registry_thread.shutdown(wait=False)
    worker._report_thread.shutdown(wait=False)


async def test_a_dead_letter_of_no_model_is_ignored(tmp_path: Path) -> None:
    settings = MonitorSettings(
        state_dir=tmp_path, monitor_quality_window=1, monitor_quality_min_events=1
    )
    worker = MonitorWorker(settings, NoRegistry(), None)  # type: ignore[arg-type]
    wire = Wire(worker)
    anonymous = letter()
    del anonymous.event["model_name"]
    wire.batches = [[anonymous]]
    assert await worker.step() == 1
    assert wire.sent == [] and worker.quality.models == {}
    worker._registry_thread.shutdown(wait=False)
    worker._report_thread.shutdown(wait=False)
