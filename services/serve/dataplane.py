"""serve's handlers, whatever the transport: inference, model metadata, health.

Every transport calls these: the REST adapter (:mod:`services.serve.http`) today, a Kafka
consumer of inference requests next. An inference is two calls: ``begin_*`` checks the body
against the serving version's card and takes that version once, so a request finishes on the
version that started it even if a swap happens meanwhile; :meth:`DataPlane.infer` calls the
model, logs the predictions and returns the answer, which names that version. Errors are
:mod:`driftloop.errors` classes; the transport maps them to its protocol's (for HTTP,
:func:`driftloop.http.error_answer`).

Example:
    >>> plane = DataPlane("driftloop-model", repository, outbox.put)  # doctest: +SKIP
    >>> inference = plane.begin_records({"age": 41, "income": 52000.0})  # doctest: +SKIP
    >>> (await plane.infer(inference))["model_version"]  # doctest: +SKIP
    '3'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from driftloop.errors import ModelNotFound, ModelNotReady
from driftloop.events import EventType
from services.serve.protocol import (
    OUTPUTS,
    FeatureBatch,
    Predictions,
    decode_infer,
    decode_records,
    infer_response,
    model_metadata,
    new_request_id,
    prediction_event,
    prediction_rows,
    records_response,
    requested_outputs,
    row_ids,
)
from services.serve.repository import ModelRepository, ServedModel


def _version() -> str:
    try:
        return version("driftloop")
    except PackageNotFoundError:
        return "0"


class DataPlane:
    """The inference handlers over one :class:`ModelRepository`.

    Parameters:
        name: the model this server serves.
        repository: holds the serving version.
        publish: takes prediction rows and what builds their events (must not block: the
            outbox's ``put``).
    """

    def __init__(
        self,
        name: str,
        repository: ModelRepository,
        publish: Callable[..., Any],
    ) -> None:
        self.name = name
        self.repository = repository
        self.publish = publish
        self.server_version = _version()

    # --- health and metadata -----------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.ready

    def metadata(self) -> dict[str, Any]:
        return {"name": "driftloop-serve", "version": self.server_version, "extensions": []}

    def model(self, name: str, model_version: str | None = None) -> ServedModel:
        """The serving model, if it is the one asked for; raises 404 or 503 otherwise."""
        if name != self.name:
            raise ModelNotFound(
                f"model {name!r} is not served here; this server serves {self.name!r}"
            )
        current = self.repository.current
        if current is None:
            raise ModelNotReady(self.repository.problem or "no model is loaded yet")
        if model_version is not None and model_version != current.version:
            raise ModelNotFound(
                f"version {model_version} of {name!r} is not served here; this replica "
                f"serves version {current.version}"
            )
        return current

    def model_metadata(self, name: str, model_version: str | None = None) -> dict[str, Any]:
        model = self.model(name, model_version)
        return model_metadata(model.name, model.version, model.card)

    def model_ready(self, name: str, model_version: str | None = None) -> dict[str, Any]:
        model = self.model(name, model_version)
        return {"name": model.name, "version": model.version, "ready": True}

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
        return Inference(model, batch, request_id, None if len(wanted) == len(OUTPUTS) else wanted)

    def begin_records(self, document: Any, request_id: str | None = None) -> Inference:
        """Check plain records; raises 503 or 422 (see errors)."""
        model = self.model(self.name)
        batch, body_id = decode_records(document, model.card)
        return Inference(model, batch, body_id or request_id or new_request_id(), RECORDS)

    async def infer(self, inference: Inference) -> dict[str, Any]:
        """Call the model on a checked request, log its predictions, and answer it.

        A model fast enough to call inline is called right here, so that such a request is
        one coroutine; the others wait for their micro-batch. Whatever the model raises is
        raised (a server error: the request was checked).
        """
        model = inference.model
        called = time.perf_counter()
        if model.inline:
            outputs = model.call(inference.batch)
        else:
            outputs = await model.predict(inference.batch)
        return self.complete(inference, outputs, (time.perf_counter() - called) * 1e3)

    def complete(
        self, inference: Inference, outputs: np.ndarray, latency_ms: float
    ) -> dict[str, Any]:
        """The answer to ``inference`` given the model's ``outputs``; logs the predictions."""
        model, batch, request_id = inference.model, inference.batch, inference.request_id
        predictions = Predictions.decode(model.card, outputs)
        ids = row_ids(request_id, batch.rows)
        self.publish(  # compact rows: the outbox builds the events off the request's path
            EventType.PREDICTION,
            prediction_rows(model.name, model.version, ids, batch, predictions, latency_ms),
            prediction_event,
        )
        if inference.outputs is RECORDS:
            return records_response(model.name, model.version, request_id, ids, predictions)
        wanted = inference.outputs
        assert not isinstance(wanted, str)  # RECORDS answered above
        return infer_response(model.name, model.version, request_id, ids, predictions, wanted)


RECORDS = "records"  # Inference.outputs of a plain-records request


@dataclass(slots=True)
class Inference:
    """A checked request on its way through the model.

    Parameters:
        model: the version that serves it (taken once: it finishes on this one).
        batch: its checked features.
        request_id: the caller's or a new one.
        outputs: the OIP outputs asked for (None: all), or :data:`RECORDS` for plain records.
    """

    model: ServedModel
    batch: FeatureBatch
    request_id: str
    outputs: set[str] | str | None
