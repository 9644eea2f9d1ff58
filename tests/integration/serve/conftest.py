"""serve against the real stack: tiny Keras models registered in the real MLflow, private topics,
and `driftloop run serve` as its own process."""

from __future__ import annotations

import http.client
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer, ensure_topics
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.reference import FeatureSketch, ReferenceSketch
from driftloop.services.serve.settings import ServeSettings
from driftloop.settings import Settings
from driftloop.stack.process import free_port
from tests.processes import ServiceProcess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="income"),
        FeatureSpec(name="region", kind="categorical", categories=["north", "south"]),
    ],
    classes=["no", "yes"],
)
RECORD = {"age": 31.0, "income": 1200.5, "region": "north"}
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def serve_settings(settings: Settings) -> ServeSettings:
    """Shared stack; this test's own topics, model name and port."""
    tag = uuid.uuid4().hex[:8]
    private = ServeSettings.model_validate(
        settings.model_dump()
        | {
            f"topic_{name}": f"test-{tag}.{name}"
            for name in (
                "predictions",
                "model_updates",
                "swaps",
                "dead_letters",
                "online_models",
                "inference_requests",
            )
        }
        | {
            "model_name": f"serve-{tag}",
            "serve_port": free_port(),
            "serve_alias_poll_s": 2.0,
            "serve_max_body_bytes": 4096,
            "serve_admin_token": ADMIN_TOKEN,
            "serve_replica_id": f"replica-{tag}",
            "serve_kafka_group_id": f"serve-inference-{tag}",
        }
    )
    ensure_topics(private)
    return private


def keras_model(card: ModelCard, bias: float = 0.0, outputs: int | None = None) -> Any:
    """A model per the card's contract; ``outputs`` other than the classes' count breaks it."""
    import keras

    inputs, parts = {}, []
    for spec in card.features:
        if spec.kind != "categorical":  # numeric and boolean features: float32
            inputs[spec.name] = keras.Input(shape=(1,), name=spec.name, dtype="float32")
            parts.append(inputs[spec.name])
        else:
            inputs[spec.name] = keras.Input(shape=(1,), name=spec.name, dtype="string")
            lookup = keras.layers.StringLookup(vocabulary=spec.categories, output_mode="one_hot")
            parts.append(lookup(inputs[spec.name]))
    x = keras.layers.Concatenate()(parts) if len(parts) > 1 else parts[0]
    x = keras.layers.Dense(8, activation="relu")(x)
    width = outputs or (len(card.classes) if card.task == "classification" else 1)
    dense = keras.layers.Dense(
        width, activation="softmax", bias_initializer=keras.initializers.Constant(bias)
    )
    return keras.Model(inputs, dense(x))


def register(settings: ServeSettings, card: ModelCard = CARD, **model: Any) -> str:
    """Register a new version of the test's model (not promoted); returns its version."""
    import mlflow

    from driftloop.registry import register_model

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    reference = ReferenceSketch(
        count=2, features={spec.name: FeatureSketch.numeric([0.0, 1.0]) for spec in card.features}
    )
    with mlflow.start_run():
        return register_model(keras_model(card, **model), card, reference, settings.model_name)


def promote(settings: ServeSettings, version: str, previous: str | None = None) -> None:
    """Move the champion alias and publish the model update, as the trainer does."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    client.set_registered_model_alias(settings.model_name, "champion", version)
    with EventProducer(settings, service="test") as producer:
        producer.send(
            EventType.MODEL_UPDATE,
            new_event(
                model_name=settings.model_name,
                model_version=version,
                run_id=str(client.get_model_version(settings.model_name, version).run_id),
                trigger_id=None,
                alias="champion",
                previous_version=previous,
                metrics={},
            ),
        )
        producer.flush()


class ServeProcess(ServiceProcess):
    """`driftloop run serve` as its own process, with a small HTTP client."""

    def __init__(self, settings: ServeSettings, log: Path, temp: Path) -> None:
        temp.mkdir(parents=True, exist_ok=True)
        super().__init__("serve", settings, log, {"TMPDIR": str(temp)})
        self.host, self.port = "127.0.0.1", settings.serve_port
        self.temp = temp  # its temporary directory, and its helpers'

    def start(self, ready_path: str | None = "/v2/health/live", timeout: float = 90) -> None:
        super().start(ready_path, timeout)

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        raw = body if isinstance(body, bytes) else None if body is None else orjson.dumps(body)
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, path, raw, headers or {})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return response.status, orjson.loads(data) if data else None

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Any, **headers: str) -> tuple[int, Any]:
        return self.request("POST", path, body, {"content-type": "application/json", **headers})

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/metrics/", timeout=10) as r:
            return r.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """A sample's value from /metrics (0 when absent)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.alive():
            super().kill()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[[ServeSettings], ServeProcess]]:
    started: list[ServeProcess] = []

    def start(settings: ServeSettings) -> ServeProcess:
        process = ServeProcess(
            settings, tmp_path / f"serve-{len(started)}.log", tmp_path / f"tmp-{len(started)}"
        )
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.kill()


def read_events(
    settings: Settings,
    event_type: EventType,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """Events of ``event_type`` from the start of its topic, until ``done(events)``."""
    found: list[dict[str, Any]] = []
    with EventConsumer(settings, None, [event_type], service="test") as consumer:
        deadline = time.monotonic() + timeout
        while not done(found) and time.monotonic() < deadline:
            found += [received.event for received in consumer.poll(250)]
    return found


def oip(records: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An OIP v2 inference request: one tensor per feature."""
    inputs = []
    for spec in CARD.features:
        inputs.append(
            {
                "name": spec.name,
                "datatype": "FP32" if spec.kind == "numeric" else "BYTES",
                "shape": [len(records), 1],
                "data": [record[spec.name] for record in records],
            }
        )
    return {"inputs": inputs, **extra}


class Load:
    """Clients posting records on keep-alive connections until stopped; they record every
    answer's status and the version that served it, in order."""

    def __init__(self, serve: ServeProcess, clients: int = 4) -> None:
        self.serve = serve
        self.answers: list[list[tuple[int, str | None]]] = [[] for _ in range(clients)]
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]

    def _client(self, index: int) -> None:
        connection = http.client.HTTPConnection(self.serve.host, self.serve.port, timeout=30)
        body = orjson.dumps(RECORD)
        headers = {"content-type": "application/json"}
        while not self.stopping.is_set():
            try:
                connection.request("POST", "/v1/predict", body, headers)
                response = connection.getresponse()
                answer = orjson.loads(response.read())
                self.answers[index].append((response.status, answer.get("model_version")))
            except (OSError, http.client.HTTPException):
                self.answers[index].append((0, None))
                connection.close()
                connection = http.client.HTTPConnection(self.serve.host, self.serve.port)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def versions(self) -> set[str | None]:
        return {version for answers in self.answers for _, version in answers}

    def failures(self) -> list[tuple[int, str | None]]:
        return [a for answers in self.answers for a in answers if a[0] != 200]
