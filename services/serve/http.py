"""serve's HTTP adapter: the Open Inference Protocol v2 REST paths and a plain records endpoint.

    POST /v2/models/{name}[/versions/{version}]/infer     OIP v2 inference
    POST /v1/predict                                     one record or a list of records
    GET  /v2, /v2/models/{name}[/versions/{version}][/ready]
    GET  /v2/health/live, /v2/health/ready               the protocol's health paths
    GET  /health/live, /health/ready, /metrics           what every service answers
    POST /v2/repository/models/{name}/load               admin: re-resolve the alias and swap

Every path calls the :class:`~driftloop.services.serve.dataplane.DataPlane`; this module only reads
bodies, routes, and writes answers. The inference POSTs are routed by :class:`InferenceFront`,
a bare ASGI callable (no validation layer of its own: :mod:`driftloop.services.serve.protocol`
checks bodies against the model card; Starlette's routing, request and response objects would cost
about as much as the rest of a request); it hands everything else to the service's app
(:func:`driftloop.asgi.service_app`). Errors are answered as every service answers them
(:func:`driftloop.http.error_answer`: the error's status, the protocol's error body
``{"error": "..."}``): 400 not JSON, 401 bad admin token, 404 unknown model or version (or
admin off), 405 an inference path with a method other than POST, 413 body too large, 422 input
that does not fit the model (the body names the field), 500 the model failed, 503 no model
loaded yet.

The API is described at ``/openapi.json`` (OpenAPI 3.1), ``/docs`` and ``/redoc``; the inference
POSTs, which no FastAPI route answers, by :mod:`driftloop.services.serve.openapi`.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from driftloop.asgi import ServiceRunner, service_app
from driftloop.errors import (
    DriftloopError,
    MethodNotAllowed,
    ModelCallFailed,
    ModelNotFound,
    ModelNotReady,
    Unauthorized,
)
from driftloop.http import error_answer, parse_json, read_body
from driftloop.openapi import api_document
from driftloop.services.serve.dataplane import DataPlane, Inference
from driftloop.services.serve.loop_metrics import LoopCounter, LoopHistogram
from driftloop.services.serve.openapi import describe
from driftloop.services.serve.protocol import ONLINE
from driftloop.services.serve.settings import ServeSettings

# Updated on every request: lock-free (see loop_metrics), exposed as usual.
REQUESTS = LoopCounter(
    "driftloop_serve_requests_total",
    "Inference requests answered, by endpoint, model version (`online` for the online model's "
    "snapshots, a new version every few seconds) and HTTP status.",
    ["endpoint", "model_version", "status"],
)
LATENCY = LoopHistogram(
    "driftloop_serve_request_seconds",
    "Inference request latency (body read to answer), by model version (`online` for the "
    "online model) and HTTP status.",
    ["model_version", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
NO_VERSION = "none"
JSON_HEADERS = [(b"content-type", b"application/json")]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
# An inference endpoint: (path params, caller's request id, body reader) -> status, body.
Endpoint = Callable[
    [dict[str, str], str | None, Callable[[], Awaitable[bytes]]], Awaitable[tuple[int, bytes]]
]


class InferenceFront:
    """Routes the inference POSTs on bare ASGI; everything else goes to ``app``.

    Parameters:
        app: the service's app (metadata, health, admin, metrics, lifespan).
        v1: answers ``POST /v1/predict``.
        v2: answers ``POST /v2/models/{name}[/versions/{version}]/infer``.
        limit: the largest body accepted (413 past it).
    """

    def __init__(self, app: FastAPI, v1: Endpoint, v2: Endpoint, limit: int) -> None:
        self.app = app
        self.v1 = v1
        self.v2 = v2
        self.limit = limit
        self._last_client: Any = None

    def route(self, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """The endpoint for ``path`` and its path parameters, if it is an inference path."""
        if path == "/v1/predict":
            return self.v1, {}
        if path.startswith("/v2/models/") and path.endswith("/infer"):
            parts = path.split("/")  # "", "v2", "models", name, [versions, version,] infer
            if len(parts) == 5 and parts[3]:
                return self.v2, {"name": parts[3]}
            if len(parts) == 7 and parts[4] == "versions" and parts[3] and parts[5]:
                return self.v2, {"name": parts[3], "version": parts[5]}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            status, body = error_answer(MethodNotAllowed("inference takes POST"))
            await _answer(send, status, body, [(b"allow", b"POST")])
            return
        handle, params = route
        declared = caller = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == b"x-request-id":
                caller = value.decode("latin-1")
        try:
            status, body = await handle(
                params, caller, lambda: read_body(receive, declared, self.limit)
            )
        except ClientDisconnect:  # the client went away before its body arrived
            return
        client = scope.get("client")
        if client != self._last_client:
            # Requests from several connections: answer after one turn of the loop, so that
            # those that came in with this one are handled first and the answers go out back
            # to back. A client woken by the first answer then finds the others waiting,
            # instead of being woken (and sending the next request) once per answer: on two
            # cores, about a fifth more requests a second at concurrency 8. One connection has
            # nothing to group with, and the turn would only add to its latency.
            self._last_client = client
            await asyncio.sleep(0)
        await _answer(send, status, body)


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [*JSON_HEADERS, (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def create_app(
    settings: ServeSettings, plane: DataPlane, runner: ServiceRunner | None = None
) -> InferenceFront:
    """The HTTP app over ``plane``; ``runner`` runs what runs beside it."""
    token = settings.serve_admin_token.encode()

    def inference(
        endpoint: str, begin: Callable[[dict[str, str], str | None, Any], Inference]
    ) -> Endpoint:
        """An inference endpoint: ``begin`` checks the body, the plane answers it."""

        async def answer(
            params: dict[str, str], caller: str | None, body: Callable[[], Awaitable[bytes]]
        ) -> tuple[int, bytes]:
            start = time.perf_counter()
            version = NO_VERSION
            try:
                inference = begin(params, caller, parse_json(await body(), non_finite=True))
                result = await plane.infer(inference)
                # the online model's versions as one label: a label per snapshot would grow
                # the metric's series without bound
                version = inference.model.version if inference.online is None else ONLINE
                status = 200
                content = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
            except DriftloopError as error:
                status, content = error_answer(error)
            except ClientDisconnect:
                raise
            except Exception as error:  # the model itself failed: a server error, said plainly
                status, content = error_answer(ModelCallFailed(f"the model failed: {error}"))
            code = str(status)
            REQUESTS.inc((endpoint, version, code))
            LATENCY.observe(time.perf_counter() - start, (version, code))
            return status, content

        return answer

    def v2(params: dict[str, str], caller: str | None, document: Any) -> Inference:
        return plane.begin_infer(params["name"], document, params.get("version"), caller)

    def v1(params: dict[str, str], caller: str | None, document: Any) -> Inference:
        return plane.begin_records(document, caller)

    def model_ready() -> bool:
        return plane.ready() and (runner is None or runner.ready())

    app = service_app("serve", "no model is loaded, or serve's background work stopped", runner)
    app.state.ready = model_ready
    describe(api_document(app))  # the inference POSTs are no routes of the app

    @app.get("/v2/health/live")
    async def live() -> dict[str, Any]:
        return {"live": plane.live()}

    @app.get("/v2/health/ready")
    async def ready() -> JSONResponse:
        if model_ready():
            return JSONResponse({"ready": True})
        problem = plane.repository.problem or "no model is loaded"
        return JSONResponse({"ready": False, "error": problem}, ModelNotReady.http_status)

    @app.get("/v2")
    async def server() -> dict[str, Any]:
        return plane.metadata()

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model(name: str, version: str | None = None) -> dict[str, Any]:
        return plane.model_metadata(name, version)

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_is_ready(name: str, version: str | None = None) -> dict[str, Any]:
        return plane.model_ready(name, version)

    @app.post("/v2/repository/models/{name}/load")
    async def load(name: str, request: Request) -> dict[str, Any]:
        if not token:
            raise ModelNotFound("the admin endpoints are off (no SERVE_ADMIN_TOKEN configured)")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token):
            raise Unauthorized("the admin endpoints need `Authorization: Bearer <token>`")
        if name != plane.name:
            raise ModelNotFound(f"model {name!r} is not served here")
        outcome = await plane.repository.refresh(force=True)
        return {
            "name": name,
            "outcome": outcome.outcome,
            "model_version": outcome.version,
            "previous_version": outcome.previous,
            **({"error": outcome.error} if outcome.error else {}),
        }

    return InferenceFront(
        app, inference("v1", v1), inference("v2", v2), settings.serve_max_body_bytes
    )
