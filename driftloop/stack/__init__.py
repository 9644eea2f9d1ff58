"""The local stack: a Kafka broker, the topics, and an MLflow server, started by the repo.

Its settings (ports, the broker's version and heap, MLflow's backend store) are
:class:`~driftloop.stack.settings.LocalStackSettings`, which no service reads.

Example:
    >>> stack = LocalStack(LocalStackSettings())
    >>> stack.up()  # doctest: +SKIP
    {'kafka': 'started', 'topics': {...}, 'mlflow': 'started'}
"""

from __future__ import annotations

from typing import Any

from driftloop.messaging import ensure_topics
from driftloop.stack.kafka import KafkaBroker
from driftloop.stack.mlflow import MlflowServer
from driftloop.stack.settings import LocalStackSettings

__all__ = ["KafkaBroker", "LocalStack", "LocalStackSettings", "MlflowServer"]


class LocalStack:
    """Everything the services need, on this machine, with its state in ``state_dir``."""

    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.kafka = KafkaBroker(settings)
        self.mlflow = MlflowServer(settings)

    def up(self) -> dict[str, Any]:
        """Start what is not running (broker first: MLflow does not need it, services do)."""
        kafka = self.kafka.up()
        topics = ensure_topics(self.settings)
        mlflow = self.mlflow.up()
        return {"kafka": kafka, "topics": topics, "mlflow": mlflow}

    def down(self) -> dict[str, str]:
        mlflow = self.mlflow.down()
        kafka = self.kafka.down()
        return {
            name: "stopped" if was else "not running"
            for name, was in (("mlflow", mlflow), ("kafka", kafka))
        }

    def status(self) -> dict[str, Any]:
        cluster = self.kafka.describe()
        return {
            "kafka": {
                "address": self.kafka.address,
                "version": self.kafka.version,
                "pid": self.kafka.process.pid(),
                "answering": cluster is not None,
                "cluster_id": (cluster or {}).get("cluster_id"),
            },
            "mlflow": {
                "url": self.mlflow.url,
                "pid": self.mlflow.process.pid(),
                "answering": self.mlflow.ready(),
                "artifacts": self.settings.mlflow_artifacts_destination,
            },
        }
