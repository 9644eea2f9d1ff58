"""Synthetic prediction and example streams for the monitor's unit tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from driftloop.events import format_time
from driftloop.model_card import FeatureSpec, ModelCard
from driftloop.reference import ReferenceSketch
from driftloop.services.monitor.monitor import ModelReference

CARD = ModelCard(
    task="classification",
    features=[
        FeatureSpec(name="age"),
        FeatureSpec(name="income"),
        FeatureSpec(name="region", kind="categorical", categories=["n", "s", "e", "w"]),
    ],
    classes=[0, 1],
    metrics={"accuracy": 0.9},
)
START = 1_790_000_000.0  # event time of the first event


def row(rng: np.random.Generator, age_shift: float = 0.0, income_scale: float = 1.0) -> dict:
    return {
        "age": float(np.round(rng.normal(40 + age_shift, 10))),  # discrete: ties on purpose
        "income": float(rng.lognormal(8, 0.5) * income_scale),
        "region": str(rng.choice(["n", "s", "e", "w"], p=[0.4, 0.3, 0.2, 0.1])),
    }


def predict(features: dict[str, Any]) -> int:
    return int(features["income"] > 3000)


def reference(seed: int = 1, rows: int = 5000, age_shift: float = 0.0) -> ModelReference:
    rng = np.random.default_rng(seed)
    training = [row(rng, age_shift) for _ in range(rows)]
    sketch = ReferenceSketch.build(CARD, training, predictions=[predict(r) for r in training])
    return ModelReference(CARD, sketch)


def predictions(
    count: int,
    seed: int = 7,
    version: str = "1",
    shift: Callable[[int], float] = lambda i: 0.0,
    first: int = 0,
) -> Iterator[dict[str, Any]]:
    """``count`` prediction events, one a second; ``shift(i)`` moves age at event ``i``."""
    rng = np.random.default_rng(seed)
    for i in range(first, first + count):
        features = row(rng, shift(i))
        yield {
            "model_name": "m",
            "model_version": version,
            "event_time": format_time(START + i),
            "features": features,
            "prediction": predict(features),
        }


def examples(
    count: int, error_rate: Callable[[int], float], seed: int = 3, version: str = "1"
) -> Iterator[dict[str, Any]]:
    """Labelled examples whose label disagrees with the prediction at ``error_rate(i)``."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        features = row(rng)
        prediction = predict(features)
        wrong = rng.random() < error_rate(i)
        yield {
            "model_name": "m",
            "model_version": version,
            "event_time": format_time(START + i),
            "features": features,
            "prediction": prediction,
            "label": 1 - prediction if wrong else prediction,
        }
