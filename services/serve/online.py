"""Which model answers this replica's requests: the champion, or the trainer's online model.

The trainer runs two learners: the batch champion, refitted after drift, and an online river
model that learns from every labelled example as it arrives, so that after a drift it is right
again long before a refit is promoted. The trainer's arbiter compares their answers on the same
examples and publishes its decision as an ``online_model`` event (a compacted topic, keyed by
model: the latest event is the decision), naming a snapshot of the online model while it
answers. :class:`OnlineAnswers` holds that decision and the loaded snapshot; the watcher
(:class:`driftloop.services.serve.worker.OnlineWatcher`) feeds it the events; the data plane asks
it which model answers a request.

The champion's card still decides which request bodies are valid and the answer's shape (its
classes); :func:`online_predictions` turns the river model's class probabilities into the same
:class:`~driftloop.services.serve.protocol.Predictions` the champion's outputs decode to. A row the
online model cannot answer (it has learned nothing yet, or it fails) is answered by the champion: a
request is never refused because of the online model.

Example:
    >>> from driftloop.model_card import FeatureSpec, ModelCard
    >>> class Model:  # what a snapshot is: a river classifier
    ...     def predict_proba_one(self, x):
    ...         return {"yes": 0.75, "no": 0.25} if x["age"] > 40 else {"no": 1.0}
    >>> card = ModelCard(task="classification", classes=["no", "yes"],
    ...                  features=[FeatureSpec(name="age")])
    >>> batch = FeatureBatch(2, [{"age": 50.0}, {"age": 20.0}])
    >>> predictions = online_predictions(Model(), batch, card)
    >>> predictions.values, predictions.scores.tolist()
    (['yes', 'no'], [[0.25, 0.75], [1.0, 0.0]])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from driftloop.model_card import ModelCard
from driftloop.online_snapshots import StaleSnapshot, river_features
from driftloop.services.serve.protocol import ONLINE, FeatureBatch, Predictions

log = logging.getLogger(__name__)

ANSWERING = Gauge(
    "driftloop_serve_online_answering", "1 while the online model answers this replica's requests."
)
FALLBACKS = Counter(
    "driftloop_serve_online_fallbacks_total",
    "Requests the online model could not answer (nothing learned yet, or it failed), answered "
    "by the champion instead.",
)
SNAPSHOT_LOADS = Counter(
    "driftloop_serve_online_snapshot_loads_total",
    "Online-model snapshots this replica read, by outcome (loaded, stale: overwritten before it "
    "was read, failed).",
    ["outcome"],
)

# Reads a snapshot: (store key, online version) -> the river model (blocking: run in a thread).
LoadSnapshot = Callable[[str, str], Any]


def online_predictions(model: Any, batch: FeatureBatch, card: ModelCard) -> Predictions | None:
    """The river ``model``'s answers on ``batch`` in the shape the champion's card gives them,
    or None when it cannot answer a row (it has learned nothing yet).

    A river classifier's probabilities cover the classes it has seen: a card class it has not
    seen scores 0, and a class the card lacks is left out (the answer's classes and their types
    are the card's). The prediction is the best-scoring class, as river's ``predict_one``
    chooses it from the same probabilities (one call a row, not two). A regressor's
    ``predict_one`` is the value. The rows are what the online model learned from
    (:func:`~driftloop.online_snapshots.river_features`).
    """
    rows = [river_features(row) for row in batch.row_features()]
    if card.task == "regression":
        values = [model.predict_one(row) for row in rows]
        if any(value is None for value in values):
            return None
        return Predictions([float(value) for value in values], None, [])
    classes = card.classes
    column = {label: index for index, label in enumerate(classes)}
    scores = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for index, row in enumerate(rows):
        probabilities = model.predict_proba_one(row)
        known = [(column[label], p) for label, p in probabilities.items() if label in column]
        if not any(p > 0 for _, p in known):  # nothing learned yet, or only other classes
            return None
        for position, p in known:
            scores[index, position] = p
    picked = scores.argmax(axis=1).tolist()
    return Predictions([classes[i] for i in picked], scores, classes)


@dataclass(slots=True)
class OnlineModel:
    """A loaded snapshot of the online model.

    Parameters:
        version: its version, ``online.<n>``: what the answers it gives name.
        model: the river model.
    """

    version: str
    model: Any
    failed: bool = field(default=False, compare=False)  # it failed on a request (logged)

    def predictions(self, batch: FeatureBatch, card: ModelCard) -> Predictions | None:
        """Its answers on ``batch`` (see :func:`online_predictions`), None when it cannot
        answer; a model that fails counts as one that cannot answer (its first failure is
        logged: it would fail on every such request, and ``FALLBACKS`` counts them)."""
        try:
            return online_predictions(self.model, batch, card)
        except Exception:
            if not self.failed:
                self.failed = True
                log.warning(
                    "the online model failed on a request; the champion answers such requests",
                    exc_info=True,
                    extra={"version": self.version},
                )
            return None


class OnlineAnswers:
    """The trainer's latest decision for one model, and the snapshot it names.

    Parameters:
        name: the served model; events for other models are ignored.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        # The snapshot that answers requests now; None while the champion answers.
        self.answering: OnlineModel | None = None

    async def follow(self, event: Mapping[str, Any], load: LoadSnapshot) -> None:
        """Take the decision ``event`` (an ``online_model`` event) says: the champion answers,
        or the snapshot it names, read with ``load`` in a thread (unless already loaded).

        A snapshot that cannot be read leaves the replica as it was: one overwritten meanwhile
        (:class:`~driftloop.online_snapshots.StaleSnapshot`) means a newer event is on its way,
        and while the online model answers the trainer publishes one every few seconds.
        """
        if event["model_name"] != self.name:
            return
        key, version = event["snapshot_uri"], event["online_version"]
        if event["answerer"] != ONLINE or key is None:
            if self.answering is not None:
                log.info("the champion answers again", extra={"online_version": version})
            self.answering = None
            ANSWERING.set(0)
            return
        if self.answering is not None and self.answering.version == version:
            return
        try:
            model = await asyncio.to_thread(load, key, version)
        except StaleSnapshot as stale:
            SNAPSHOT_LOADS.labels("stale").inc()
            log.info(
                "an online snapshot was overwritten before it was read; waiting for the next",
                extra={"version": version, "reason": str(stale)},
            )
            return
        except Exception as error:
            SNAPSHOT_LOADS.labels("failed").inc()
            log.warning(
                "cannot read an online snapshot; the answerer stays as it was",
                extra={"version": version, "key": key, "error": repr(error)},
            )
            return
        SNAPSHOT_LOADS.labels("loaded").inc()
        if self.answering is None:
            log.info(
                "the online model answers",
                extra={"version": version, "evidence": event.get("evidence")},
            )
        self.answering = OnlineModel(version, model)
        ANSWERING.set(1)
