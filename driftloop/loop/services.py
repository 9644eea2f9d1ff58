"""The four services as processes: started with the right environment, awaited, stopped.

:class:`ServiceSupervisor` runs each service as ``driftloop run <service>`` in its own process
(as in production: the services share nothing but Kafka and the registry), with a pid file and
a log under ``run_dir`` so that ``driftloop up``, ``status`` and ``down`` can be separate
commands. :func:`isolated_environment` gives a run topics, consumer groups, a model name and an
example store of its own, so a demo or a test never reads what an earlier run left on the
broker.

Example:
    >>> supervisor = ServiceSupervisor(settings)  # doctest: +SKIP
    >>> supervisor.start_all()  # doctest: +SKIP
    >>> supervisor.url("serve")  # doctest: +SKIP
    'http://127.0.0.1:8080'
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from driftloop.errors import StackError
from driftloop.settings import SERVICES, Settings, as_environment, service_settings
from driftloop.stack.process import ManagedProcess, free_port

# Every service answers these; serve is ready only with a model loaded, the others once they
# consume.
READY_PATH = "/health/ready"
LIVE_PATH = "/health/live"
DEFAULT_PORTS = {"ingest": 8081, "monitor": 8083, "trainer": 8084, "serve": 8080}


def setting_names() -> set[str]:
    """Every field of the shared settings and of each service's settings."""
    names = set(Settings.model_fields)
    for cls in service_settings().values():
        names |= set(cls.model_fields)
    return names


def isolated_environment(
    settings: Settings, tag: str, store_dir: Path, **overrides: Any
) -> dict[str, Any]:
    """Fields that give one run its own topics, groups, model name, store and ports.

    Every ``topic_*`` field of every service becomes ``<tag>.<name>``, every ``*_group_id``
    gets ``-<tag>``, each service gets a free port. ``overrides`` win.
    """
    fields: dict[str, Any] = {}
    classes: list[type[Settings]] = [Settings, *service_settings().values()]
    for cls in classes:
        for name, field in cls.model_fields.items():
            if name.startswith("topic_") and name not in ("topic_partitions",):
                if name != "topic_replication_factor":
                    fields[name] = f"{tag}.{name.removeprefix('topic_').replace('_', '-')}"
            elif name.endswith("_group_id"):
                fields[name] = f"{field.default}-{tag}"
    fields |= {f"{service}_port": free_port() for service in SERVICES}
    fields |= {
        "model_name": f"{settings.model_name}-{tag}",
        "store_uri": str(store_dir.resolve()),
    }
    known = setting_names()
    return {name: value for name, value in (fields | overrides).items() if name in known}


def _answers(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status ``url`` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


class ServiceSupervisor:
    """Starts, awaits and stops the loop's services.

    Parameters:
        settings: the settings every service starts from (Kafka, MLflow, state folder). Only
            what some service reads goes into their environment: where the broker and the
            tracking server are (``DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS``,
            ``DRIFTLOOP_MLFLOW_TRACKING_URI``, which
            :class:`~driftloop.stack.settings.LocalStackSettings` derives from the stack's
            ports), never the stack's own settings.
        fields: setting fields to override in the services' environment (see
            :func:`isolated_environment`); their ports are read from here too.
        run_dir: folder of the pid and log files; ``<state_dir>/services`` by default.
        services: which to run.
    """

    def __init__(
        self,
        settings: Settings,
        fields: Mapping[str, Any] | None = None,
        run_dir: Path | None = None,
        services: Iterable[str] = SERVICES,
    ) -> None:
        self.settings = settings
        self.fields = dict(fields or {})
        self.run_dir = run_dir or settings.state_dir / "services"
        self.services = tuple(services)
        self.processes = {
            name: ManagedProcess(name, self.run_dir, f"driftloop.cli run {name}")
            for name in self.services
        }

    def port(self, service: str) -> int:
        name = f"{service}_port"
        if name in self.fields:
            return int(self.fields[name])
        variable = os.environ.get(f"DRIFTLOOP_{name.upper()}")
        return int(variable) if variable else DEFAULT_PORTS[service]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port(service)}"

    def environment(self) -> dict[str, str]:
        """The services' environment: ours, every setting a service reads, the overrides."""
        known = setting_names()
        shared = {
            name: value
            for name, value in self.settings.model_dump(mode="json").items()
            if name in known
        }
        shared["state_dir"] = str(Path(self.settings.state_dir).resolve())
        return (
            dict(os.environ)
            | as_environment(shared | self.fields)
            | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
        )

    def start(self, service: str) -> int:
        """Start ``service`` unless it runs already; returns its pid."""
        process = self.processes[service]
        pid = process.pid()
        if pid is not None:
            return pid
        argv = [sys.executable, "-m", "driftloop.cli", "run", service]
        return process.start(argv, env=self.environment())

    def start_all(self) -> dict[str, int]:
        return {service: self.start(service) for service in self.services}

    def live(self, service: str) -> bool:
        return _answers(self.url(service) + LIVE_PATH) is not None

    def ready(self, service: str) -> bool:
        return _answers(self.url(service) + READY_PATH) == 200

    def wait(self, service: str, timeout: float = 120.0, ready: bool = True) -> None:
        """Wait until ``service`` answers (``ready=False``) or says it is ready; fails early,
        with its log's tail, if it exits."""
        check = self.ready if ready else self.live
        what = f"{service} ({'ready' if ready else 'live'} at {self.url(service)})"
        self.processes[service].wait_until(lambda: check(service), timeout, what)

    def alive(self, service: str) -> bool:
        return self.processes[service].pid() is not None

    def stop(self, service: str, timeout: float = 30.0) -> bool:
        return self.processes[service].stop(timeout)

    def stop_all(self, timeout: float = 30.0) -> dict[str, bool]:
        """Stop serve first (no new predictions), the consumers after (they checkpoint)."""
        return {service: self.stop(service, timeout) for service in reversed(self.services)}

    def status(self) -> dict[str, dict[str, Any]]:
        return {
            service: {
                "pid": self.processes[service].pid(),
                "url": self.url(service),
                "ready": self.ready(service),
                "log": str(self.processes[service].logfile),
            }
            for service in self.services
        }

    def tail(self, service: str, lines: int = 15) -> str:
        return self.processes[service].tail(lines)

    def check_running(self) -> None:
        """Raise, with the log's tail, if a service died."""
        for service in self.services:
            if not self.alive(service):
                raise StackError(f"{service} exited; last log lines:\n{self.tail(service)}")


def wait_for(predicate: Any, timeout: float, what: str, every: float = 0.5) -> None:
    """Poll ``predicate`` until true; raise :class:`TimeoutError` naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
