"""trainer's HTTP endpoints: health and metrics (it takes its work from Kafka, not HTTP).

GET /health/live    200 while the process runs
GET /health/ready   200 while the consuming loop runs, 503 otherwise
GET /metrics        Prometheus
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from driftloop.asgi import service_app


def create_app(ready: Callable[[], bool]) -> FastAPI:
    """The app; ``ready`` says whether the consuming loop runs."""
    app = service_app("trainer", "the trigger consumer is not running")
    app.state.ready = ready
    return app
