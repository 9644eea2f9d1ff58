"""serve's handlers, whatever the transport: inference, model metadata, health.

Every transport calls these: the REST adapter (:mod:`driftloop.services.serve.http`) and the
Kafka consumer of inference requests (:mod:`driftloop.services.serve.kafka_inference`). An
inference is two calls: ``begin_*`` checks the body
against the serving version's card and takes that version once, so a request finishes on the
version that started it even if a swap happens meanwhile; :meth:`DataPlane.infer` calls the
model, logs the predictions and returns the answer, which names that version. Errors are
:mod:`driftloop.errors` classes; the transport maps them to its protocol's (for HTTP,
:func:`driftloop.http.error_answer`).

While the trainer's arbiter says the online model is better
(:mod:`driftloop.services.serve.online`), the online model's snapshot answers instead, taken once at
``begin_*`` like the version: the answer names its version (``online.<n>``), and the champion is
scored in shadow. The champion's card still checks the body and shapes the answer. A request that
names a version is answered by that version: the champion's, or the online model's. Whatever is in
shadow (the champion then, the previous champion on probation, a challenger) is scored after the
answer (:mod:`driftloop.services.serve.shadow`); a request with nothing in shadow costs what it did
before: its rows go straight to the outbox.

Example:
    >>> plane = DataPlane("driftloop-model", repository, outbox.put)  # doctest: +SKIP
    >>> inference = plane.begin_records({"age": 41, "income": 52000.0})  # doctest: +SKIP
    >>> (await plane.infer(inference))["model_version"]  # doctest: +SKIP
    '3'
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from driftloop.errors import ModelNotFound, ModelNotReady
from driftloop.events import EventType, new_request_id
from driftloop.services.serve.online import FALLBACKS, OnlineAnswers, OnlineModel
from driftloop.services.serve.protocol import (
    CHAMPION,
    ONLINE,
    OUTPUTS,
    FeatureBatch,
    Predictions,
    decode_infer,
    decode_records,
    infer_response,
    model_metadata,
    prediction_event,
    prediction_rows,
    records_response,
    requested_outputs,
    row_ids,
)
from driftloop.services.serve.repository import ModelRepository, ServedModel
from driftloop.services.serve.shadow import ShadowRequest, ShadowScorer


def _version() -> str:
    try:
        return version("driftloop")
    except PackageNotFoundError:
        return "0"


# The online model (river, pure Python) takes ~0.1 ms a row: a few rows are answered on the
# event loop, more in the model thread, where they do not hold other requests.
ONLINE_INLINE_ROWS = 4


class DataPlane:
    """The inference handlers over one :class:`ModelRepository`.

    Parameters:
        name: the model this server serves.
        repository: holds the serving version and the models in shadow.
        publish: takes prediction rows and what builds their events (must not block: the
            outbox's ``put``).
        online: which model answers, the champion or the online model (None: the champion).
        scorer: scores the models in shadow and logs the rows (None: nothing is scored in
            shadow).
        executor: the model thread, where the online model answers requests of more than
            :data:`ONLINE_INLINE_ROWS` rows (None: the default executor).
    """

    def __init__(
        self,
        name: str,
        repository: ModelRepository,
        publish: Callable[..., Any],
        online: OnlineAnswers | None = None,
        scorer: ShadowScorer | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.name = name
        self.repository = repository
        self.publish = publish
        self.online = OnlineAnswers(name) if online is None else online
        self.scorer = scorer
        self.executor = executor
        self.server_version = _version()

    # --- health and metadata -----------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.ready

    def metadata(self) -> dict[str, Any]:
        return {"name": "driftloop-serve", "version": self.server_version, "extensions": []}

    def model(self, name: str, model_version: str | None = None) -> ServedModel:
        """The serving champion, if the model (and version: the champion's or the online
        model's) is the one asked for; raises 404 or 503 otherwise. Its card checks requests
        whichever model answers them."""
        if name != self.name:
            raise ModelNotFound(
                f"model {name!r} is not served here; this server serves {self.name!r}"
            )
        current = self.repository.current
        if current is None:
            raise ModelNotReady(self.repository.problem or "no model is loaded yet")
        if model_version is not None and model_version != current.version:
            online = self.online.answering
            if online is None or model_version != online.version:
                served = (
                    current.version if online is None else f"{current.version}, {online.version}"
                )
                raise ModelNotFound(
                    f"version {model_version} of {name!r} is not served here; this replica "
                    f"serves version {served}"
                )
        return current

    def answering(self, model_version: str | None = None) -> OnlineModel | None:
        """The online model that answers a request for ``model_version`` (checked by
        :meth:`model`), or None when the champion answers it."""
        online = self.online.answering
        if online is None or model_version is None or model_version == online.version:
            return online
        return None

    def model_metadata(self, name: str, model_version: str | None = None) -> dict[str, Any]:
        model = self.model(name, model_version)
        return model_metadata(model.name, model.version, model.card)

    def model_ready(self, name: str, model_version: str | None = None) -> dict[str, Any]:
        model = self.model(name, model_version)
        return {"name": model.name, "version": model_version or model.version, "ready": True}

    # --- inference --------------------------------------------------------------------------

    def begin_infer(
        self,
        name: str,
        document: Any,
        model_version: str | None = None,
        request_id: str | None = None,
    ) -> Inference:
        """Check an OIP v2 inference request; raises 404, 503 or 422 (see errors)."""
        model = self.model(name, model_version)
        batch, body_id = decode_infer(document, model.card)
        wanted = requested_outputs(document, OUTPUTS)
        request_id = body_id or request_id or new_request_id()
        outputs = None if len(wanted) == len(OUTPUTS) else wanted
        return Inference(model, batch, request_id, outputs, self.answering(model_version))

    def begin_records(self, document: Any, request_id: str | None = None) -> Inference:
        """Check plain records; raises 503 or 422 (see errors)."""
        model = self.model(self.name)
        batch, body_id = decode_records(document, model.card)
        request_id = body_id or request_id or new_request_id()
        return Inference(model, batch, request_id, RECORDS, self.online.answering)

    async def infer(self, inference: Inference) -> dict[str, Any]:
        """Call the model on a checked request, log its predictions, and answer it.

        A model fast enough to call inline is called right here, so that such a request is
        one coroutine; the others wait for their micro-batch. Whatever the model raises is
        raised (a server error: the request was checked). The online model, when it answers,
        answers first; a request it cannot answer is the champion's.
        """
        if inference.online is not None:
            answer = await self._infer_online(inference)
            if answer is not None:
                return answer
        model = inference.model
        called = time.perf_counter()
        if model.inline:
            outputs = model.call(inference.batch)
        else:
            outputs = await model.predict(inference.batch)
        predictions = Predictions.decode(model.card, outputs)
        return self.complete(inference, predictions, (time.perf_counter() - called) * 1e3)

    async def _infer_online(self, inference: Inference) -> dict[str, Any] | None:
        """The online model's answer, or None when it cannot answer (then the champion does)."""
        online, batch, card = inference.online, inference.batch, inference.model.card
        assert online is not None
        called = time.perf_counter()
        if batch.rows <= ONLINE_INLINE_ROWS:
            predictions = online.predictions(batch, card)
        else:
            loop = asyncio.get_running_loop()
            predictions = await loop.run_in_executor(self.executor, online.predictions, batch, card)
        if predictions is None:
            FALLBACKS.inc()
            inference.online = None  # the champion answers it
            return None
        return self.complete(inference, predictions, (time.perf_counter() - called) * 1e3)

    def complete(
        self, inference: Inference, predictions: Predictions, latency_ms: float
    ) -> dict[str, Any]:
        """The answer to ``inference`` given its ``predictions`` (by the online model when
        ``inference.online`` is set, else by the champion); logs them, with the models in
        shadow scored after the answer."""
        model, batch, request_id = inference.model, inference.batch, inference.request_id
        online = inference.online
        version = model.version if online is None else online.version
        ids = row_ids(request_id, batch.rows)
        # compact rows: the outbox builds the events off the request's path
        rows = prediction_rows(
            model.name,
            version,
            ids,
            batch,
            predictions,
            latency_ms,
            None if online is None else ONLINE,
        )
        shadowed = self.repository.shadows.scored
        if online is not None:  # the champion is scored on what the online model answered
            shadowed = ((CHAMPION, model), *shadowed)
        if inference.log is not None:  # the transport logs them with its answer
            inference.log.append(ShadowRequest(rows, batch, shadowed))
        elif shadowed and self.scorer is not None:
            self.scorer.submit(rows, batch, shadowed)
        else:
            self.publish(EventType.PREDICTION, rows, prediction_event)
        if inference.outputs is RECORDS:
            return records_response(model.name, version, request_id, ids, predictions)
        wanted = inference.outputs
        assert not isinstance(wanted, str)  # RECORDS answered above
        return infer_response(model.name, version, request_id, ids, predictions, wanted)


RECORDS = "records"  # Inference.outputs of a plain-records request


@dataclass(slots=True)
class Inference:
    """A checked request on its way through the model.

    Parameters:
        model: the champion's version that serves it, or checks it and is scored in shadow
            while the online model answers (taken once: it finishes on this one).
        batch: its checked features.
        request_id: the caller's or a new one.
        outputs: the OIP outputs asked for (None: all), or :data:`RECORDS` for plain records.
        online: the online model's snapshot that answers it (None: the champion answers).
        log: where its prediction rows go, with the models to score in shadow, for a
            transport that logs them with its answer (Kafka: in one transaction); None: to
            the scorer or the outbox.
    """

    model: ServedModel
    batch: FeatureBatch
    request_id: str
    outputs: set[str] | str | None
    online: OnlineModel | None = None
    log: list[ShadowRequest] | None = None
