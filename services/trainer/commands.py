"""What the ``driftloop train``, ``rollback`` and ``models`` commands do.

- :func:`request_training` sends a ``manual`` trigger through the triggers topic: the running
  trainer takes it like any other (coalesced, deduplicated, judged by the gate).
- :func:`rollback` moves ``champion`` back to ``previous`` and publishes the model update that
  every serving replica swaps on.
- :func:`model_versions` lists versions with their aliases, holdout metrics and triggers.

Example:
    >>> trigger_id = request_training(TrainerSettings(), note="new labels")  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from typing import Any

from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer
from driftloop.registry import CHAMPION, ModelRegistry, ModelVersionInfo
from driftloop.settings import Settings
from services.trainer import lineage

TIMEOUT_S = 30.0


def request_training(
    settings: Settings, note: str = "", trigger_id: str | None = None
) -> dict[str, Any]:
    """Send a manual trigger for ``settings.model_name``; returns the event once Kafka has it."""
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    trigger = new_event(
        trigger_id=trigger_id or f"manual-{uuid.uuid4()}",
        model_name=settings.model_name,
        model_version=registry.champion(settings.model_name),
        reason="manual",
        evidence={"source": "driftloop train"} | ({"note": note} if note else {}),
    )
    with EventProducer(settings, service="trainer-cli") as producer:
        producer.send(EventType.TRIGGER, trigger).get(timeout=TIMEOUT_S)
    return trigger


def rollback(settings: Settings) -> dict[str, Any]:
    """Point ``champion`` back at ``previous``; returns the MODEL_UPDATE event published.

    Raises :class:`~driftloop.errors.RegistryError` when there is nothing to roll back to.
    """
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    name = settings.model_name
    restored, rolled_back = registry.rollback(name)
    run_id = registry.run_id(name, restored)
    metrics = registry.client.get_run(run_id).data.metrics
    update = new_event(
        model_name=name,
        model_version=restored,
        run_id=run_id,
        trigger_id=None,
        alias=CHAMPION,
        previous_version=rolled_back,
        metrics={
            k.removeprefix("holdout_"): v for k, v in metrics.items() if k.startswith("holdout_")
        },
    )
    with EventProducer(settings, service="trainer-cli") as producer:
        producer.send(EventType.MODEL_UPDATE, update).get(timeout=TIMEOUT_S)
    return update


def model_versions(settings: Settings, limit: int = 20) -> list[ModelVersionInfo]:
    return ModelRegistry(settings.mlflow_tracking_uri).versions(settings.model_name, limit)


def versions_table(versions: list[ModelVersionInfo]) -> str:
    """The versions as ``driftloop models`` prints them."""
    rows = [("version", "aliases", "outcome", "holdout metrics", "contract", "excluded",
             "trigger", "run")]  # fmt: skip
    for item in versions:
        metrics = ", ".join(
            f"{k.removeprefix('holdout_')}={v:.4g}"
            for k, v in sorted(item.metrics.items())
            if k.startswith("holdout_")
        )
        rows.append(
            (
                item.version,
                ",".join(item.aliases) or "-",
                item.tags.get("driftloop.outcome", "-"),
                metrics or "-",
                item.tags.get(lineage.CONTRACT, "-"),
                f"{item.metrics['excluded_rows']:.0f}" if "excluded_rows" in item.metrics else "-",
                item.tags.get("driftloop.trigger_id", "-")[:40],
                (item.run_id or "-")[:12],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )
