"""The services' HTTP protocol writes each response in one piece: driven through uvicorn's
protocol with a transport that records what is written (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from driftloop.asgi import HttpProtocol

BODY = b'{"ok":true}'
LARGE = 1 << 20


class RecordingTransport(asyncio.Transport):
    """What the protocol writes, one item per write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.pieces: list[int] = []  # how many pieces each writelines call had
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def writelines(self, pieces: Any) -> None:  # one write of several pieces
        self.writes.append(b"".join(pieces))
        self.pieces.append(len(pieces))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes nothing; answers BODY, in pieces for /chunks, after a failure for /fails."""
    if scope["type"] != "http":
        return
    message = await receive()
    assert message["type"] == "http.request"
    path = scope["path"]
    headers = [(b"content-type", b"application/json")]
    if path == "/large":
        body = b"x" * LARGE
        headers.append((b"content-length", str(LARGE).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    if path == "/chunks":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two", "more_body": False})
        return
    headers.append((b"content-length", str(len(BODY)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/fails":
        raise RuntimeError("the app failed after starting its response")
    await send({"type": "http.response.body", "body": BODY})


async def exchange(request: bytes) -> RecordingTransport:
    config = uvicorn.Config(app, http=HttpProtocol, log_level="critical", lifespan="off")
    config.load()
    protocol = HttpProtocol(config, ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(20):  # the app's task and what it schedules
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


def get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: test\r\n{extra}\r\n".encode()


def test_head_and_body_go_out_in_one_write() -> None:
    transport = asyncio.run(exchange(get("/")))
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == BODY


def test_a_large_body_goes_out_with_its_head_without_a_copy() -> None:
    transport = asyncio.run(exchange(get("/large")))
    assert transport.pieces == [2]  # head and body handed over together, as they are
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[0].endswith(b"\r\n\r\n" + b"x" * LARGE)


def test_pipelined_requests_are_answered_whole_and_in_order() -> None:
    transport = asyncio.run(exchange(get("/a") + get("/b")))
    # the second request is parsed before the first is answered: the first one's head is not
    # recognised as such and goes out alone (pipelining is rare; what counts is the bytes)
    response = transport.writes[-1]
    assert response.startswith(b"HTTP/1.1 200 OK") and response.endswith(BODY)
    assert b"".join(transport.writes) == response * 2


def test_an_answer_to_head_is_written_when_the_response_completes() -> None:
    transport = asyncio.run(exchange(get("/", method="HEAD")))
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[0].endswith(b"\r\n\r\n")  # a head, no body


def test_a_streamed_body_sends_its_head_with_the_first_piece_then_each_piece() -> None:
    transport = asyncio.run(exchange(get("/chunks")))
    assert len(transport.writes) == 2
    first, second = transport.writes
    assert first.startswith(b"HTTP/1.1 200 OK") and b"transfer-encoding: chunked" in first
    assert first.endswith(b"4\r\none,\r\n")
    assert second == b"3\r\ntwo\r\n0\r\n\r\n"


def test_continue_goes_out_before_the_response_starts() -> None:
    request = (
        b"POST / HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\nhi"
    )
    transport = asyncio.run(exchange(request))
    assert transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(transport.writes) == 2
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK") and transport.writes[1].endswith(BODY)


def test_a_held_head_is_written_before_the_connection_closes() -> None:
    # the app fails after starting its response: uvicorn closes the connection, and what the
    # client gets is the head it had before this protocol (then the close)
    transport = asyncio.run(exchange(get("/fails")))
    assert transport.closed
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert transport.writes[0].endswith(b"\r\n\r\n")


@pytest.mark.parametrize("path", ["/", "/chunks"])
def test_connection_close_still_gets_the_whole_response(path: str) -> None:
    transport = asyncio.run(exchange(get(path, extra="connection: close\r\n")))
    assert transport.closed
    written = b"".join(transport.writes)
    assert written.startswith(b"HTTP/1.1 200 OK")
    assert written.endswith(BODY if path == "/" else b"0\r\n\r\n")


def test_a_malformed_first_request_gets_the_servers_own_answer() -> None:
    transport = asyncio.run(exchange(b"NOT HTTP\r\n\r\n"))
    assert transport.writes and transport.writes[0].startswith(b"HTTP/1.1 400")
    assert transport.closed
