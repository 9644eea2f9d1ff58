"""serve's HTTP adapter: the Open Inference Protocol v2 REST paths and a plain records endpoint.

    GET  /v2/health/live, /v2/health/ready, /v2
    GET  /v2/models/{name}[/versions/{version}], .../ready
    POST /v2/models/{name}[/versions/{version}]/infer     OIP v2 inference
    POST /v1/predict                                     one record or a list of records
    POST /v2/repository/models/{name}/load               admin: re-resolve the alias and swap
    GET  /metrics

A lean Starlette app (no validation layer of its own: :mod:`services.serve.protocol` checks
bodies against the model card) with orjson. Errors are mapped to status codes in one place
(:func:`_answer`), with the protocol's error body ``{"error": "..."}``: 400 not JSON, 401 bad
admin token, 404 unknown model or version (or admin off), 413 body too large, 422 input that
does not fit the model (the body names the field), 503 no model loaded yet.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import Counter, Histogram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from driftloop.errors import (
    DriftloopError,
    InvalidInput,
    MalformedRequest,
    ModelNotFound,
    PayloadTooLarge,
    Unauthorized,
)
from driftloop.metrics import metrics_app
from services.serve.dataplane import DataPlane
from services.serve.repository import ServedModel
from services.serve.settings import ServeSettings

REQUESTS = Counter(
    "driftloop_serve_requests_total",
    "Inference requests answered, by endpoint, model version and HTTP status.",
    ["endpoint", "model_version", "status"],
)
LATENCY = Histogram(
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


def _error(error: DriftloopError) -> JSONResponse:
    body: dict[str, Any] = {"error": str(error)}
    if isinstance(error, InvalidInput):
        body["field"] = error.field
    return JSONResponse(body, status_code=error.http_status)


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        # NaN and Infinity are not JSON, but some clients send them: parse them so the
        # answer can name the field (422) instead of rejecting the whole body.
        try:
            return json.loads(body)
        except ValueError:
            raise MalformedRequest(f"the body is not JSON: {error}") from None


def create_app(
    settings: ServeSettings,
    plane: DataPlane,
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None,
) -> Starlette:
    """The HTTP app over ``plane``; ``lifespan`` starts and stops what runs beside it."""
    limit = settings.serve_max_body_bytes
    token = settings.serve_admin_token.encode()

    async def read(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                raise PayloadTooLarge(f"the body of {declared} bytes is over the {limit} allowed")
            return _parse(await request.body())  # the server stops at the declared length
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise PayloadTooLarge(f"the body is over the {limit} bytes allowed")
        return _parse(body)

    def inference(
        endpoint: str,
        handle: Callable[[Request, Any], Awaitable[tuple[dict[str, Any], ServedModel]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        requests = {}  # (version, status) -> counter child, so labels are looked up once

        async def answer(request: Request) -> Response:
            start = time.perf_counter()
            version = NO_VERSION
            try:
                body, model = await handle(request, await read(request))
                version, status = model.version, 200
                response: Response = JSONResponse(body)
            except DriftloopError as error:
                status = error.http_status
                response = _error(error)
            except Exception as error:  # the model itself failed: a server error, said plainly
                status = 500
                response = JSONResponse({"error": f"the model failed: {error}"}, 500)
            key = (version, status)
            metrics = requests.get(key)
            if metrics is None:
                metrics = requests[key] = (
                    REQUESTS.labels(endpoint, version, str(status)),
                    LATENCY.labels(version, str(status)),
                )
            metrics[0].inc()
            metrics[1].observe(time.perf_counter() - start)
            return response

        return answer

    def caller_id(request: Request) -> str | None:
        return request.headers.get(REQUEST_ID_HEADER)

    async def infer(request: Request, document: Any) -> tuple[dict[str, Any], ServedModel]:
        params = request.path_params
        return await plane.infer(
            params["name"], document, params.get("version"), caller_id(request)
        )

    async def predict(request: Request, document: Any) -> tuple[dict[str, Any], ServedModel]:
        return await plane.predict_records(document, caller_id(request))

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            try:
                result = handler(request)
                if hasattr(result, "__await__"):
                    result = await result
                return result if isinstance(result, Response) else JSONResponse(result)
            except DriftloopError as error:
                return _error(error)

        return answer

    def live(request: Request) -> dict[str, Any]:
        return {"live": plane.live()}

    def ready(request: Request) -> Response:
        if plane.ready():
            return JSONResponse({"ready": True})
        return JSONResponse(
            {"ready": False, "error": plane.repository.problem or "no model is loaded"}, 503
        )

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

    routes = [  # matched in order: inference first
        Route("/v1/predict", inference("v1", predict), methods=["POST"]),
        Route("/v2/models/{name}/infer", inference("v2", infer), methods=["POST"]),
        Route(
            "/v2/models/{name}/versions/{version}/infer",
            inference("v2", infer),
            methods=["POST"],
        ),
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
    return Starlette(routes=routes, lifespan=lifespan)
