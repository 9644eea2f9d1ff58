"""ingest's HTTP intake, for apps that do not speak Kafka.

    POST /v1/labels        one label, a list of labels, or {"labels": [...]}
    POST /v1/predictions   the same for predictions made outside serve
    GET  /health/live, /health/ready, /metrics

A request is answered 202 only once every event in it is on Kafka (``acks=all``); a batch is
all or nothing. ``schema_version``, ``event_id`` and ``event_time`` are filled in when absent.
Errors: 400 (not JSON), 413 (body too large), 422 (names the event's index, field and rule),
503 (Kafka did not take the events; nothing was accepted, so the caller can retry).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kafka.errors import KafkaError

from driftloop.errors import BrokerUnavailable, SchemaViolation
from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer
from driftloop.metrics import metrics_app
from services.ingest.settings import IngestSettings

ACK_TIMEOUT_S = 15.0


def create_app(settings: IngestSettings, producer: EventProducer) -> FastAPI:
    app = FastAPI(title="driftloop ingest", docs_url=None, redoc_url=None)
    app.mount("/metrics", metrics_app())

    async def intake(request: Request, event_type: EventType, plural: str) -> Response:
        declared = int(request.headers.get("content-length") or 0)
        limit = settings.ingest_max_body_bytes
        if declared > limit:
            return _error(413, f"body of {declared} bytes is over the {limit} allowed")
        body = await request.body()
        if len(body) > limit:
            return _error(413, f"body of {len(body)} bytes is over the {limit} allowed")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as error:
            return _error(400, f"body is not JSON: {error}")
        if isinstance(document, dict) and plural in document:
            document = document[plural]
        items = document if isinstance(document, list) else [document]
        if not items:
            return _error(422, f"no {plural} in the body")
        events = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                return _error(422, f"{plural}[{index}] is not a JSON object", index=index)
            event = new_event(**item)
            try:
                producer.schemas.validate(event_type, event)
            except SchemaViolation as violation:
                return _error(422, f"{plural}[{index}]: {violation}", index=index,
                              field=violation.field, rule=violation.rule)  # fmt: skip
            events.append(event)
        try:
            futures = [producer.send(event_type, event) for event in events]
            for future in futures:
                future.get(timeout=ACK_TIMEOUT_S)
        except (KafkaError, BrokerUnavailable) as error:
            return _error(503, f"Kafka did not take the {plural}, none accepted: {error}")
        ids = [event["event_id"] for event in events]
        return JSONResponse({"accepted": len(events), "event_ids": ids}, status_code=202)

    @app.post("/v1/labels")
    async def labels(request: Request) -> Response:
        return await intake(request, EventType.LABEL, "labels")

    @app.post("/v1/predictions")
    async def predictions(request: Request) -> Response:
        return await intake(request, EventType.PREDICTION, "predictions")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready() -> Response:
        if app.state.ready():
            return JSONResponse({"status": "ready"})
        return _error(503, "the consumer is not running")

    app.state.ready = lambda: True
    return app


def _error(status: int, message: str, **detail: Any) -> JSONResponse:
    return JSONResponse({"error": message, **detail}, status_code=status)
