"""A service as its own process, as it runs in production, for the integration tests."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from driftloop.settings import Settings, as_environment


class ServiceProcess:
    """``driftloop run <service>`` in a child process, configured only through its environment.

    Parameters:
        service: ``ingest``, ``monitor``, ``trainer`` or ``serve``.
        settings: the service's settings; they reach it as ``DRIFTLOOP_*`` variables.
        log: file that collects its output; failures quote its end.
        environment: more variables for it (beside the settings').
    """

    def __init__(
        self,
        service: str,
        settings: Settings,
        log: Path,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.log = log
        self.environment = environment or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{getattr(settings, f'{service}_port')}"

    def start(self, ready_path: str | None = "/health/ready", timeout: float = 90) -> None:
        """Start it and, unless ``ready_path`` is None, wait until that path answers 200."""
        env = (
            os.environ
            | as_environment(self.settings)
            | {"DRIFTLOOP_LOG_FORMAT": "text"}
            | self.environment
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftloop.cli", "run", self.service],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if ready_path is not None:
            self.wait_until(lambda: self.status(ready_path) == 200, f"{ready_path} 200", timeout)

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive(), f"{self.service} exited:\n{self.tail()}"
            with contextlib.suppress(OSError):  # not listening yet
                if done():
                    return
            time.sleep(0.2)
        raise AssertionError(f"{self.service}: no {what} after {timeout} s:\n{self.tail()}")

    def status(self, path: str) -> int | None:
        """The HTTP status ``path`` answers with; None while nothing listens."""
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def read(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return bytes(response.read())

    def post(self, path: str, document: object) -> tuple[int, bytes]:
        """POST ``document`` as JSON; the status and the body (4xx and 5xx included)."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(document).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.terminate()
        return self.process.wait(timeout=timeout)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""
