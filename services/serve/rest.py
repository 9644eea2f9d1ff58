"""serve's HTTP adapter: the Open Inference Protocol v2 REST paths and a plain records endpoint.

    GET  /v2/health/live, /v2/health/ready, /v2
    GET  /v2/models/{name}[/versions/{version}], .../ready
    POST /v2/models/{name}[/versions/{version}]/infer     OIP v2 inference
    POST /v1/predict                                     one record or a list of records
    POST /v2/repository/models/{name}/load               admin: re-resolve the alias and swap
    GET  /metrics

A lean Starlette app (no validation layer of its own: :mod:`services.serve.protocol` checks
bodies against the model card) with orjson, behind :class:`InferenceFront`: a bare ASGI
callable that answers the inference POSTs itself (Starlette's middleware, routing, request and
response objects cost about as much as the rest of a request) and hands everything else
(metadata, health, admin, metrics, lifespan, odd paths and methods) to the Starlette app.
Errors are answered as every service answers them (:func:`driftloop.http.error_answer`: the
error's status, the protocol's error body ``{"error": "..."}``): 400 not JSON, 401 bad admin
token, 404 unknown model or version (or admin off), 413 body too large, 422 input that does
not fit the model (the body names the field), 500 the model failed, 503 no model loaded yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from driftloop.errors import (
    DriftloopError,
    MalformedRequest,
    ModelCallFailed,
    ModelNotFound,
    ModelNotReady,
    Unauthorized,
)
from driftloop.http import answer_error, error_answer, read_body, read_request
from driftloop.metrics import metrics_app
from services.serve.dataplane import DataPlane, Inference
from services.serve.loop_metrics import LoopCounter, LoopHistogram
from services.serve.settings import ServeSettings

# Updated on every request: lock-free (see loop_metrics), exposed as usual.
REQUESTS = LoopCounter(
    "driftloop_serve_requests_total",
    "Inference requests answered, by endpoint, model version and HTTP status.",
    ["endpoint", "model_version", "status"],
)
LATENCY = LoopHistogram(
    "driftloop_serve_request_seconds",
    "Inference request latency (body read to answer), by model version and HTTP status.",
    ["model_version", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REQUEST_ID_HEADER = "x-request-id"
NO_VERSION = "none"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        # NaN and Infinity are not JSON, but some clients send them: parse them so the
        # answer can name the field (422) instead of rejecting the whole body.
        try:
            document = json.loads(body, parse_int=_wire_int)
        except ValueError:
            raise MalformedRequest(f"the body is not JSON: {error}") from None
        try:
            # What orjson refused for another reason (a lone surrogate) could not be logged
            # either: its prediction event would never leave the outbox.
            orjson.dumps(document)
        except orjson.JSONEncodeError as unwritable:
            raise MalformedRequest(f"the body is not JSON: {unwritable}") from None
        return document


def _wire_int(text: str) -> int | float:
    """An integer as orjson parses it: past 64 bits, a float (an event carries no wider)."""
    value = int(text)
    return value if -(1 << 63) <= value < 1 << 64 else float(text)


JSON_HEADERS = [(b"content-type", b"application/json")]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class InferenceFront:
    """The inference POSTs on bare ASGI; everything else goes to ``app``.

    Answers exactly what the app's inference routes answer (same handlers, same errors,
    same metrics); a path or method it does not recognise is the app's to answer.

    Parameters:
        app: the full Starlette app.
        v1: answers ``POST /v1/predict``: (path params, caller's request id, body) -> response.
        v2: answers ``POST /v2/models/{name}[/versions/{version}]/infer``, the same way.
        limit: the largest body accepted (413 past it).
    """

    def __init__(self, app: Starlette, v1: Any, v2: Any, limit: int) -> None:
        self.app = app
        self.v1 = v1
        self.v2 = v2
        self.limit = limit
        self._last_client: Any = None

    def _route(self, path: str) -> tuple[Any, dict[str, str]] | None:
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
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self._route(scope["path"])
        if route is None:
            await self.app(scope, receive, send)
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
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*JSON_HEADERS, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(
    settings: ServeSettings,
    plane: DataPlane,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> InferenceFront:
    """The HTTP app over ``plane``; ``lifespan`` starts and stops what runs beside it."""
    limit = settings.serve_max_body_bytes
    token = settings.serve_admin_token.encode()

    def inference(
        endpoint: str, begin: Callable[[dict[str, str], str | None, Any], Inference]
    ) -> Callable[..., Awaitable[tuple[int, bytes]]]:
        """An inference endpoint: (path params, caller's id, body reader) -> status, body.

        ``begin`` checks the body (see :class:`~services.serve.dataplane.DataPlane`); a model
        called inline is called right here, so such a request is this one coroutine.
        """

        async def answer(
            params: dict[str, str], caller: str | None, body: Callable[[], Awaitable[bytes]]
        ) -> tuple[int, bytes]:
            start = time.perf_counter()
            version = NO_VERSION
            try:
                inference = begin(params, caller, _parse(await body()))
                model = inference.model
                called = time.perf_counter()
                if model.inline:
                    outputs = model.call(inference.batch)
                else:
                    outputs = await model.predict(inference.batch)
                latency_ms = (time.perf_counter() - called) * 1e3
                result = plane.complete(inference, outputs, latency_ms)
                version, status = model.version, 200
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

    def routed(
        answer: Callable[..., Awaitable[tuple[int, bytes]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """The same endpoint as a Starlette route (for what the front hands on)."""

        async def endpoint(request: Request) -> Response:
            async def body() -> bytes:
                return await read_request(request, limit)

            caller = request.headers.get(REQUEST_ID_HEADER)
            status, content = await answer(request.path_params, caller, body)
            return Response(content, status, media_type="application/json")

        return endpoint

    def infer(params: dict[str, str], caller: str | None, document: Any) -> Inference:
        return plane.begin_infer(params["name"], document, params.get("version"), caller)

    def predict(params: dict[str, str], caller: str | None, document: Any) -> Inference:
        return plane.begin_records(document, caller)

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        """``handler`` as a route answering JSON; the app answers the errors it raises."""

        async def answer(request: Request) -> Response:
            result = handler(request)
            if hasattr(result, "__await__"):
                result = await result
            return result if isinstance(result, Response) else JSONResponse(result)

        return answer

    def live(request: Request) -> dict[str, Any]:
        return {"live": plane.live()}

    def ready(request: Request) -> Response:
        if plane.ready():
            return JSONResponse({"ready": True})
        problem = plane.repository.problem or "no model is loaded"
        return JSONResponse({"ready": False, "error": problem}, ModelNotReady.http_status)

    def server(request: Request) -> dict[str, Any]:
        return plane.metadata()

    def model(request: Request) -> dict[str, Any]:
        return plane.model_metadata(request.path_params["name"], request.path_params.get("version"))

    def model_ready(request: Request) -> dict[str, Any]:
        return plane.model_ready(request.path_params["name"], request.path_params.get("version"))

    async def load(request: Request) -> dict[str, Any]:
        if not token:
            raise ModelNotFound("the admin endpoints are off (no SERVE_ADMIN_TOKEN configured)")
        given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token):
            raise Unauthorized("the admin endpoints need `Authorization: Bearer <token>`")
        name = request.path_params["name"]
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

    v1, v2 = inference("v1", predict), inference("v2", infer)
    routes = [  # matched in order: inference first
        Route("/v1/predict", routed(v1), methods=["POST"]),
        Route("/v2/models/{name}/infer", routed(v2), methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", routed(v2), methods=["POST"]),
        Route("/v2/health/live", guarded(live)),
        Route("/v2/health/ready", guarded(ready)),
        Route("/v2", guarded(server)),
        Route("/v2/models/{name}", guarded(model)),
        Route("/v2/models/{name}/ready", guarded(model_ready)),
        Route("/v2/models/{name}/versions/{version}", guarded(model)),
        Route("/v2/models/{name}/versions/{version}/ready", guarded(model_ready)),
        Route("/v2/repository/models/{name}/load", guarded(load), methods=["POST"]),
        Mount("/metrics", metrics_app()),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={DriftloopError: answer_error}
    )
    return InferenceFront(app, v1, v2, limit)
