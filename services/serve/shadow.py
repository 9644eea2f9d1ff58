"""Shadow scoring: models that do not answer are scored on the same requests, after the answer.

Live evidence decides what answers: the trainer's arbiter compares the online model with the
champion, and a promotion is judged against the champion it replaced. That evidence is the
models' predictions on the same requests, which labels later score. So while the online model
answers, the champion is scored in shadow; after a promotion, the previous champion; while a
candidate waits, the challenger (see :mod:`driftloop.services.serve.repository`). Their predictions
go on the request's prediction events as ``shadows`` and never into an answer.

A request is answered first: the data plane hands its prediction rows, its checked features
and the models in shadow to :meth:`ShadowScorer.submit`, which never waits. The scorer's task
(:meth:`ShadowScorer.run`) scores what queued since its last turn, all requests at once per
model (their micro-batchers group them as they group requests), attaches each model's
prediction to each row and puts the rows in the outbox. Scoring takes the model thread from
requests, so it is bounded: past ``capacity`` rows waiting, a request's rows go to the outbox
at once without shadows (logged, never delayed, never dropped) and are counted in
``driftloop_serve_shadow_skipped_total``. A request with nothing in shadow never comes here.

Example:
    >>> scorer = ShadowScorer(outbox.put, capacity=10_000)  # doctest: +SKIP
    >>> scorer.submit(rows, batch, (("previous", previous_model),))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from driftloop.events import EventType
from driftloop.services.serve.protocol import (
    FeatureBatch,
    PredictionRow,
    Predictions,
    ShadowScore,
    prediction_event,
    with_shadows,
)
from driftloop.services.serve.repository import ServedModel

log = logging.getLogger(__name__)

SCORED = Counter(
    "driftloop_serve_shadow_scored_total", "Prediction rows scored in shadow, by role.", ["role"]
)
SKIPPED = Counter(
    "driftloop_serve_shadow_skipped_total",
    "Prediction rows logged without their shadows because shadow scoring fell behind (or "
    "serve was stopping).",
)
FAILED = Counter(
    "driftloop_serve_shadow_failed_total",
    "Prediction rows a model in shadow failed on (logged without its prediction), by role.",
    ["role"],
)
LOG_EVERY_S = 10.0

# The models in shadow on one request: (role, model) of each.
Shadowed = Sequence[tuple[str, ServedModel]]


@dataclass(slots=True)
class ShadowRequest:
    """An answered request's prediction rows, its checked features, and its models in shadow."""

    rows: list[PredictionRow]
    batch: FeatureBatch
    shadowed: Shadowed


class ShadowScorer:
    """Scores the models in shadow on answered requests and logs the rows with their shadows.

    Parameters:
        publish: the outbox's ``put`` (takes the event type, rows and what builds the events).
        capacity: most rows waiting to be scored; past it, rows are logged without shadows.
    """

    def __init__(self, publish: Callable[..., Any], capacity: int = 10_000) -> None:
        self.publish = publish
        self.capacity = capacity
        self._queue: list[ShadowRequest] = []
        self._rows = 0  # rows in the queue
        self._arrived = asyncio.Event()
        self._stopping = False
        self._last_failure_log = 0.0
        # Set once the scorer has handed the outbox everything: the outbox stops after it.
        self.finished = asyncio.Event()

    def submit(self, rows: list[PredictionRow], batch: FeatureBatch, shadowed: Shadowed) -> None:
        """Score ``shadowed`` on ``batch`` later, then log ``rows`` with their predictions; or
        log ``rows`` now, without, when the scorer is behind (never waits)."""
        if self._stopping or self._rows + len(rows) > self.capacity:
            SKIPPED.inc(len(rows))
            self.publish(EventType.PREDICTION, rows, prediction_event)
            return
        self._queue.append(ShadowRequest(rows, batch, shadowed))
        self._rows += len(rows)
        self._arrived.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Score what arrives until ``stop``; then log what still waits without shadows."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if not self._queue:
                    self._arrived.clear()
                    arrived = asyncio.create_task(self._arrived.wait())
                    await asyncio.wait({arrived, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    arrived.cancel()
                    continue
                taken, self._queue, self._rows = self._queue, [], 0
                await self.score(taken)
        finally:
            self._stopping = True
            stopping.cancel()
            for request in self._queue:
                SKIPPED.inc(len(request.rows))
                self.publish(EventType.PREDICTION, request.rows, prediction_event)
            self._queue, self._rows = [], 0
            self.finished.set()

    async def score(self, requests: list[ShadowRequest]) -> None:
        """Score each request's models in shadow, all at once, and log its rows with them."""
        for rows in await self.scored(requests):
            self.publish(EventType.PREDICTION, rows, prediction_event)

    async def scored(self, requests: list[ShadowRequest]) -> list[list[PredictionRow]]:
        """Each request's rows with its models' predictions in shadow, all scored at once (a
        model that fails is left out of the rows, counted and logged)."""
        calls = [_values(model, r.batch) for r in requests for _, model in r.shadowed]
        results = iter(await asyncio.gather(*calls, return_exceptions=True))
        answered = []
        for request in requests:
            shadows: list[list[ShadowScore]] = [[] for _ in request.rows]
            for role, model in request.shadowed:
                values = next(results)
                if isinstance(values, BaseException):
                    FAILED.labels(role).inc(len(request.rows))
                    self._failed(role, model, values)
                    continue
                for row_shadows, value in zip(shadows, values, strict=True):
                    row_shadows.append((role, model.version, value))
                SCORED.labels(role).inc(len(request.rows))
            answered.append(
                [
                    with_shadows(row, row_shadows)
                    for row, row_shadows in zip(request.rows, shadows, strict=True)
                ]
            )
        return answered

    def _failed(self, role: str, model: ServedModel, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= LOG_EVERY_S:  # a broken model fails every request
            self._last_failure_log = now
            log.warning(
                "a model in shadow failed; its predictions are left out",
                extra={"role": role, "version": model.version, "error": repr(error)},
            )


async def _values(model: ServedModel, batch: FeatureBatch) -> list[Any]:
    """What ``model`` predicts for each row of ``batch`` (whatever fails, fails here: in the
    gather, not in the loop that builds the calls)."""
    return Predictions.decode(model.card, await model.predict(batch)).values
