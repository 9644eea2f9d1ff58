"""One error answer and one body reader for every service: the shared functions, and each
service's HTTP adapter answering through them (driven on bare ASGI, no sockets, no Kafka)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from driftloop.asgi import service_app
from driftloop.errors import (
    BrokerUnavailable,
    DriftloopError,
    InvalidInput,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    SchemaViolation,
    Unauthorized,
)
from driftloop.http import error_answer, read_body

LIMIT = 1024


async def call(
    app: Any,
    path: str,
    chunks: list[bytes] | None = None,
    method: str = "POST",
    declared: int | None = None,
    disconnect: bool = False,
) -> tuple[int, Any] | None:
    """``app``'s answer to a request whose body comes in ``chunks``: (status, JSON body), or
    None when it answered nothing."""
    chunks = [b""] if chunks is None else chunks
    headers = [(b"host", b"test"), (b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    if not sent:
        return None
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], orjson.loads(body)


# --- the shared functions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "index", "status", "body"),
    [
        (DriftloopError("boom"), None, 500, {"error": "boom"}),
        (PayloadTooLarge("too big"), None, 413, {"error": "too big"}),
        (
            InvalidInput("inputs.age", "bad age"),
            None,
            422,
            {"error": "bad age", "field": "inputs.age"},
        ),
        (
            SchemaViolation("request_id", "required", "request_id is missing"),
            3,
            422,
            {
                "error": "request_id is missing (rule: required)",
                "field": "request_id",
                "rule": "required",
                "index": 3,
            },
        ),
        (ModelNotReady("no model"), None, 503, {"error": "no model"}),
        (Unauthorized("token"), None, 401, {"error": "token"}),
    ],
)
def test_an_error_is_answered_with_its_own_status_and_one_body_shape(
    error: DriftloopError, index: int | None, status: int, body: dict[str, Any]
) -> None:
    got_status, got_body = error_answer(error, index)
    assert (got_status, orjson.loads(got_body)) == (status, body)


def receiving(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


async def test_the_body_reader_joins_the_pieces_and_refuses_what_is_over_the_limit() -> None:
    pieces = receiving(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    )
    assert await read_body(pieces, None, 4) == b"abcd"
    assert await read_body(receiving({"type": "http.request"}), b"0", 4) == b""
    with pytest.raises(PayloadTooLarge, match="body of 5 bytes is over the 4 allowed"):
        await read_body(receiving(), b"5", 4)  # refused before anything is read
    streamed = receiving(
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"de", "more_body": True},
    )
    with pytest.raises(PayloadTooLarge, match="over the 4 bytes allowed"):
        await read_body(streamed, None, 4)  # no length declared: counted as it comes
    gone = receiving({"type": "http.request", "body": b"a", "more_body": True}, {"type": "x"})
    with pytest.raises(ClientDisconnect):
        await read_body(gone, b"3", 4)


# --- every service's adapter ----------------------------------------------------------------


async def test_a_service_app_answers_the_errors_its_routes_raise() -> None:
    app: FastAPI = service_app("test", "the consumer is not running")

    @app.get("/missing")
    async def missing() -> None:
        raise NotFound("no such thing")

    @app.get("/schema")
    async def schema() -> None:
        raise SchemaViolation("label", "type", "label is not a number")

    assert await call(app, "/missing", method="GET") == (404, {"error": "no such thing"})
    assert await call(app, "/schema", method="GET") == (
        422,
        {"error": "label is not a number (rule: type)", "field": "label", "rule": "type"},
    )
    app.state.ready = lambda: False
    assert await call(app, "/health/ready", method="GET") == (
        503,
        {"error": "the consumer is not running"},
    )


async def test_ingest_refuses_bodies_through_the_shared_reader_and_answer() -> None:
    from driftloop.services.ingest.http import create_app
    from driftloop.services.ingest.settings import IngestSettings

    app = create_app(IngestSettings(ingest_max_body_bytes=LIMIT), producer=SimpleNamespace())
    for path in ("/v1/labels", "/v1/predictions"):
        status, body = await call(app, path, [b"x" * 10], declared=LIMIT + 1) or (0, None)
        assert status == 413 and str(LIMIT) in body["error"], body
        streamed = [b"x" * 600, b"x" * 600]
        status, body = await call(app, path, streamed) or (0, None)
        assert status == 413 and str(LIMIT) in body["error"], body
        status, body = await call(app, path, [b"{oops"]) or (0, None)
        assert status == 400 and "not JSON" in body["error"], body
        status, body = await call(app, path, [b"[]"]) or (0, None)
        assert (status, body["field"]) == (422, "$"), body
        status, body = await call(app, path, [b"[1]"]) or (0, None)
        assert (status, body["index"], body["field"]) == (422, 0, "$"), body
        assert "[0] is not a JSON object" in body["error"]


async def test_monitor_answers_its_errors_through_the_shared_answer() -> None:
    from driftloop.services.monitor.http import create_app

    def read(name: str) -> bytes:
        raise KeyError(name)

    async def manual(name: str | None, evidence: dict[str, Any]) -> str:
        raise TimeoutError()

    app = create_app(lambda: [], SimpleNamespace(read=read), manual)  # type: ignore[arg-type]
    assert await call(app, "/reports/w.html", method="GET") == (
        404,
        {"error": "no report named w.html"},
    )
    status, body = await call(app, "/v1/triggers", [b"{oops"]) or (0, None)
    assert status == 400 and "not JSON" in body["error"]
    for document, field in [
        ([], "$"),
        ({"model_name": ""}, "model_name"),
        ({"evidence": 1}, "evidence"),
    ]:
        status, body = await call(app, "/v1/triggers", [orjson.dumps(document)]) or (0, None)
        assert (status, body["field"]) == (422, field), body
    status, body = await call(app, "/v1/triggers", [b"{}"]) or (0, None)
    assert status == BrokerUnavailable.http_status == 503 and "retry" in body["error"]


def serve_app(begin: Any) -> Any:
    from driftloop.services.serve.dataplane import DataPlane
    from driftloop.services.serve.http import create_app
    from driftloop.services.serve.settings import ServeSettings

    plane = SimpleNamespace(
        name="m",
        infer=lambda inference: DataPlane.infer(plane, inference),  # type: ignore[arg-type]
        begin_records=begin,
        begin_infer=lambda name, document, version, caller: begin(document, caller),
        ready=lambda: False,
        repository=SimpleNamespace(problem="no model has been promoted yet"),
    )
    return create_app(ServeSettings(serve_max_body_bytes=LIMIT), plane)  # type: ignore[arg-type]


async def test_serve_answers_its_errors_through_the_shared_reader_and_answer() -> None:
    def not_ready(document: Any, caller: str | None) -> Any:
        raise ModelNotReady("no model has been promoted yet")

    app = serve_app(not_ready)
    for path in ("/v1/predict", "/v2/models/m/infer", "/v2/models/m/versions/3/infer"):
        status, body = await call(app, path, [b"x"], declared=LIMIT + 1) or (0, None)
        assert status == 413 and str(LIMIT) in body["error"], body
        status, body = await call(app, path, [b"x" * 600, b"x" * 600]) or (0, None)
        assert status == 413 and str(LIMIT) in body["error"], body
        status, body = await call(app, path, [b"{oops"]) or (0, None)
        assert status == 400 and "not JSON" in body["error"], body
        answer = await call(app, path, [b"{}"])
        assert answer == (503, {"error": "no model has been promoted yet"})
        assert await call(app, path, [b"{"], disconnect=True) is None  # gone: nothing to answer
        assert await call(app, path, method="GET") == (405, {"error": "inference takes POST"})
    status, body = await call(app, "/v2/health/ready", method="GET") or (0, None)
    assert (status, body["ready"]) == (503, False)
    status, body = await call(app, "/health/ready", method="GET") or (0, None)
    assert status == 503 and "no model is loaded" in body["error"]
    assert await call(app, "/health/live", method="GET") == (200, {"status": "live"})
    status, body = await call(app, "/v2/repository/models/m/load", [b"{}"]) or (0, None)
    assert status == 404 and "SERVE_ADMIN_TOKEN" in body["error"]


async def test_a_model_that_raises_is_answered_500_naming_the_failure() -> None:
    def call_model(batch: Any) -> Any:
        raise RuntimeError("out of memory")

    model = SimpleNamespace(inline=True, call=call_model, version="3")

    def failing(document: Any, caller: str | None) -> Any:
        return SimpleNamespace(model=model, batch=None, online=None)

    answer = await call(serve_app(failing), "/v1/predict", [b"{}"])
    assert answer == (500, {"error": "the model failed: out of memory"})
