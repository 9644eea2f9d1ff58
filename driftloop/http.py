"""What every service's HTTP adapter shares: one error answer, one body reader.

Every :class:`~driftloop.errors.DriftloopError` a request meets is answered by
:func:`error_answer`: the error's ``http_status``, and the body

    {"error": "<str(error)>", "field": "...", "rule": "...", "index": 3}

``field`` with an :class:`~driftloop.errors.InvalidInput` or a
:class:`~driftloop.errors.SchemaViolation`, ``rule`` with a ``SchemaViolation``, ``index`` when
the error is about one item of a batch. An app from :func:`driftloop.asgi.service_app` answers
every ``DriftloopError`` its routes raise this way (:func:`answer_error`); serve's bare
inference path calls :func:`error_answer` itself.

A request body is read by :func:`read_body` (:func:`read_request` for a Starlette request),
which refuses a body over the limit
(:class:`~driftloop.errors.PayloadTooLarge`) from its ``Content-Length`` before reading it,
and from what has arrived while it streams.

Example:
    >>> error_answer(InvalidInput("inputs.age", "inputs.age is FP32: got a string"))
    (422, b'{"error":"inputs.age is FP32: got a string","field":"inputs.age"}')
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive

from driftloop.errors import (
    DriftloopError,
    InvalidInput,
    MalformedRequest,
    PayloadTooLarge,
    SchemaViolation,
)


def error_answer(error: DriftloopError, index: int | None = None) -> tuple[int, bytes]:
    """The status and JSON body that answer ``error``; ``index``: the batch item it is about."""
    body: dict[str, Any] = {"error": str(error)}
    if isinstance(error, InvalidInput | SchemaViolation):
        body["field"] = error.field
    if isinstance(error, SchemaViolation):
        body["rule"] = error.rule
    if index is not None:
        body["index"] = index
    return error.http_status, orjson.dumps(body)


def error_response(error: DriftloopError, index: int | None = None) -> Response:
    """:func:`error_answer` as a response."""
    status, body = error_answer(error, index)
    return Response(body, status, media_type="application/json")


async def answer_error(request: Request, error: Exception) -> Response:
    """A Starlette exception handler for :class:`~driftloop.errors.DriftloopError`."""
    assert isinstance(error, DriftloopError)
    return error_response(error)


async def read_body(receive: Receive, declared: bytes | None, limit: int) -> bytes:
    """A request's body, of at most ``limit`` bytes.

    Parameters:
        receive: the request's ASGI ``receive``.
        declared: its ``Content-Length`` header as sent, if it has one.
        limit: the largest body accepted.

    Raises:
        PayloadTooLarge: the declared length, or what has arrived, is over ``limit``.
        starlette.requests.ClientDisconnect: the client went away before its body arrived.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body of {int(declared)} bytes is over the {limit} allowed")
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over the {limit} bytes allowed")
        if not message.get("more_body", False):
            return body


async def read_request(request: Request, limit: int) -> bytes:
    """:func:`read_body` for a Starlette request."""
    declared = request.headers.get("content-length")  # decoded as latin-1: encoded back
    raw = None if declared is None else declared.encode("latin-1")
    return await read_body(request.receive, raw, limit)


def parse_json(body: bytes, *, non_finite: bool = False) -> Any:
    """``body`` parsed; raises :class:`~driftloop.errors.MalformedRequest` if it is not JSON.

    ``non_finite``: also parse ``NaN`` and ``Infinity``, which are not JSON but which some
    clients send, so that the answer can name the field that holds one (a 422 from the
    contract check) instead of refusing the whole body. An integer past 64 bits is then a
    float, as orjson parses it, and a document orjson could not write back (a lone surrogate)
    is still refused: no event could carry it.

    Example:
        >>> parse_json(b'{"age": 41}')
        {'age': 41}
        >>> parse_json(b'{"age": NaN}', non_finite=True)
        {'age': nan}
        >>> parse_json(b'{"age": NaN}')  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        driftloop.errors.MalformedRequest: the body is not JSON: ...
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if not non_finite:
            raise MalformedRequest(f"the body is not JSON: {error}") from None
        try:
            document = json.loads(body, parse_int=_wire_int)
        except ValueError:
            raise MalformedRequest(f"the body is not JSON: {error}") from None
        try:
            orjson.dumps(document)
        except orjson.JSONEncodeError as unwritable:
            raise MalformedRequest(f"the body is not JSON: {unwritable}") from None
        return document


def _wire_int(text: str) -> int | float:
    """An integer as orjson parses it: past 64 bits, a float (an event carries no wider)."""
    value = int(text)
    return value if -(1 << 63) <= value < 1 << 64 else float(text)
