"""trainer's HTTP endpoints: health and metrics (it takes its work from Kafka, not HTTP).

GET /health/live    200 while the process runs
GET /health/ready   200 while both loops run (triggers, live evidence), 503 otherwise
GET /metrics        Prometheus
"""

from __future__ import annotations

from fastapi import FastAPI

from driftloop.asgi import ServiceRunner, service_app


def create_app(runner: ServiceRunner | None = None) -> FastAPI:
    """The app; ``runner`` runs the loops beside it (ready while they run)."""
    return service_app(
        "trainer", "a trainer loop (triggers or live evidence) is not running", runner
    )
