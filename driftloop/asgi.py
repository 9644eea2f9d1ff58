"""How every service runs: its HTTP app on uvicorn and, on the same event loop, the parts that
run beside it; the endpoints every service answers.

:class:`ServiceRunner` starts a service's parts (a consuming worker, an event sender, a
registry watcher) before its app answers, stops them after it has stopped answering, and stops
the service when a part fails, rather than leave it answering without its worker (a restart
resumes from the last commit). :class:`ServiceServer` is the uvicorn server under it: stopped
by SIGTERM or SIGINT, it returns instead of re-raising the signal (uvicorn's default, which
kills the process before the caller's ``finally`` runs: a service must still checkpoint and
close its Kafka clients). :func:`service_app` is the app every service starts from:
``/health/live``, ``/health/ready``, ``/metrics``, the errors answered alike, and the API's
documents: ``/openapi.json`` (OpenAPI 3.1), ``/docs`` (Swagger UI) and ``/redoc``.

Example:
    >>> import asyncio
    >>> async def consume(stop: asyncio.Event) -> None:
    ...     await stop.wait()
    >>> runner = ServiceRunner("example", run={"example-worker": consume})
    >>> async def main() -> tuple[bool, bool]:
    ...     async with runner.lifespan(None):
    ...         await asyncio.sleep(0)
    ...         during = runner.ready()
    ...     return during, runner.ready()
    >>> asyncio.run(main())
    (True, False)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Mapping,
    Sequence,
)
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.routing import Router

from driftloop import __version__
from driftloop.errors import DriftloopError, NotReady
from driftloop.http import answer_error, error_response
from driftloop.metrics import metrics_app
from driftloop.openapi import ApiDocument, error_responses

log = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM)

Part = Callable[[asyncio.Event], Coroutine[Any, Any, None]]

# /metrics is a mounted app, not a route: described here.
METRICS_PATH = {
    "/metrics": {
        "get": {
            "summary": "Metrics",
            "description": "The service's metrics, in Prometheus' text format.",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
}


class ServiceServer(uvicorn.Server):
    """A uvicorn server (httptools; uvloop, which uvicorn[standard] installs) whose
    :meth:`run` returns after a SIGTERM/SIGINT shutdown.

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
                http="httptools",
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


class ServiceRunner:
    """A service's parts on its server's event loop: started before the app answers, stopped
    after it has stopped answering.

    Parameters:
        service: the service's name, for its log lines.
        run: each part by name: ``part(stop)`` runs until ``stop`` is set, then returns.
        start: awaited in order before the parts run (clients to connect).
        close: awaited in order after the parts have returned.
        stop_timeout_s: how long the parts have to return once ``stop`` is set (None: as long
            as they take; a worker's last checkpoint must not be cut short).
    """

    def __init__(
        self,
        service: str,
        run: Mapping[str, Part],
        start: Sequence[Callable[[], Awaitable[Any]]] = (),
        close: Sequence[Callable[[], Awaitable[Any]]] = (),
        stop_timeout_s: float | None = None,
    ) -> None:
        self.service = service
        self._parts = dict(run)
        self._start = list(start)
        self._close = list(close)
        self._stop_timeout_s = stop_timeout_s
        self._tasks: list[asyncio.Task[None]] = []
        self.server: ServiceServer | None = None
        self.failed = False

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """The app's lifespan: the parts run inside it."""
        for start in self._start:
            await start()
        stop = asyncio.Event()
        self._tasks = [asyncio.create_task(part(stop), name=n) for n, part in self._parts.items()]
        for task in self._tasks:
            task.add_done_callback(self._ended)
        log.info("%s started", self.service, extra={"parts": list(self._parts)})
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*self._tasks, return_exceptions=True), self._stop_timeout_s
                )
            for close in self._close:
                await close()

    def ready(self) -> bool:
        """Whether every part runs."""
        return bool(self._tasks) and not any(task.done() for task in self._tasks)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # Stop rather than answer without the part: a restart resumes from the last commit.
        log.error("%s failed; stopping", task.get_name(), exc_info=task.exception())
        self.failed = True
        if self.server is not None:
            self.server.should_exit = True

    def serve(self, app: Any, port: int, host: str = "0.0.0.0", access_log: bool = True) -> int:
        """Serve ``app`` (made with :meth:`lifespan`) until SIGTERM or SIGINT, or until a part
        fails; the process's exit status: 1 if a part failed."""
        self.server = ServiceServer(app, port, host, access_log)
        self.server.run()
        return 1 if self.failed else 0


def in_thread(run: Callable[[threading.Event], None]) -> Part:
    """A blocking ``run(stop)`` (a loop on a thread's clock: the trainer's fits take minutes)
    as a :class:`ServiceRunner` part: it runs in a thread of its own until ``stop`` is set."""

    async def part(stop: asyncio.Event) -> None:
        halt = threading.Event()
        thread = asyncio.ensure_future(asyncio.to_thread(run, halt))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({thread, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()
            stopping.cancel()
        await thread

    return part


def service_app(service: str, not_ready: str, runner: ServiceRunner | None = None) -> FastAPI:
    """A service's app with what every service answers: ``/metrics``, ``/health/live`` (200
    while the process runs) and ``/health/ready`` (200 while ``app.state.ready()`` is true,
    else 503 saying ``not_ready``). ``runner`` runs the service's parts in the app's lifespan;
    the app is ready while they run.

    A :class:`~driftloop.errors.DriftloopError` a route raises is answered with its
    ``http_status`` and the body every service answers (:func:`driftloop.http.error_answer`).
    The API is described at ``/openapi.json``, ``/docs`` and ``/redoc``
    (``app.state.api_document``, a :class:`~driftloop.openapi.ApiDocument`, adds what the
    routes cannot declare).
    """
    app = FastAPI(
        title=f"driftloop {service}",
        version=__version__,
        docs_url="/docs",
        redoc_url="/redoc",
        lifespan=None if runner is None else runner.lifespan,
    )
    # The documents' routes are tried last, after every route of the service (added later)
    # has not matched: a request to the service's own paths never pays for them.
    pages = {app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url}
    documents = [route for route in app.router.routes if getattr(route, "path", "") in pages]
    app.router.routes = [route for route in app.router.routes if route not in documents]
    app.router.default = Router(documents, default=app.router.default)
    app.add_exception_handler(DriftloopError, answer_error)
    app.mount("/metrics", metrics_app())
    app.state.ready = (lambda: True) if runner is None else runner.ready
    app.state.api_document = ApiDocument(app)
    app.state.api_document.add(paths=METRICS_PATH)

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready", responses=error_responses({503: not_ready}))
    async def ready() -> Response:
        if app.state.ready():
            return JSONResponse({"status": "ready"})
        return error_response(NotReady(not_ready))

    return app
