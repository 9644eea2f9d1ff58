"""The local MLflow tracking server with its model registry.

SQLite and a local artifact folder by default; artifacts go to S3 (through boto3) when
``DRIFTLOOP_S3_BUCKET`` is set, with ``DRIFTLOOP_S3_ENDPOINT_URL`` for any S3-compatible store.
One worker and job execution off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``) keep it to two
processes and about 0.5 GiB, ready in about 6 s (MLflow 3.17.2, measured on these machines).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

from driftloop.stack.process import ManagedProcess, require_free_port
from driftloop.stack.settings import LocalStackSettings


class MlflowServer:
    """The local tracking server: :meth:`up`, :meth:`down`, :meth:`ready`."""

    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.home = (settings.state_dir / "mlflow").resolve()
        self.url = settings.mlflow_url
        self.process = ManagedProcess("mlflow", self.home, marker=f"--port {settings.mlflow_port}")

    def up(self, timeout: float = 90.0) -> str:
        """Start the server unless it already runs; return once ``/health`` answers."""
        if self.process.pid() is None:
            require_free_port(self.settings.mlflow_port, "the MLflow server", "MLFLOW_PORT")
            self.home.mkdir(parents=True, exist_ok=True)
            self.process.start(self._argv(), env=self._env())
            outcome = "started"
        else:
            outcome = "running"
        self.process.wait_until(self.ready, timeout, f"MLflow server ({self.url})")
        return outcome

    def down(self, timeout: float = 15.0) -> bool:
        return self.process.stop(timeout)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _argv(self) -> list[str]:
        s = self.settings
        artifacts = s.mlflow_artifacts_destination
        if not artifacts.startswith("s3://"):
            Path(artifacts).mkdir(parents=True, exist_ok=True)
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(s.mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            s.mlflow_backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            artifacts,
        ]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        if self.settings.s3_endpoint_url:
            env["MLFLOW_S3_ENDPOINT_URL"] = self.settings.s3_endpoint_url
        return env
