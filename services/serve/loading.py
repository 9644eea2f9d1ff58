"""Loading a registered version: the Keras model and its card from MLflow, compiled and warm.

Loading is seconds of Python holding the GIL (MLflow's download, Keras deserializing the model,
tracing it, the TFLite conversion, timing each call path). In the serving process that stalls
the event loop in long slices, which is what requests in flight during a hot swap would pay.
So :class:`VersionLoader` does the heavy part in a process of its own (started once, kept for
later versions, at a lower CPU priority): it chooses the call path there and hands back the
converted TFLite model's bytes; the serving process only builds an interpreter from them and
checks its outputs against the eager call's (milliseconds). A version whose fastest path is not
TFLite is loaded here as before, its path already chosen.

TensorFlow's autograph writes the code it generates to temporary files, removed when the
interpreter exits normally, which a loader process does not when serve is stopped or killed.
So each loader process gets a scratch directory of its own as its temporary directory, removed
when serve closes the loader, when the process is replaced, and by the process itself when it
outlives serve (a :class:`~driftloop.children.HelperProcess` with ``scratch``).

Example:
    >>> loader = VersionLoader(registry, "m", max_batch_size=64)  # doctest: +SKIP
    >>> loader.load("3", check=lambda card: None).path  # doctest: +SKIP
    'tflite'
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from driftloop.children import HelperProcess
from driftloop.errors import ModelLoadFailed
from driftloop.model_card import ModelCard
from driftloop.registry import ModelRegistry, model_uri
from driftloop.services.serve.repository import LoadedVersion
from driftloop.services.serve.runtime import ModelRuntime, compile_model, tflite_runtime

log = logging.getLogger(__name__)

NICE = 5  # the loader process yields the CPU to the serving one when both want it


def load_version(
    registry: ModelRegistry,
    name: str,
    version: str,
    check: Callable[[ModelCard], None],
    max_batch_size: int,
    path: str = "auto",
) -> LoadedVersion:
    """Download version ``version`` of ``name``, pick its fastest call path and warm it up,
    all in this process.

    ``check`` sees the card first (a version whose features differ fails before its model
    is downloaded). Blocking (seconds). Raises on any failure.
    """
    card = registry.model_card(name, version)
    check(card)
    return _loaded(card, _compile_here(name, version, card, max_batch_size, path))


def _compile_here(
    name: str, version: str, card: ModelCard, max_batch_size: int, path: str
) -> ModelRuntime:
    import mlflow.tensorflow

    model = mlflow.tensorflow.load_model(model_uri(name, version))
    return compile_model(model, card, max_batch_size, path)


def _loaded(card: ModelCard, runtime: ModelRuntime) -> LoadedVersion:
    timing = runtime.timings_ms.get(runtime.path)
    one_row_ms = timing.get("1") if isinstance(timing, dict) else None
    return LoadedVersion(
        card, runtime.call, runtime.path, runtime.timings_ms, one_row_ms, runtime.packed
    )


def _prepare_loader_process(tracking_uri: str) -> None:
    """The loader process's start: lower priority, quiet TensorFlow, the registry's address
    (its scratch directory and its end with serve are :class:`HelperProcess`'s)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    faulthandler.enable()  # a crash in TensorFlow's C++ says where, in serve's log
    with contextlib.suppress(OSError):  # not allowed here: it works at the same priority
        os.nice(NICE)
    import mlflow
    import tensorflow as tf

    # one core at most: the other is the serving process's
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


_REGISTRIES: dict[str, ModelRegistry] = {}


def compile_elsewhere(
    tracking_uri: str, name: str, version: str, max_batch_size: int, path: str
) -> dict[str, Any]:
    """What the loader process runs: fetch the card, load and compile, say what it found.

    Returns the card, the chosen path and its timings; for TFLite, the converted model's
    bytes and the eager call's outputs on the probe batches (the serving process checks its
    own interpreter against them); or ``{"error": ...}`` (an error's class may not survive
    the trip back). MLflow's client calls are Python through and through: here, not in the
    serving process.
    """
    registry = _REGISTRIES.get(tracking_uri)
    if registry is None:
        registry = _REGISTRIES[tracking_uri] = ModelRegistry(tracking_uri)
    try:
        card = registry.model_card(name, version)
    except Exception as error:
        return {"error": f"the model card of version {version} cannot be read: {error!r}"}
    try:
        runtime = _compile_here(name, version, card, max_batch_size, path)
    except Exception as error:
        return {
            "card": card,
            "error": str(error) if isinstance(error, ModelLoadFailed) else repr(error),
        }
    return {
        "card": card,
        "path": runtime.path,
        "timings_ms": runtime.timings_ms,
        "blob": runtime.blob if runtime.path == "tflite" else None,
        "expected": runtime.expected,
    }


class VersionLoader:
    """Loads versions for :class:`~driftloop.services.serve.repository.ModelRepository`, the heavy
    part in a loader process (see the module's docstring).

    Parameters:
        registry: where versions and their cards are.
        name: the registered model.
        max_batch_size: the largest batch a version is called with (timed, and checked).
        path: ``auto`` or one call path (see
        :func:`~driftloop.services.serve.runtime.compile_model`). isolated: load in a loader process
            (False: in the calling thread, as :func:`load_version` does).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        max_batch_size: int,
        path: str = "auto",
        isolated: bool = True,
    ) -> None:
        self.registry = registry
        self.name = name
        self.max_batch_size = max_batch_size
        self.path = path
        self.isolated = isolated
        # Started at the first load, kept for later versions; spawned, never forked (TF).
        self._helper = HelperProcess(
            _prepare_loader_process, (registry.tracking_uri,), name="loader", scratch=True
        )

    def load(self, version: str, check: Callable[[ModelCard], None]) -> LoadedVersion:
        """Load, compile and warm up ``version`` (blocking: seconds); raises on any failure.

        ``check`` sees the card before the version can serve (and, loading here, before the
        model is downloaded).
        """
        if not self.isolated:
            card = self.registry.model_card(self.name, version)
            check(card)
            return _loaded(
                card, _compile_here(self.name, version, card, self.max_batch_size, self.path)
            )
        found = self._elsewhere(version)
        if "card" in found:
            check(found["card"])  # other features: that says more than a failed warm-up
        if "error" in found:
            raise ModelLoadFailed(found["error"])
        card = found["card"]
        if found["path"] == "tflite" and found["blob"] is not None:
            runtime = tflite_runtime(found["blob"], card, self.max_batch_size, found["expected"])
            runtime.timings_ms = found["timings_ms"]
        else:  # TFLite did not convert or was slower: that path here, already chosen
            runtime = _compile_here(self.name, version, card, self.max_batch_size, found["path"])
            runtime.timings_ms = found["timings_ms"] | {"here": runtime.timings_ms}
        return _loaded(card, runtime)

    def _elsewhere(self, version: str, attempts: int = 2) -> dict[str, Any]:
        for attempt in range(1, attempts + 1):
            try:
                return self._helper.submit(
                    compile_elsewhere,
                    self.registry.tracking_uri,
                    self.name,
                    version,
                    self.max_batch_size,
                    self.path,
                ).result()
            except BrokenProcessPool as error:  # it died (killed?): a new one, once
                if attempt == attempts:
                    raise ModelLoadFailed(
                        f"the loader process died loading version {version}"
                    ) from error
                log.info(
                    "loading the version again, in a new loader process",
                    extra={"version": version, "attempt": attempt + 1},
                )
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the loader process (a later load starts another) and remove its scratch."""
        self._helper.close(wait=False)
