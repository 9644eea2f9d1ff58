"""The local stack's own settings: what starting a broker and an MLflow server on this machine
takes, and what no service reads.

:class:`LocalStackSettings` adds the stack's ports, the broker's version and heap and MLflow's
backend store to the shared :class:`~driftloop.settings.Settings`, under the same
``DRIFTLOOP_<FIELD>`` variables. The commands that start, stop or watch the stack read it
(``driftloop stack``, ``up``, ``down``, ``status``, ``demo``, and the one-shot commands a person
runs beside it); the services (``driftloop run SERVICE``, what a container runs) read only their
own settings, which know where the broker and the tracking server are and nothing of how the
local ones are started.

Unless they are set, ``KAFKA_BOOTSTRAP_SERVERS`` and ``MLFLOW_TRACKING_URI`` are derived from the
stack's ports here, so ``DRIFTLOOP_KAFKA_PORT=19092`` alone still moves the broker and every
client of it. The services started beside the stack
(:class:`~driftloop.loop.services.ServiceSupervisor`, for ``driftloop up`` and ``demo``) learn
the derived addresses from their environment: they get ``DRIFTLOOP_KAFKA_BOOTSTRAP_SERVERS``
and ``DRIFTLOOP_MLFLOW_TRACKING_URI`` set, and none of the stack's own settings. A service
started by hand finds the stack at its default ports, or where those two variables say.

Example:
    >>> import os
    >>> os.environ["DRIFTLOOP_KAFKA_PORT"] = "19092"
    >>> LocalStackSettings().kafka_bootstrap_servers
    '127.0.0.1:19092'
    >>> Settings().kafka_bootstrap_servers  # a service does not read the stack's ports
    '127.0.0.1:9092'
    >>> del os.environ["DRIFTLOOP_KAFKA_PORT"]
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from driftloop.settings import LOCAL_HOST, LOCAL_KAFKA_PORT, LOCAL_MLFLOW_PORT, Settings

__all__ = ["LocalStackSettings"]


class LocalStackSettings(Settings):
    """The shared settings, and the local stack's: ports, broker version and heap, backend store."""

    kafka_version: str = Field(
        "3.9.1", description="Apache Kafka broker version the local stack resolves from Maven."
    )
    kafka_port: int = Field(
        LOCAL_KAFKA_PORT,
        ge=1,
        le=65535,
        description="Local broker's client port; `KAFKA_BOOTSTRAP_SERVERS` follows it unless set.",
    )
    kafka_controller_port: int = Field(
        9093, ge=1, le=65535, description="Local broker's KRaft controller port."
    )
    kafka_heap: str = Field("512m", description="Local broker's JVM heap (-Xmx).")
    mlflow_port: int = Field(
        LOCAL_MLFLOW_PORT,
        ge=1,
        le=65535,
        description="Local MLflow server's port; `MLFLOW_TRACKING_URI` follows it unless set.",
    )
    mlflow_backend_store_uri: str = Field(
        "",
        description="Local server's backend store; empty means SQLite under the state folder.",
    )

    @model_validator(mode="after")
    def _derive_from_the_stack(self) -> Self:
        if self.kafka_port == self.kafka_controller_port:
            raise ValueError("kafka_port and kafka_controller_port must differ")
        # Set (by the environment, .env or an argument) wins; empty counts as unset.
        if "kafka_bootstrap_servers" not in self.model_fields_set:
            self.kafka_bootstrap_servers = self.kafka_address
        if "mlflow_tracking_uri" not in self.model_fields_set:
            self.mlflow_tracking_uri = self.mlflow_url
        if not self.mlflow_backend_store_uri:
            db = (self.state_dir / "mlflow" / "mlflow.db").resolve()
            self.mlflow_backend_store_uri = f"sqlite:///{db}"
        return self

    @property
    def kafka_address(self) -> str:
        """Where the local broker listens for clients."""
        return f"{LOCAL_HOST}:{self.kafka_port}"

    @property
    def mlflow_url(self) -> str:
        """Where the local MLflow server listens."""
        return f"http://{LOCAL_HOST}:{self.mlflow_port}"

    @property
    def mlflow_artifacts_destination(self) -> str:
        """Where the local MLflow server keeps artifacts: S3 when a bucket is set."""
        if self.s3_bucket:
            return f"s3://{self.s3_bucket}/{self.s3_prefix.strip('/')}/mlflow"
        return str((self.state_dir / "mlflow" / "artifacts").resolve())
