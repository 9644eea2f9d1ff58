"""The services' HTTP server: uvicorn, stopped by SIGTERM or SIGINT without losing the cleanup.

uvicorn re-raises the signal it caught once it has shut down, which kills the process before
the caller's ``finally`` runs; a service must still checkpoint and close its Kafka clients, so
:class:`ServiceServer` shuts down on the signal and then simply returns.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Generator
from typing import Any

import uvicorn

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
