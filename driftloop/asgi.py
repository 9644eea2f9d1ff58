"""The services' HTTP server: uvicorn, stopped by SIGTERM or SIGINT without losing the cleanup,
writing each response in one piece, and the endpoints every service answers.

uvicorn re-raises the signal it caught once it has shut down, which kills the process before
the caller's ``finally`` runs; a service must still checkpoint and close its Kafka clients, so
:class:`ServiceServer` shuts down on the signal and then simply returns.

uvicorn writes a response's head as soon as the app starts the response, and its body when the
app sends it: two system calls, and on a socket with Nagle's algorithm off (as uvicorn sets
it) two segments, each of which wakes the client. :class:`HttpProtocol` holds the head until
the first piece of the body and writes them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Generator
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from driftloop.errors import DriftloopError, NotReady
from driftloop.http import answer_error, error_response
from driftloop.metrics import metrics_app

HANDLED = (signal.SIGINT, signal.SIGTERM)


COPY_BELOW = 64 * 1024  # bodies smaller than this are copied behind their head: one buffer


class ResponseWriter:
    """A connection's transport that sends each response's head with the first piece of its
    body, in one write.

    What else is written (``100 Continue`` before a response starts, the body's later pieces,
    the server's own error answers) goes out as it comes. A head still held when its response
    completes without a body write (an answer to HEAD), or when the connection closes, is
    written then (:meth:`flush`).

    Parameters:
        transport: the connection's transport.
        protocol: the connection's protocol: its newest request (``cycle``) is the one writing
            when its response has started, since a connection's requests answer in turn.
    """

    __slots__ = ("_done", "_head", "_protocol", "transport")

    def __init__(self, transport: Any, protocol: HttpProtocol) -> None:
        self.transport = transport
        self._protocol = protocol
        self._head: bytes | None = None
        self._done: RequestResponseCycle | None = None  # the last request whose head was seen

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) < COPY_BELOW:
                self.transport.write(head + data)
            else:  # a large body is not copied to put the head before it
                self.transport.writelines((head, data))
            return
        cycle = self._protocol.cycle
        if cycle is not self._done and cycle.response_started and not cycle.response_complete:
            self._head, self._done = data, cycle  # the first write of a response: its head
            return
        self.transport.write(data)

    def flush(self) -> None:
        """Write the head if it is still held."""
        head = self._head
        if head is not None:
            self._head = None
            self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return bool(self.transport.is_closing())

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`ResponseWriter`.

    Against the plain protocol, alternated at 8 connections on two cores (medians of four):
    the serve benchmark's HTTP floor (a constant-returning app) 22.4k requests/s against 19.6k,
    its CPU 42-45 us a request against 47-55 and the load generator's 13-15 against 17-20;
    serve 13.1k against 12.4k. A pipelined request's head goes out alone: the protocol has
    parsed the next request by then, and it is the next one's state this looks at.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(ResponseWriter(transport, self))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a head with no body (HEAD)
        super().on_response_complete()


class ServiceServer(uvicorn.Server):
    """A uvicorn server whose :meth:`run` returns after a SIGTERM/SIGINT shutdown, on
    :class:`HttpProtocol`.

    Parameters:
        app: the ASGI app.
        port: where it listens.
        host: the interface it listens on.
        access_log: one log line per request (off for serve, where a line costs more than the
            model).
    """

    def __init__(self, app: Any, port: int, host: str = "0.0.0.0", access_log: bool = True) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                http=HttpProtocol,
                access_log=access_log,
            )
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def service_app(
    service: str,
    not_ready: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """A service's app with what every service answers: ``/metrics``, ``/health/live`` (200
    while the process runs) and ``/health/ready`` (200 while ``app.state.ready()`` is true,
    else 503 saying ``not_ready``). The service sets ``app.state.ready`` once it runs.

    A :class:`~driftloop.errors.DriftloopError` a route raises is answered with its
    ``http_status`` and the body every service answers (:func:`driftloop.http.error_answer`).
    """
    app = FastAPI(title=f"driftloop {service}", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.add_exception_handler(DriftloopError, answer_error)
    app.mount("/metrics", metrics_app())
    app.state.ready = lambda: True

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready() -> Response:
        if app.state.ready():
            return JSONResponse({"status": "ready"})
        return error_response(NotReady(not_ready))

    return app
