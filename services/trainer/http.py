"""trainer's HTTP endpoints: health and metrics (it takes its work from Kafka, not HTTP).

GET /health/live    200 while the process runs
GET /health/ready   200 while the consuming loop runs, 503 otherwise
GET /metrics        Prometheus
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from driftloop.metrics import metrics_app


def create_app(ready: Callable[[], bool]) -> FastAPI:
    """The app; ``ready`` says whether the consuming loop runs."""
    app = FastAPI(title="driftloop trainer", docs_url=None, redoc_url=None)
    app.mount("/metrics", metrics_app())

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready")
    async def is_ready() -> Response:
        if ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"error": "the trigger consumer is not running"}, status_code=503)

    return app
