"""The model a replica serves, and the hot swap that replaces it.

:class:`ModelRepository` holds one :class:`ServedModel` reference. :meth:`ModelRepository.refresh`
resolves the champion alias; when it names another version, that version is loaded, compiled
and warmed up beside the serving one (the loader, :mod:`driftloop.services.serve.loading`, does the
heavy part in a process of its own and is waited on from a worker thread), its features are checked
against the serving one's, and only then does the reference move (one assignment: atomic for
the event loop). A request takes the reference once, so it finishes on the model that started
it. A version that fails anywhere on the way is never swapped in: the old one keeps serving, and
the failure is logged, counted and published as a swap event with outcome ``failed``; the timer
leaves that version alone for ``retry_failed_s`` (the admin reload tries again at once).
Rollback is the alias moving back.

A promotion is a bet on offline evidence; live evidence settles it. So the champion a swap
replaces is not closed at once: it stays loaded as ``previous`` for ``previous_s`` (or until the
next swap), scored in shadow on the same requests (:mod:`driftloop.services.serve.shadow`), and a
rollback to it (the trainer moving the alias back) swaps it in again without a load: instant.
Likewise the version the ``challenger`` alias names (a candidate that passed the offline gate)
is loaded beside the champion and scored in shadow, and swapped in without a second load if it
becomes the champion. :class:`ShadowModels` keeps that bookkeeping; a model leaves shadow with
its batcher closed (it finishes what it queued and stops).

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
from driftloop.services.serve.batching import MicroBatcher
from driftloop.services.serve.protocol import CHALLENGER, PREVIOUS, FeatureBatch

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
SHADOWED = Gauge(
    "driftloop_serve_shadow_model_info",
    "1 for each model version scored in shadow, by role (previous, challenger).",
    ["role", "version"],
)
FAILED_CHALLENGERS = Counter(
    "driftloop_serve_challenger_failed_loads_total",
    "Challenger versions that failed to load or warm up (never served, never scored).",
)

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


class ShadowModels:
    """The versions loaded beside the champion and scored in shadow: the champion the last
    swap replaced (``previous``, on probation) and a ``challenger``.

    Parameters:
        previous_s: how long a replaced champion stays in shadow (0: closed at once).
    """

    def __init__(self, previous_s: float) -> None:
        self.previous_s = previous_s
        self.previous: ServedModel | None = None
        self.challenger: ServedModel | None = None
        # What each request hands the shadow scorer: (role, model) of each; read on every
        # request, so kept as one tuple, rebuilt when a model comes or goes.
        self.scored: tuple[tuple[str, ServedModel], ...] = ()
        self.failed: dict[str, float] = {}  # challenger version -> when it failed (monotonic)
        self._previous_until = 0.0

    async def keep_previous(self, replaced: ServedModel) -> None:
        """``replaced`` was the champion until now: in shadow for ``previous_s``."""
        await self.drop(PREVIOUS)
        if self.previous_s <= 0:
            await replaced.batcher.close()  # requests that took it finish on it
            return
        self.previous, self._previous_until = replaced, time.monotonic() + self.previous_s
        self._changed()

    def set_challenger(self, model: ServedModel) -> None:
        self.challenger = model
        self._changed()

    def take(self, version: str) -> tuple[str, ServedModel] | None:
        """The model in shadow of ``version`` with its role, out of shadow (to serve as the
        champion), or None."""
        for role, model in self.scored:
            if model.version == version:
                if role == PREVIOUS:
                    self.previous = None
                else:
                    self.challenger = None
                self._changed()
                return role, model
        return None

    async def drop(self, role: str) -> None:
        """Close the model in ``role`` (if any): it leaves shadow."""
        model = self.previous if role == PREVIOUS else self.challenger
        if model is None:
            return
        if role == PREVIOUS:
            self.previous = None
        else:
            self.challenger = None
        self._changed()
        log.info("a model version leaves shadow", extra={"version": model.version, "role": role})
        await model.batcher.close()

    async def expire(self) -> None:
        """The previous champion leaves shadow once its probation is over."""
        if self.previous is not None and time.monotonic() >= self._previous_until:
            await self.drop(PREVIOUS)

    def _changed(self) -> None:
        scored = ((PREVIOUS, self.previous), (CHALLENGER, self.challenger))
        self.scored = tuple((role, model) for role, model in scored if model is not None)
        SHADOWED.clear()
        for role, model in self.scored:
            SHADOWED.labels(role, model.version).set(1)


class ModelRepository:
    """The serving reference and the swap protocol around it, and the models in shadow.

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
        resolve_challenger: the version the challenger alias names now, or None (blocking);
            None: no challenger is ever loaded.
        resolve_previous: the version the ``previous`` alias names now, or None (blocking):
            asked when the champion moves to the version in shadow as ``previous``. A
            rollback removes that alias, and the version rolled back from is closed; a
            promotion of the previous version (by hand, or a recall) sets it, and the version
            it replaced goes on probation in shadow like any other. None: always closed.
        previous_s: how long a replaced champion stays loaded and scored in shadow (0: it is
            closed at the swap).
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
        resolve_challenger: Callable[[], str | None] | None = None,
        previous_s: float = 0.0,
        resolve_previous: Callable[[], str | None] | None = None,
    ) -> None:
        self.name = name
        self._resolve = resolve
        self._resolve_challenger = resolve_challenger
        self._resolve_previous = resolve_previous
        self._load = load
        self._batcher = batcher
        self._publish = publish
        self.replica = replica
        self.current: ServedModel | None = None
        self.shadows = ShadowModels(previous_s)
        self.problem: str | None = "no model has been promoted yet"
        self.retry_failed_s = retry_failed_s
        self._failed: dict[str, float] = {}  # version -> when it failed (monotonic)
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.current is not None

    async def refresh(self, *, force: bool = False) -> Refresh:
        """Resolve the aliases: swap to the version the champion alias names, unless already
        served, and load the challenger's.

        ``force`` retries a version that failed before (the admin reload).
        """
        async with self._lock:
            await self.shadows.expire()
            refresh = await self._follow_champion(force)
            if refresh.outcome != "failed" or refresh.version is not None:  # registry answered
                await self._follow_challenger(force)
            return refresh

    async def _follow_champion(self, force: bool) -> Refresh:
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
        if version == serving or self._recently_failed(self._failed, version, force):
            return Refresh("unchanged", serving, serving)
        return await self._swap(version, serving)

    def _recently_failed(self, failed: dict[str, float], version: str, force: bool) -> bool:
        failed_at = failed.get(version)
        return (
            failed_at is not None
            and not force
            and time.monotonic() - failed_at < self.retry_failed_s
        )

    def _check(self, version: str) -> Callable[[ModelCard], None]:
        """The check a version's card must pass before it is loaded: the serving one's features."""
        serving = self.current

        def check(card: ModelCard) -> None:
            if serving is not None and signature(card) != signature(serving.card):
                raise ValueError(
                    f"version {version}'s features {signature(card)} differ from the "
                    f"serving version {serving.version}'s {signature(serving.card)}"
                )

        return check

    async def _loaded(self, version: str) -> ServedModel:
        """``version`` loaded, compiled and warmed up (raises on any failure)."""
        log.info("loading a model version", extra={"model": self.name, "version": version})
        loaded = await asyncio.to_thread(self._load, version, self._check(version))
        # TensorFlow, MLflow and the model are ~500k objects a full collection walks (100+ ms
        # of a stalled event loop, every few seconds under load): what exists now is kept
        # out of the collector. The cost: an old version's objects are never collected
        # (a few MB per swap).
        gc.freeze()
        log.info(
            "loaded a model version",
            extra={
                "model": self.name,
                "version": version,
                "path": loaded.path,
                "timings_ms": loaded.timings_ms,
            },
        )
        return ServedModel(
            self.name, version, loaded.card, self._batcher(loaded), loaded.path, loaded.packed
        )

    async def _swap(self, version: str, serving: str | None) -> Refresh:
        start = time.perf_counter()
        shadow = self.shadows.take(version)  # in shadow already: no load
        if shadow is not None:
            role, model = shadow
        else:
            role = None
            try:
                model = await self._loaded(version)
            except Exception as error:
                return self._failure(version, serving, error, time.perf_counter() - start)
        old = self.current
        self.current = model  # the swap: requests from here on take the new version
        self.problem = None
        self._failed.pop(version, None)
        duration = time.perf_counter() - start
        SWAPS.labels("swapped").inc()
        SWAP_SECONDS.observe(duration)
        SERVING.labels(version).set(1)
        if old is not None:
            SERVING.remove(old.version)
            if role == PREVIOUS and not await self._on_probation(old.version):
                await old.batcher.close()  # a rollback: requests that took it finish on it
            else:
                await self.shadows.keep_previous(old)
        log.info(
            "swapped model version",
            extra={
                "model": self.name,
                "version": version,
                "previous": serving,
                "from_shadow": role,
                "seconds": round(duration, 3),
            },
        )
        self._publish(EventType.SWAP, [self._event(version, serving, "swapped", duration)])
        return Refresh("swapped", version, serving)

    async def _on_probation(self, replaced: str) -> bool:
        """Whether ``replaced``, the champion a swap back to the previous version replaced,
        is the registry's ``previous`` now (see ``resolve_previous``); yes when the registry
        does not answer (the evidence is worth more than the CPU it costs)."""
        if self._resolve_previous is None:
            return False
        try:
            return await asyncio.to_thread(self._resolve_previous) == replaced
        except Exception:
            return True

    async def _follow_challenger(self, force: bool) -> None:
        """Load the version the challenger alias names into shadow; drop the one in shadow
        when the alias goes or names the champion. A challenger that fails to load is logged
        and counted, and left alone for ``retry_failed_s``."""
        if self._resolve_challenger is None:
            return
        try:
            version = await asyncio.to_thread(self._resolve_challenger)
        except Exception as error:
            log.warning(
                "the model registry did not say the challenger",
                extra={"model": self.name, "error": str(error)},
            )
            return
        shadows, champion = self.shadows, self.current
        held = shadows.challenger.version if shadows.challenger is not None else None
        if version == held:
            return
        await shadows.drop(CHALLENGER)  # gone, the champion's now, or replaced by another
        if (
            version is None
            or champion is None
            or version == champion.version
            or self._recently_failed(shadows.failed, version, force)
        ):
            return
        try:
            challenger = await self._loaded(version)
        except Exception as error:
            shadows.failed[version] = time.monotonic()
            FAILED_CHALLENGERS.inc()
            log.error(
                "a challenger failed to load; it is not scored",
                extra={
                    "model": self.name,
                    "version": version,
                    "error": f"{type(error).__name__}: {error}"[:4000],
                },
            )
            return
        shadows.failed.pop(version, None)
        shadows.set_challenger(challenger)

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
