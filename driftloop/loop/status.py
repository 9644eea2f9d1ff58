"""`driftloop status`: where the loop stands, read from the broker, the registry and the services.

- the stack (broker, MLflow) and each service (pid, readiness);
- the champion version and the holdout metrics it was promoted with (its model card);
- the last drift event, trigger, training result, model update and swap (the newest record of
  each topic);
- each service's consumer lag: records on its topics its group has not committed yet.

Nothing here writes: every figure comes from what the loop already publishes.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

import orjson
from kafka import TopicPartition

from driftloop.contract import FeatureContract, summary
from driftloop.events import EventType, epoch, is_recall
from driftloop.loop.services import ServiceSupervisor
from driftloop.messaging import kafka_admin, kafka_consumer
from driftloop.settings import Settings, service_settings

if TYPE_CHECKING:
    from driftloop.stack.settings import LocalStackSettings

LAST_OF = {
    "drift": EventType.DRIFT,
    "trigger": EventType.TRIGGER,
    "fit": EventType.TRAINING_RESULT,
    "promotion": EventType.MODEL_UPDATE,
    "swap": EventType.SWAP,
}


def last_events(settings: Settings, model_name: str | None = None) -> dict[str, Any]:
    """The newest event of each loop topic (of ``model_name`` when given), or None."""
    consumer = kafka_consumer(settings, "status", None, consumer_timeout_ms=1000)
    found: dict[str, Any] = {}
    try:
        for name, event_type in LAST_OF.items():
            topic = settings.topic_for(event_type)
            partitions = [
                TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                found[name] = None
                continue
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions)
            for partition in partitions:
                # The last few records of each partition: the newest of the model is among them.
                consumer.seek(partition, max(0, ends[partition] - 20))
            newest: dict[str, Any] | None = None
            remaining = sum(min(20, ends[p]) for p in partitions)
            while remaining > 0:
                batch = consumer.poll(timeout_ms=1000)
                if not batch:
                    break
                for records in batch.values():
                    remaining -= len(records)
                    for record in records:
                        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                            event = orjson.loads(record.value)
                            if model_name and event.get("model_name") != model_name:
                                continue
                            if newest is None or epoch(event["event_time"]) > epoch(
                                newest["event_time"]
                            ):
                                newest = event
            found[name] = newest
    finally:
        consumer.close()
    return found


def consumer_lag(settings: Settings) -> dict[str, int | None]:
    """Uncommitted records per service group, summed over the partitions it has committed on."""
    groups: dict[str, str] = {}
    for service, cls in service_settings().items():
        merged = cls.model_validate(settings.model_dump())
        for name in cls.model_fields:
            if name.endswith("_group_id"):
                groups[service] = str(getattr(merged, name))
    admin = kafka_admin(settings, "status")
    consumer = kafka_consumer(settings, "status", None)
    lags: dict[str, int | None] = {}
    try:
        for service, group in groups.items():
            try:
                committed = admin.list_consumer_group_offsets(group)
            except Exception:  # an unknown group, or a broker error: no figure
                lags[service] = None
                continue
            if not committed:
                lags[service] = None
                continue
            ends = consumer.end_offsets(list(committed))
            lags[service] = sum(
                max(0, ends[tp] - meta.offset) for tp, meta in committed.items() if meta.offset >= 0
            )
    finally:
        consumer.close()
        admin.close()
    return lags


def champion(settings: Settings) -> dict[str, Any] | None:
    """The champion's version and the metrics it was promoted with, or None."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the registry imports TensorFlow
    from driftloop.registry import ModelRegistry

    registry = ModelRegistry(settings.mlflow_tracking_uri)
    version = registry.champion(settings.model_name)
    if version is None:
        return None
    metrics: dict[str, float] = {}
    with contextlib.suppress(Exception):  # a version registered without a card
        metrics = registry.model_card(settings.model_name, version).metrics
    return {"model_name": settings.model_name, "version": version, "metrics": metrics}


def contract(settings: Settings) -> dict[str, Any] | None:
    """The model's contract in force (declared or inferred), or None while it has none."""
    from driftloop.contract_log import ContractLog

    log = ContractLog(settings, "status")
    try:
        found = log.latest(settings.model_name)
    finally:
        log.close()
    return None if found is None else found.model_dump(mode="json")


def loop_status(
    settings: LocalStackSettings, supervisor: ServiceSupervisor | None = None
) -> dict[str, Any]:
    """Everything ``driftloop status`` shows, as a dict."""
    from driftloop.stack import LocalStack

    stack = LocalStack(settings).status()
    supervisor = supervisor or ServiceSupervisor(settings)
    status: dict[str, Any] = {"stack": stack, "services": supervisor.status()}
    if stack["kafka"]["answering"]:
        status["last"] = last_events(settings, settings.model_name)
        status["consumer_lag"] = consumer_lag(settings)
        status["contract"] = contract(settings)
    if stack["mlflow"]["answering"]:
        status["champion"] = champion(settings)
    return status


def describe(status: dict[str, Any]) -> list[str]:
    """``status`` as lines for the terminal."""
    lines = []
    for name, fields in status["stack"].items():
        where = fields.get("address") or fields.get("url")
        lines.append(f"{name}: {'up' if fields['answering'] else 'down'} ({where})")
    for name, fields in status["services"].items():
        state = "ready" if fields["ready"] else ("running" if fields["pid"] else "down")
        lines.append(f"{name}: {state} ({fields['url']}, pid {fields['pid'] or '-'})")
    best = status.get("champion")
    if best:
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(best["metrics"].items()))
        lines.append(
            f"champion: {best['model_name']} v{best['version']} ({metrics or 'no metrics'})"
        )
    elif "champion" in status:
        lines.append("champion: none yet")
    if status.get("contract"):
        lines += summary(FeatureContract.model_validate(status["contract"]))
    elif "contract" in status:
        lines.append("contract: none yet (inferred from the first examples)")
    for name, event in (status.get("last") or {}).items():
        if event is None:
            lines.append(f"last {name}: none")
            continue
        detail = {
            "drift": lambda e: f"severity {e.get('severity')} on v{e.get('model_version')}",
            "trigger": lambda e: (
                f"{e.get('reason')}{', recall' if is_recall(e) else ''} ({e.get('trigger_id')})"
            ),
            "fit": lambda e: f"{e.get('outcome')}: {e.get('reason')}",
            "promotion": lambda e: f"v{e.get('previous_version')} → v{e.get('model_version')}",
            "swap": lambda e: f"{e.get('replica')} {e.get('outcome')} v{e.get('model_version')}",
        }[name](event)
        lines.append(f"last {name}: {event['event_time']}  {detail}")
    for service, lag in (status.get("consumer_lag") or {}).items():
        lines.append(f"consumer lag {service}: {'-' if lag is None else lag}")
    return lines
