"""monitor's HTTP side: what it concluded, for people and for scripts.

GET /                  recent windows: bounds, model version, verdict, top features, report
GET /v1/windows        the same as JSON (newest first)
GET /reports/{name}    a window's Evidently report (``<window_id>.html`` or ``.json``)
POST /v1/triggers      a manual trigger: {"model_name"?: str, "evidence"?: {...}}; 202 with
                       its trigger id once it is on the triggers topic (a person decided: it
                       goes out even while the model's triggers are held for data quality)
GET /health/live, /health/ready, /metrics

Errors, in the body every service answers (:func:`driftloop.http.error_answer`): 400 (not
JSON), 404 (no such report), 422 (a field of the wrong type, named), 503 (Kafka did not take
the trigger in time: the caller retries).

The manual trigger's body is described in the OpenAPI document (``/openapi.json``, ``/docs``)
by the trigger event's JSON Schema (its ``model_name`` and ``evidence``).
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from driftloop.asgi import ServiceRunner, service_app
from driftloop.errors import BrokerUnavailable, InvalidInput, NotFound
from driftloop.events import EventType
from driftloop.http import parse_json
from driftloop.openapi import api_document, error_responses, json_answer, json_body, ref
from driftloop.schemas import EventSchemas
from driftloop.services.monitor.report import WindowReports

ACK_TIMEOUT_S = 15.0

# The body of a manual trigger, from the trigger event's schema: the fields a person gives.
MANUAL_FIELDS = ("model_name", "evidence")
TRIGGER_DOC = json_body(
    ref("ManualTrigger"),
    "The model to refit (the configured one when left out) and why; an empty body will do.",
    required=False,
)
TRIGGER_ANSWERS = {
    202: json_answer(
        {
            "type": "object",
            "required": ["trigger_id"],
            "properties": {"trigger_id": {"type": "string"}},
        },
        "The trigger is on the triggers topic.",
    ),
    **error_responses(
        {
            400: "The body is not JSON.",
            422: "A field of the wrong type: `field` names it.",
            503: "Kafka did not take the trigger in time: retry it.",
        }
    ),
}


def manual_trigger_schema(trigger: dict[str, Any]) -> dict[str, Any]:
    """The manual trigger's body: the trigger event's ``model_name`` and ``evidence``."""
    return {
        "title": "Manual trigger",
        "description": "A person's request to refit a model.",
        "type": "object",
        "properties": {name: trigger["properties"][name] for name in MANUAL_FIELDS},
    }


def create_app(
    windows: Callable[[], list[dict[str, Any]]],
    reports: WindowReports,
    manual: Callable[[str | None, dict[str, Any]], Awaitable[str]],
    runner: ServiceRunner | None = None,
) -> FastAPI:
    """The monitor's app.

    Parameters:
        windows: lists recent windows, newest first.
        reports: where the window reports are.
        manual: sends a manual trigger for a model (None: the configured one) with evidence;
            returns its trigger id.
        runner: runs what runs beside the app (the worker).
    """
    app = service_app("monitor", "the consumer is not running", runner)
    schemas = EventSchemas()
    api_document(app).add(
        schemas=lambda: {"ManualTrigger": manual_trigger_schema(schemas.schema(EventType.TRIGGER))}
    )

    @app.get("/v1/windows")
    async def recent() -> dict[str, Any]:
        return {"windows": windows()}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return render(windows())

    @app.get("/reports/{name}", responses=error_responses({404: "No report of that name."}))
    async def report(name: str) -> Response:
        try:
            body = reports.read(name)
        except KeyError:
            raise NotFound(f"no report named {name}") from None
        kind = "text/html" if name.endswith(".html") else "application/json"
        return Response(body, media_type=kind)

    @app.post("/v1/triggers", status_code=202, openapi_extra=TRIGGER_DOC, responses=TRIGGER_ANSWERS)
    async def trigger(request: Request) -> Response:
        document = parse_json(await request.body() or b"{}")
        if not isinstance(document, dict):
            raise InvalidInput("$", "the body must be a JSON object")
        name, evidence = document.get("model_name"), document.get("evidence", {})
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidInput("model_name", "model_name must be a non-empty string")
        if not isinstance(evidence, dict):
            raise InvalidInput("evidence", "evidence must be a JSON object")
        try:
            trigger_id = await asyncio.wait_for(manual(name, evidence), ACK_TIMEOUT_S)
        except (KafkaError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            raise BrokerUnavailable(
                f"Kafka did not take the trigger; retry it: {reason}"
            ) from error
        return JSONResponse({"trigger_id": trigger_id}, status_code=202)

    return app


def render(windows: list[dict[str, Any]]) -> str:
    """The HTML page: one table row per window."""
    rows = []
    for window in windows:
        bounds = window["window"]
        if window["verdict"] == "no_verdict":
            detail = f"no verdict: {window['reason']}"
        else:
            detail = ", ".join(
                f"{f['feature']} {f['statistic']}={f['score']:.3g} p={f['p_value']:.2g}"
                + (" (drift)" if f["drifted"] else "")
                for f in window["top_features"]
            )
        link = f'<a href="{html.escape(window["report"])}">report</a>' if window["report"] else ""
        cells = [
            f"{bounds['start']} .. {bounds['end']} ({bounds['kind']}, {bounds['size']})",
            f"{window['model_name']} v{window['model_version']}",
            f"{window['verdict']} ({window['severity']})"
            if window["verdict"] == "drift"
            else window["verdict"],
            detail,
        ]
        row = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + f"<td>{link}</td>"
        rows.append(f'<tr class="{window["verdict"]}">{row}</tr>')
    body = "\n".join(rows) or '<tr><td colspan="5">no window has closed yet</td></tr>'
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>driftloop monitor</title>
<style>body{{font-family:sans-serif}} td,th{{padding:2px 8px;text-align:left}}
tr.drift{{background:#fdd}} tr.no_verdict{{color:#888}}</style></head>
<body><h1>driftloop monitor: recent windows</h1>
<p>JSON: <a href="/v1/windows">/v1/windows</a> &middot; <a href="/metrics">/metrics</a></p>
<table><tr><th>window</th><th>model</th><th>verdict</th><th>top features</th><th></th></tr>
{body}
</table></body></html>
"""
