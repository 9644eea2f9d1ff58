"""The inference front: its order of work (when answers are written), and how it parses bodies."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI

from driftloop.errors import MalformedRequest
from driftloop.http import parse_json
from driftloop.services.serve.http import InferenceFront


def front(events: list[str]) -> InferenceFront:
    async def answer(params: dict[str, str], caller: str | None, body: Any) -> tuple[int, bytes]:
        events.append(f"handle {(await body()).decode()}")
        return 200, b"{}"

    return InferenceFront(FastAPI(), answer, answer, limit=1024)


async def request(app: InferenceFront, client: int, events: list[str]) -> None:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/predict",
        "headers": [(b"content-length", b"1")],
        "client": ("127.0.0.1", client),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": str(client).encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            events.append(f"send {client}")

    await app(scope, receive, send)


async def test_answers_to_several_connections_go_out_after_the_requests_that_came_with_them() -> (
    None
):
    events: list[str] = []
    app = front(events)
    await asyncio.gather(*(request(app, client, events) for client in (1, 2, 3)))
    assert events == ["handle 1", "handle 2", "handle 3", "send 1", "send 2", "send 3"]


async def test_one_connection_is_answered_without_waiting_for_a_turn_of_the_loop() -> None:
    events: list[str] = []
    app = front(events)
    await request(app, 1, events)
    asyncio.get_running_loop().call_soon(events.append, "next turn")
    await request(app, 1, events)
    assert events[2:] == ["handle 1", "send 1"]
    await asyncio.sleep(0)
    assert events[-1] == "next turn"


def test_bodies_orjson_refuses_are_parsed_for_nan_but_never_with_what_no_event_can_carry() -> None:
    document = parse_json(b'{"a": NaN, "b": 100000000000000000000000, "c": 5}', non_finite=True)
    assert document["a"] != document["a"] and document["c"] == 5
    assert document["b"] == 1e23 and type(document["b"]) is float  # as orjson parses it
    for body in (b'{"a": "\\ud800"}', b'{"a": NaN, "b": "\\udc00"}', b'{"a": '):
        with pytest.raises(MalformedRequest):
            parse_json(body, non_finite=True)
