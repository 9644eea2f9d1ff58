"""The model a replica serves, and the hot swap that replaces it.

:class:`ModelRepository` holds one :class:`ServedModel` reference. :meth:`ModelRepository.refresh`
resolves the champion alias; when it names another version, that version is loaded, compiled
and warmed up beside the serving one (the loader, :mod:`services.serve.loading`, does the heavy
part in a process of its own and is waited on from a worker thread), its features are checked
against the serving one's, and only then does the reference move (one assignment: atomic for
the event loop). A request takes the reference once, so it finishes on the model that started
it; the old model's batcher finishes what it queued and stops. A version that fails anywhere on the
way is never swapped in: the old one keeps serving, and the failure is logged, counted and
published as a swap event with outcome ``failed``; the timer leaves that version alone for
``retry_failed_s`` (the admin reload tries again at once). Rollback is the alias moving back.

Example:
    >>> repository = ModelRepository("m", resolve, load, batcher, publish, "r1")  # doctest: +SKIP
    >>> await repository.refresh()  # doctest: +SKIP
    Refresh(outcome='swapped', version='3', previous='2', error=None)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from driftloop.events import EventType, new_event
from driftloop.model_card import ModelCard
from services.serve.batching import MicroBatcher
from services.serve.protocol import FeatureBatch

log = logging.getLogger(__name__)

SWAPS = Counter("driftloop_serve_swaps_total", "Model swaps, by outcome.", ["outcome"])
SWAP_SECONDS = Histogram(
    "driftloop_serve_swap_seconds",
    "Seconds to load, warm up and swap in a model version.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
FAILED_LOADS = Counter(
    "driftloop_serve_failed_loads_total", "Model versions that failed to load or warm up."
)
SERVING = Gauge("driftloop_serve_model_info", "1 for the model version being served.", ["version"])

Arrays = dict[str, np.ndarray]


@dataclass
class LoadedVersion:
    """What a loader returns: a version's card and its compiled call path (see runtime).

    ``one_row_ms`` is the chosen path's measured one-row call, when it was measured.
    """

    card: ModelCard
    call: Callable[[Arrays], np.ndarray]
    path: str
    timings_ms: dict[str, Any]
    one_row_ms: float | None = None
    packed: bool = False  # call takes the numeric features packed (FeatureBatch.arrays)


@dataclass
class ServedModel:
    """One loaded version with its micro-batcher: what a request predicts with."""

    name: str
    version: str
    card: ModelCard
    batcher: MicroBatcher
    path: str
    packed: bool = False

    @property
    def inline(self) -> bool:
        """Whether the model is called on the event loop (:meth:`call`), unbatched."""
        return self.batcher.inline

    def predict(self, batch: FeatureBatch) -> Awaitable[np.ndarray]:
        """The model's outputs for ``batch``, in some micro-batch (awaitable; not a coroutine
        of its own: one frame less per request)."""
        return self.batcher.predict(batch.arrays(self.card, self.packed), batch.rows)

    def call(self, batch: FeatureBatch) -> np.ndarray:
        """The model's outputs for ``batch`` now, on this thread (for an :attr:`inline` one)."""
        return self.batcher.call(batch.arrays(self.card, self.packed), batch.rows)


@dataclass
class Refresh:
    """What :meth:`ModelRepository.refresh` did."""

    outcome: Literal["swapped", "unchanged", "failed", "none"]
    version: str | None
    previous: str | None = None
    error: str | None = None


def signature(card: ModelCard) -> list[tuple[str, str]]:
    """What a new version must share with the serving one: the features, names and kinds."""
    return [(spec.name, spec.kind) for spec in card.features]


