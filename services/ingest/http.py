"""ingest's HTTP intake, for apps that do not speak Kafka.

    POST /v1/labels        one label, a list of labels, or {"labels": [...]}
    POST /v1/predictions   the same for predictions made outside serve
    GET  /health/live, /health/ready, /metrics

A request is answered 202 only once every event in it is on Kafka (``acks=all``); a batch is
all or nothing. ``schema_version``, ``event_id`` and ``event_time`` are filled in when absent.
A prediction is checked against its model's contract too, when the model has one (a label
names no model: it is checked when it meets its prediction, and dead-lettered if it breaks
the contract).
Errors, in the body every service answers (:func:`driftloop.http.error_answer`): 400 (not
JSON), 413 (body too large), 422 (names the event's index, field and rule), 503 (Kafka did not
take them all in time: the caller retries; a label that did get through the first time then
counts as a duplicate and changes nothing).

The bodies are described in the OpenAPI document (``/openapi.json``, ``/docs``) by the events'
JSON Schemas (``Label``, ``Prediction``: the envelope may be left out).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from driftloop.asgi import ServiceRunner, service_app
from driftloop.async_messaging import AsyncEventProducer
from driftloop.errors import BrokerUnavailable, InvalidInput, SchemaViolation
from driftloop.events import EventType, ahead_of_clock, new_event
from driftloop.http import error_response, parse_json, read_request
from driftloop.openapi import (
    api_document,
    error_responses,
    json_answer,
    json_body,
    one_or_many,
    ref,
    sent_event,
)
from driftloop.schemas import EventSchemas
from driftloop.services.ingest.guard import ContractGuard
from driftloop.services.ingest.settings import IngestSettings

ACK_TIMEOUT_S = 15.0

# What the intake answers, as the OpenAPI document describes it.
ACCEPTED = json_answer(
    {
        "type": "object",
        "required": ["accepted", "event_ids"],
        "properties": {
            "accepted": {"type": "integer"},
            "event_ids": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Every event of the body is on Kafka; their ids, in the body's order.",
)
INTAKE_ERRORS = error_responses(
    {
        400: "The body is not JSON.",
        413: "The body is over `INGEST_MAX_BODY_BYTES`.",
        422: "An event does not fit its schema (or its model's contract): `index`, `field` and "
        "`rule` say which and why. Nothing of the body was taken.",
        503: "Kafka did not take the events in time: retry them.",
    }
)


def intake_doc(schema_name: str, plural: str) -> dict[str, Any]:
    """A route's ``openapi_extra``: its body, one event or a batch of ``schema_name``."""
    return json_body(
        one_or_many(ref(schema_name), plural),
        f'One event, a list of them, or `{{"{plural}": [...]}}`: all taken, or none. '
        "`schema_version`, `event_id` and `event_time` are filled in when absent.",
    )


def create_app(
    settings: IngestSettings,
    producer: AsyncEventProducer,
    runner: ServiceRunner | None = None,
    guard: ContractGuard | None = None,
) -> FastAPI:
    """The intake app; ``runner`` runs what runs beside it (the worker), whose ``guard`` holds
    the contracts in force."""
    app = service_app("ingest", "the consumer is not running", runner)
    schemas = EventSchemas(settings.schemas_dir)
    api_document(app).add(
        schemas=lambda: {
            "Label": sent_event(schemas.schema(EventType.LABEL)),
            "Prediction": sent_event(schemas.schema(EventType.PREDICTION)),
        }
    )

    async def intake(request: Request, event_type: EventType, plural: str) -> Response:
        document = parse_json(await read_request(request, settings.ingest_max_body_bytes))
        if isinstance(document, dict) and plural in document:
            document = document[plural]
        items = document if isinstance(document, list) else [document]
        if not items:
            raise InvalidInput("$", f"no {plural} in the body")
        events = []
        # What the worker would dead-letter (an event timed far ahead) is refused here.
        allowed_ahead = settings.max_event_ahead_s
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                where = f"{plural}[{index}]"
                return error_response(InvalidInput("$", f"{where} is not a JSON object"), index)
            event = new_event(**item)
            try:
                producer.schemas.validate(event_type, event)
                ahead = ahead_of_clock(event["event_time"], time.time(), allowed_ahead)
                if ahead is not None:
                    raise ahead
                if guard is not None and event_type is EventType.PREDICTION:
                    broken = guard.prediction(event)
                    if broken is not None:
                        raise broken
            except SchemaViolation as violation:
                message = f"{plural}[{index}]: {violation.message}"
                return error_response(
                    SchemaViolation(violation.field, violation.rule, message), index
                )
            events.append(event)
        try:
            futures = [await producer.send(event_type, event) for event in events]
            await asyncio.wait_for(asyncio.gather(*futures), ACK_TIMEOUT_S)
        except (KafkaError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            raise BrokerUnavailable(
                f"Kafka did not take the {plural}; retry them: {reason}"
            ) from error
        ids = [event["event_id"] for event in events]
        return JSONResponse({"accepted": len(events), "event_ids": ids}, status_code=202)

    @app.post(
        "/v1/labels",
        status_code=202,
        openapi_extra=intake_doc("Label", "labels"),
        responses={202: ACCEPTED, **INTAKE_ERRORS},
    )
    async def labels(request: Request) -> Response:
        return await intake(request, EventType.LABEL, "labels")

    @app.post(
        "/v1/predictions",
        status_code=202,
        openapi_extra=intake_doc("Prediction", "predictions"),
        responses={202: ACCEPTED, **INTAKE_ERRORS},
    )
    async def predictions(request: Request) -> Response:
        return await intake(request, EventType.PREDICTION, "predictions")

    return app
