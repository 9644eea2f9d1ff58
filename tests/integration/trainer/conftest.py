"""trainer against the real broker and MLflow server: private topics, model and store per test."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson
import pytest
from kafka import KafkaConsumer

from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer, ensure_topics
from driftloop.services.trainer.coalesce import Refit
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.trainer import Trainer, TrainingOutcome
from driftloop.services.trainer.worker import TrainerWorker
from driftloop.settings import Settings
from driftloop.stack.process import free_port
from driftloop.store import ExampleStore

START = datetime(2026, 11, 22, tzinfo=UTC)
TOPICS = (
    "triggers", "model_updates", "training_results", "dead_letters", "contracts", "examples",
    "online_models",
)  # fmt: skip


@pytest.fixture
def trainer_settings(settings: Settings, tmp_path: Path) -> TrainerSettings:
    """Shared stack; topics, group, model, experiment and store of this test's own; tiny fits."""
    tag = uuid.uuid4().hex[:8]
    private = TrainerSettings.model_validate(
        settings.model_dump()
        | {f"topic_{name}": f"test-{tag}.{name}" for name in TOPICS}
        | {
            "model_name": f"model-{tag}",
            "trainer_group_id": f"trainer-{tag}",
            "trainer_live_group_id": f"trainer-live-{tag}",
            "trainer_experiment": f"test-{tag}",
            "store_uri": str(tmp_path / "store"),
            "trainer_port": free_port(),
            "trainer_min_examples": 100,
            "trainer_max_epochs": 25,
            "trainer_patience": 4,
            "trainer_batch_size": 32,
            "trainer_hidden_units": "16",
            "trainer_learning_rate": 0.01,
            "trainer_bootstrap_poll_s": 3600,
            "trainer_gate_margin": 0.01,
            "trainer_session_timeout_ms": 6000,  # a killed trainer's restart waits this long
        }
    )
    ensure_topics(private)
    return private


def classification_rows(n: int, seed: int = 0, offset: int = 0) -> list[dict[str, Any]]:
    """Label 1 when x1 + x2 (+1 in the east) is positive; `noise` carries nothing."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        x1, x2, noise = rng.normal(size=3)
        region = ["north", "south", "east"][int(rng.integers(3))]
        label = int(x1 + x2 + (1.0 if region == "east" else 0.0) > 0)
        rows.append(
            example(offset + i, {"x1": x1, "x2": x2, "noise": noise, "region": region}, label)
        )
    return rows


def regression_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        x1, x2 = rng.normal(size=2)
        shade = ["light", "dark"][int(rng.integers(2))]
        value = 3 * x1 - 2 * x2 + (5.0 if shade == "dark" else 0.0) + 0.1 * rng.normal()
        rows.append(example(i, {"x1": x1, "x2": x2, "shade": shade}, float(value)))
    return rows


def example(i: int, features: dict[str, Any], label: Any) -> dict[str, Any]:
    time = (START + timedelta(seconds=30 * i)).isoformat().replace("+00:00", "Z")
    return {
        "schema_version": 1,
        "event_id": f"e-{i}",
        "event_time": time,
        "request_id": f"r-{i}",
        "model_name": "m",
        "model_version": "0",
        "features": {k: float(v) if isinstance(v, np.floating) else v for k, v in features.items()},
        "prediction": 0,
        "label": label,
        "prediction_time": time,
        "label_time": time,
    }


def write_examples(settings: TrainerSettings, rows: list[dict[str, Any]]) -> None:
    store = ExampleStore(settings.store_uri)
    for start in range(0, len(rows), 200):  # several files, as ingest writes them
        store.write(rows[start : start + 200], offsets={"examples:0": [start, start + 199]})


def trigger(settings: TrainerSettings, trigger_id: str | None = None, **fields: Any) -> dict:
    return new_event(
        trigger_id=trigger_id or f"t-{uuid.uuid4().hex[:8]}",
        model_name=settings.model_name,
        model_version=fields.pop("model_version", None),
        reason=fields.pop("reason", "manual"),
        evidence=fields.pop("evidence", {"by": "test"}),
        **fields,
    )


class Events:
    """Reads one topic from the start, keeps what it read."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        self.seen: list[dict[str, Any]] = []

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 90
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not predicate(self.seen):
            assert time.monotonic() < deadline, f"timed out; saw {self.seen}"
            for records in self.consumer.poll(timeout_ms=500).values():
                self.seen += [orjson.loads(record.value) for record in records]
        return self.seen

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def results(trainer_settings: TrainerSettings) -> Iterator[Events]:
    events = Events(trainer_settings, trainer_settings.topic_training_results)
    yield events
    events.close()


@pytest.fixture
def updates(trainer_settings: TrainerSettings) -> Iterator[Events]:
    events = Events(trainer_settings, trainer_settings.topic_model_updates)
    yield events
    events.close()


class Loop(Protocol):
    def run(self, stop: threading.Event) -> None: ...
    def close(self) -> None: ...


L = TypeVar("L", bound=Loop)


@contextmanager
def in_thread(worker: L, join_s: float = 120) -> Iterator[L]:
    """``worker``'s loop in a thread until the block ends; what it raised fails the test."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(stop)
        except BaseException as error:  # surfaced by the test, not lost in the thread
            failed.append(error)
            raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(timeout=join_s)
        worker.close()
    assert not failed, failed


@contextmanager
def running(settings: TrainerSettings) -> Iterator[TrainerWorker]:
    with in_thread(TrainerWorker(settings)) as worker:
        yield worker


def send(settings: TrainerSettings, *events: dict) -> None:
    with EventProducer(settings, service="test") as producer:
        for event in events:
            producer.send(EventType.TRIGGER, event)
        producer.flush()


@pytest.fixture
def trainer(trainer_settings: TrainerSettings) -> Iterator[Trainer]:
    """The test's trainer, closed after it (its contracts consumer with it)."""
    with Trainer(trainer_settings) as made:
        yield made


def train_once(settings: TrainerSettings, **fields: Any) -> TrainingOutcome:
    """One refit by a trainer of its own, closed after it (its contracts consumer with it)."""
    with Trainer(settings) as trainer:
        return trainer.train(Refit(trigger(settings, **fields)))
