"""`make demo`: the local stack, one event through Kafka and back, a model by alias.

What the closed loop will show once the services exist; today it proves the parts they stand
on: a real broker with the topics, schema-checked events both ways, a dead letter for a bad
record, and the MLflow registry answering ``models:/<name>@champion`` with a Keras model.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer, kafka_producer
from driftloop.settings import Settings
from driftloop.stack import LocalStack

Say = Callable[[str], None]


def round_trip(settings: Settings, say: Say) -> None:
    """Send a prediction and a label, plus one bad record; read all three back."""
    request_id = f"demo-{uuid.uuid4().hex[:8]}"
    features = {"age": 42, "income": 51_000.0, "region": "north"}
    prediction = new_event(
        request_id=request_id,
        model_name=settings.model_name,
        model_version="1",
        features=features,
        prediction=1,
        scores={"0": 0.2, "1": 0.8},
    )
    label = new_event(request_id=request_id, label=1)
    with EventProducer(settings, service="demo") as producer:
        producer.send(EventType.PREDICTION, prediction).get(timeout=10)
        producer.send(EventType.LABEL, label).get(timeout=10)
    raw = kafka_producer(settings, "demo")  # as an app that skips validation would
    raw.send(settings.topic_labels, b'{"label": 1}', key=b"bad").get(timeout=10)
    raw.close()
    say(f"sent prediction and label for {request_id}, and one label with no request_id")

    group = f"demo-{uuid.uuid4().hex[:8]}"
    wanted = [EventType.PREDICTION, EventType.LABEL]
    seen: dict[str, dict[str, Any]] = {}
    with EventConsumer(settings, group, wanted, service="demo") as consumer:
        deadline = time.monotonic() + 30
        while len(seen) < 2 and time.monotonic() < deadline:
            for received in consumer.poll(500):
                if received.event.get("request_id") == request_id:
                    seen[received.event_type.schema_name] = received.event
            consumer.commit()
    if len(seen) < 2:
        raise RuntimeError(f"read back only {sorted(seen)} within 30 s")
    say(f"read back and validated: {', '.join(sorted(seen))} (offsets committed after reading)")

    with EventConsumer(settings, None, [EventType.DEAD_LETTER], service="demo") as consumer:
        deadline = time.monotonic() + 30
        letters: list[dict[str, Any]] = []
        while not letters and time.monotonic() < deadline:
            letters = [r.event for r in consumer.poll(500) if r.event["key_b64"] == "YmFk"]
    if not letters:
        raise RuntimeError("the bad record did not reach the dead-letter topic")
    error = letters[-1]["error"]
    say(f"dead letter: field {error['field']!r} broke rule {error['rule']!r}: {error['message']}")


def register_and_load(settings: Settings, say: Say) -> None:
    """Fit a tiny Keras model, register it, point `champion` at it, load it by alias."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import keras
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature

    keras.utils.disable_interactive_logging()  # no progress bars between the demo's lines
    for noisy in ("mlflow", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_experiment("driftloop-demo")
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(512, 2)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, "sigmoid"),
        ]
    )
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=20, batch_size=64, verbose=0)
    accuracy = float(model.evaluate(x, y, verbose=0)[1])

    with mlflow.start_run(run_name="demo-tiny-model") as run:
        mlflow.log_metric("train_accuracy", accuracy)
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            registered_model_name=settings.model_name,
            signature=infer_signature(x[:4], model.predict(x[:4], verbose=0)),
            pip_requirements=[f"tensorflow-cpu=={__import__('tensorflow').__version__}"],
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    client.set_registered_model_alias(settings.model_name, "champion", version)
    say(
        f"registered {settings.model_name} v{version} (run {run.info.run_id[:8]}, "
        f"train accuracy {accuracy:.2f}) and set alias champion"
    )

    champion = client.get_model_version_by_alias(settings.model_name, "champion")
    loaded = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    probe = np.array([[2.0, 2.0], [-2.0, -2.0]], dtype="float32")
    scores = np.asarray(loaded.predict(probe)).ravel()
    say(
        f"loaded models:/{settings.model_name}@champion (v{champion.version}) and predicted "
        f"{[round(float(v), 3) for v in scores]} for two probe rows"
    )


def run(settings: Settings, say: Say = print) -> None:
    stack = LocalStack(settings)
    started = time.monotonic()
    outcome = stack.up()
    created = sum(1 for state in outcome["topics"].values() if state == "created")
    say(
        f"stack up in {time.monotonic() - started:.1f} s: Kafka {outcome['kafka']} at "
        f"{stack.kafka.address}, {len(outcome['topics'])} topics ({created} new), "
        f"MLflow {outcome['mlflow']} at {stack.mlflow.url}"
    )
    try:
        round_trip(settings, say)
        register_and_load(settings, say)
    finally:
        # Leave running what the demo did not start.
        if outcome["mlflow"] == "started":
            stack.mlflow.down()
        if outcome["kafka"] == "started":
            stack.kafka.down()
        say("stack down" if outcome["kafka"] == "started" else "stack left running")