class ModelRepository:
    """The serving reference and the swap protocol around it.

    Parameters:
        name: the registered model.
        resolve: the version the champion alias names now, or None (blocking; run in a thread).
        load: loads, compiles and warms up a version (blocking; run in a thread), calling the
            check it is given with the version's card first; raises on any failure.
        batcher: makes a version's micro-batcher around its call path.
        publish: takes a swap event (must not block).
        replica: this replica's name in swap events.
        retry_failed_s: how long the timer leaves a version that failed before trying it
            again (a failure may have been the registry's, not the model's).
    """

    def __init__(
        self,
        name: str,
        resolve: Callable[[], str | None],
        load: Callable[[str, Callable[[ModelCard], None]], LoadedVersion],
        batcher: Callable[[LoadedVersion], MicroBatcher],
        publish: Callable[[EventType, list[dict[str, Any]]], Any],
        replica: str,
        retry_failed_s: float = 600.0,
    ) -> None:
        self.name = name
        self._resolve = resolve
        self._load = load
        self._batcher = batcher
        self._publish = publish
        self.replica = replica
        self.current: ServedModel | None = None
        self.problem: str | None = "no model has been promoted yet"
        self.retry_failed_s = retry_failed_s
        self._failed: dict[str, float] = {}  # version -> when it failed (monotonic)
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.current is not None

    async def refresh(self, *, force: bool = False) -> Refresh:
        """Resolve the alias and swap to what it names, unless already served.

        ``force`` retries a version that failed before (the admin reload).
        """
        async with self._lock:
            serving = self.current.version if self.current else None
            try:
                version = await asyncio.to_thread(self._resolve)
            except Exception as error:
                message = f"the model registry did not answer: {error}"
                log.warning(message, extra={"model": self.name})
                if self.current is None:
                    self.problem = message
                return Refresh("failed", None, serving, message)
            if version is None:
                if self.current is None:
                    self.problem = "no model has been promoted yet"
                return Refresh("none", serving, serving)
            failed_at = self._failed.get(version)
            if version == serving or (
                failed_at is not None
                and not force
                and time.monotonic() - failed_at < self.retry_failed_s
            ):
                return Refresh("unchanged", serving, serving)
            return await self._swap(version, serving)

    async def _swap(self, version: str, serving: str | None) -> Refresh:
        start = time.perf_counter()
        log.info("loading a model version", extra={"model": self.name, "version": version})
        serving_card = self.current.card if self.current is not None else None

        def check(card: ModelCard) -> None:
            if serving_card is not None and signature(card) != signature(serving_card):
                raise ValueError(
                    f"version {version}'s features {signature(card)} differ from the "
                    f"serving version {serving}'s {signature(serving_card)}"
                )

        try:
            loaded = await asyncio.to_thread(self._load, version, check)
        except Exception as error:
            return self._failure(version, serving, error, time.perf_counter() - start)
        old = self.current
        self.current = ServedModel(
            self.name, version, loaded.card, self._batcher(loaded), loaded.path, loaded.packed
        )  # the swap: requests from here on take the new version
        self.problem = None
        self._failed.pop(version, None)
        # TensorFlow, MLflow and the model are ~500k objects a full collection walks (100+ ms
        # of a stalled event loop, every few seconds under load): what exists now is kept
        # out of the collector. The cost: an old version's objects are never collected
        # (a few MB per swap).
        gc.freeze()
        duration = time.perf_counter() - start
        SWAPS.labels("swapped").inc()
        SWAP_SECONDS.observe(duration)
        SERVING.labels(version).set(1)
        if old is not None:
            SERVING.remove(old.version)
            await old.batcher.close()  # requests that took the old one finish on it
        log.info(
            "swapped model version",
            extra={
                "model": self.name,
                "version": version,
                "previous": serving,
                "path": loaded.path,
                "timings_ms": loaded.timings_ms,
                "seconds": round(duration, 3),
            },
        )
        self._publish(EventType.SWAP, [self._event(version, serving, "swapped", duration)])
        return Refresh("swapped", version, serving)

    def _failure(
        self, version: str, serving: str | None, error: Exception, duration: float
    ) -> Refresh:
        message = f"{type(error).__name__}: {error}"[:4000]
        self._failed[version] = time.monotonic()
        FAILED_LOADS.inc()
        SWAPS.labels("failed").inc()
        log.error(
            "a model version failed to load; the serving one stays",
            extra={"model": self.name, "version": version, "serving": serving, "error": message},
        )
        if self.current is None:
            self.problem = f"version {version} of {self.name} failed to load: {message}"
        self._publish(EventType.SWAP, [self._event(version, serving, "failed", duration, message)])
        return Refresh("failed", version, serving, message)

    def _event(
        self,
        version: str,
        previous: str | None,
        outcome: str,
        duration: float,
        error: str | None = None,
    ) -> dict[str, Any]:
        event = new_event(
            model_name=self.name,
            model_version=version,
            previous_version=previous,
            replica=self.replica,
            outcome=outcome,
            duration_s=round(duration, 3),
        )
        if error:
            event["error"] = error
        return event
