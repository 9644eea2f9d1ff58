"""Loading a registered version: the Keras model and its card from MLflow, compiled and warm."""

from __future__ import annotations

from collections.abc import Callable

import mlflow.tensorflow

from driftloop.model_card import ModelCard
from driftloop.registry import ModelRegistry, model_uri
from services.serve.repository import LoadedVersion
from services.serve.runtime import compile_model


def load_version(
    registry: ModelRegistry,
    name: str,
    version: str,
    check: Callable[[ModelCard], None],
    max_batch_size: int,
    path: str = "auto",
) -> LoadedVersion:
    """Download version ``version`` of ``name``, pick its fastest call path and warm it up.

    ``check`` sees the card first (a version whose features differ fails before its model
    is downloaded). Blocking (seconds): the repository runs it in a worker thread. Raises on
    any failure.
    """
    card = registry.model_card(name, version)
    check(card)
    model = mlflow.tensorflow.load_model(model_uri(name, version))
    runtime = compile_model(model, card, max_batch_size, path)
    timing = runtime.timings_ms.get(runtime.path)
    one_row_ms = timing.get("1") if isinstance(timing, dict) else None
    return LoadedVersion(card, runtime.predict, runtime.path, runtime.timings_ms, one_row_ms)
