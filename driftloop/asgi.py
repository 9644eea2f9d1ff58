"""The services' HTTP server: uvicorn, stopped by SIGTERM or SIGINT without losing the cleanup,
and the endpoints every service answers.

uvicorn re-raises the signal it caught once it has shut down, which kills the process before
the caller's ``finally`` runs; a service must still checkpoint and close its Kafka clients, so
:class:`ServiceServer` shuts down on the signal and then simply returns.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Generator
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from driftloop.metrics import metrics_app

HANDLED = (signal.SIGINT, signal.SIGTERM)


class ServiceServer(uvicorn.Server):
    """A uvicorn server whose :meth:`run` returns after a SIGTERM/SIGINT shutdown."""

    def __init__(self, app: Any, port: int, host: str = "0.0.0.0") -> None:
        super().__init__(uvicorn.Config(app, host=host, port=port, log_level="warning"))

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
    else 503 saying ``not_ready``). The service sets ``app.state.ready`` once it runs."""
    app = FastAPI(title=f"driftloop {service}", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.mount("/metrics", metrics_app())
    app.state.ready = lambda: True

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready() -> Response:
        if app.state.ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"error": not_ready}, status_code=503)

    return app
