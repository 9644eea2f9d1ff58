"""`driftloop run monitor`: the consuming worker and the HTTP page on one event loop."""

from __future__ import annotations

from driftloop.asgi import ServiceRunner
from driftloop.logs import configure_logging
from driftloop.registry import ModelRegistry
from driftloop.runtime import tune_gc
from driftloop.services.monitor.http import create_app
from driftloop.services.monitor.report import WindowReports
from driftloop.services.monitor.settings import MonitorSettings
from driftloop.services.monitor.worker import MonitorWorker
from driftloop.store import store_blobs


def main() -> int:
    settings = MonitorSettings()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc()
    reports = WindowReports(store_blobs(settings))
    worker = MonitorWorker(settings, ModelRegistry(settings.mlflow_tracking_uri), reports)
    runner = ServiceRunner(
        "monitor",
        run={"monitor-worker": worker.run},
        start=[worker.start],
        close=[worker.close],
    )
    app = create_app(lambda: list(worker.recent), reports, worker.manual_trigger, runner)
    return runner.serve(app, settings.monitor_port)
