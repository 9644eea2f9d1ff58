"""Prometheus helpers shared by the services.

Metrics are declared next to what they count (``driftloop.messaging`` declares the Kafka ones);
this module only exposes them. Every name starts with ``driftloop_``.

Example:
    >>> app = metrics_app()  # mount at /metrics in an ASGI server
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, make_asgi_app, start_http_server

NAMESPACE = "driftloop"


def metrics_app() -> Any:
    """An ASGI app that serves every registered metric; services mount it at ``/metrics``."""
    return make_asgi_app(registry=REGISTRY)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` on its own port, for processes without an HTTP server of their own."""
    start_http_server(port, addr=host, registry=REGISTRY)
