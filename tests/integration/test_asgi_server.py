"""The services' HTTP server over real sockets: whole answers, whatever their shape."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from driftloop.asgi import ServiceServer
from driftloop.stack.process import free_port

LARGE = 5 << 20


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes the request's body on /echo; 5 MiB on /large; a streamed answer on /chunks."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/chunks":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    answer = b"y" * LARGE if path == "/large" else b"echo:" + body
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    server = ServiceServer(app, port, "127.0.0.1", access_log=False)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_small_large_streamed_and_head_answers_arrive_whole(port: int) -> None:
    assert request(port, "POST", "/echo", b"hello") == (200, b"echo:hello")
    status, body = request(port, "GET", "/large")
    assert status == 200 and body == b"y" * LARGE
    assert request(port, "GET", "/chunks") == (200, b"one,two,three")
    assert request(port, "HEAD", "/echo") == (200, b"")


def test_keep_alive_answers_in_turn_on_one_connection(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(50):
            connection.request("POST", "/echo", str(i).encode())
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, f"echo:{i}".encode())
    finally:
        connection.close()


def test_continue_comes_before_the_body_is_sent(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\n"
            b"expect: 100-continue\r\n\r\n"
        )
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            piece = client.recv(1024)
            assert piece, f"closed after {interim!r}"
            interim += piece
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.sendall(b"hi")
        answer = b""
        while not answer.endswith(b"echo:hi"):
            piece = client.recv(4096)
            assert piece, f"closed after {answer!r}"
            answer += piece
        assert answer.startswith(b"HTTP/1.1 200 OK")
