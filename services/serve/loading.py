"""Loading a registered version: the Keras model and its card from MLflow, compiled and warm."""

from __future__ import annotations

import mlflow.tensorflow

from driftloop.registry import ModelRegistry, model_uri
from services.serve.repository import LoadedVersion
from services.serve.runtime import compile_model


def load_version(
    registry: ModelRegistry, name: str, version: str, max_batch_size: int, path: str = "auto"
) -> LoadedVersion:
    """Download version ``version`` of ``name``, pick its fastest call path and warm it up.

    Blocking (seconds): the repository runs it in a worker thread. Raises on any failure.
    """
    card = registry.model_card(name, version)
    model = mlflow.tensorflow.load_model(model_uri(name, version))
    runtime = compile_model(model, card, max_batch_size, path)
    return LoadedVersion(card, runtime.predict, runtime.path, runtime.timings_ms)
