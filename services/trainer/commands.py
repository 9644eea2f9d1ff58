"""What the ``driftloop train``, ``rollback`` and ``models`` commands do.

- :func:`request_training` sends a ``manual`` trigger through the triggers topic: the running
  trainer takes it like any other (coalesced, deduplicated, judged by the gate).
- :func:`rollback` moves ``champion`` back to ``previous`` and publishes the model update that
  every serving replica swaps on (the CLI's, and the live evidence's: see
  :mod:`driftloop.services.trainer.live`).
- :func:`model_versions` lists versions with their aliases, holdout metrics and triggers.

Example:
    >>> trigger_id = request_training(TrainerSettings(), note="new labels")  # doctest: +SKIP
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, overload

from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer
from driftloop.registry import ModelRegistry, ModelVersionInfo
from driftloop.services.trainer import lineage
from driftloop.services.trainer.promotion import registered_update
from driftloop.settings import Settings

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


@overload
def rollback(
    settings: Settings, expected: None = None, evidence: Mapping[str, float] | None = None
) -> dict[str, Any]: ...
@overload
def rollback(
    settings: Settings, expected: str, evidence: Mapping[str, float] | None = None
) -> dict[str, Any] | None: ...
def rollback(
    settings: Settings, expected: str | None = None, evidence: Mapping[str, float] | None = None
) -> dict[str, Any] | None:
    """Point ``champion`` back at ``previous``; returns the MODEL_UPDATE event published (its
    reason ``rollback``).

    Parameters:
        settings: the model, the registry and the broker.
        expected: roll back only while this version is the champion (compare-and-set: the
            live evidence judged it); None when it has moved since, and nothing is done.
        evidence: the live evidence the rollback is decided on, carried by the event.

    Raises :class:`~driftloop.errors.RegistryError` when there is nothing to roll back to.
    """
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    name = settings.model_name
    if expected is not None and registry.champion(name) != expected:
        return None
    restored, rolled_back = registry.rollback(name)
    update = registered_update(
        registry, name, restored, previous=rolled_back, reason="rollback", evidence=evidence
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
