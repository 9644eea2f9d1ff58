"""serve's handlers, whatever the transport: inference, model metadata, health.

The REST adapter (:mod:`services.serve.rest`) calls these; a Kafka inference-requests consumer
could call the same. Each handler takes the serving model's reference once, so a request
finishes on the version that started it even if a swap happens meanwhile, and every answer
names that version. Errors are :mod:`driftloop.errors` classes; the adapter maps them to its
protocol's status codes.

Example:
    >>> plane = DataPlane("driftloop-model", repository, outbox.put)  # doctest: +SKIP
    >>> response, model = await plane.infer("driftloop-model", {"inputs": [...]})  # doctest: +SKIP
    >>> response["model_version"]  # doctest: +SKIP
    '3'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from driftloop.errors import ModelNotFound, ModelNotReady
from driftloop.events import EventType
from services.serve.protocol import (
    OUTPUTS,
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

    async def infer(
        self,
        name: str,
        document: Any,
        model_version: str | None = None,
        request_id: str | None = None,
    ) -> tuple[dict[str, Any], ServedModel]:
        """An OIP v2 inference; returns the response and the model that served it."""
        model = self.model(name, model_version)
        batch, body_id = decode_infer(document, model.card)
        wanted = requested_outputs(document, OUTPUTS)
        request_id = body_id or request_id or new_request_id()
        predictions, ids = await self._predict(model, batch, request_id)
        outputs = None if len(wanted) == len(OUTPUTS) else wanted
        return infer_response(
            model.name, model.version, request_id, ids, predictions, outputs
        ), model

    async def predict_records(
        self, document: Any, request_id: str | None = None
    ) -> tuple[dict[str, Any], ServedModel]:
        """Plain records in, one prediction per record out."""
        model = self.model(self.name)
        batch, body_id = decode_records(document, model.card)
        request_id = body_id or request_id or new_request_id()
        predictions, ids = await self._predict(model, batch, request_id)
        return records_response(model.name, model.version, request_id, ids, predictions), model

    async def _predict(
        self, model: ServedModel, batch: Any, request_id: str
    ) -> tuple[Predictions, list[str]]:
        start = time.perf_counter()
        outputs = await model.predict(batch)
        latency_ms = (time.perf_counter() - start) * 1e3
        predictions = Predictions.decode(model.card, outputs)
        ids = row_ids(request_id, batch.rows)
        self.publish(  # compact rows: the outbox builds the events off the request's path
            EventType.PREDICTION,
            prediction_rows(model.name, model.version, ids, batch, predictions, latency_ms),
            prediction_event,
        )
        return predictions, ids
