"""Typed settings shared by every driftloop process.

Every knob is an environment variable named ``DRIFTLOOP_<FIELD>``; a ``.env`` file in the
working directory is read too. A service that needs more knobs subclasses :class:`Settings`, so
one prefix and one table (``driftloop settings --markdown``, copied into the README) cover all.

What only the local development stack needs (its ports, the broker's version and heap, MLflow's
backend store) is not here but in :class:`~driftloop.stack.settings.LocalStackSettings`. A
service knows just where the broker and the tracking server are; by default, where the local
stack puts them.

Example:
    >>> settings = Settings()
    >>> settings.kafka_bootstrap_servers, settings.mlflow_tracking_uri
    ('127.0.0.1:9092', 'http://127.0.0.1:5000')
    >>> hasattr(Settings(kafka_port=19092), "kafka_port")  # the local stack's, ignored here
    False
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from driftloop.events import EventType

ENV_PREFIX = "DRIFTLOOP_"
REPO_ROOT = Path(__file__).resolve().parents[1]

# Where the local stack's broker and tracking server listen unless told otherwise; a client
# (every service) connects there unless KAFKA_BOOTSTRAP_SERVERS / MLFLOW_TRACKING_URI say more.
LOCAL_HOST = "127.0.0.1"
LOCAL_KAFKA_PORT = 9092
LOCAL_MLFLOW_PORT = 5000
# Settings whose empty value means "not set" (their default), as it did when they were derived.
_EMPTY_IS_UNSET = ("kafka_bootstrap_servers", "mlflow_tracking_uri")


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "driftloop"


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"


class Settings(BaseSettings):
    """The settings every service shares: where Kafka and MLflow are, topics, contracts."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    # Paths
    state_dir: Path = Field(
        Path(".driftloop"),
        description="Folder for the local stack's data, logs and pid files (git-ignored).",
    )
    cache_dir: Path = Field(
        default_factory=_user_cache,
        description="Folder for downloads kept across clones: the local broker's jars, the "
        "deploy tests' tools.",
        json_schema_extra={"shown_default": "~/.cache/driftloop"},
    )
    schemas_dir: Path | None = Field(
        None,
        description="Folder holding the event JSON Schemas; unset, those installed with the "
        "package (the repo's `schemas/`).",
    )

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every driftloop process."
    )
    log_format: LogFormat = Field(
        LogFormat.JSON, description="`json` (one object per line) or `text`."
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(
        f"{LOCAL_HOST}:{LOCAL_KAFKA_PORT}",
        description="Brokers clients connect to; unset, the local stack's broker (at its "
        "`KAFKA_PORT`, below, for the `driftloop` commands and the services they start).",
    )
    kafka_client_timeout_ms: int = Field(
        10_000, ge=100, description="How long a client waits for the first broker answer."
    )
    kafka_max_poll_records: int = Field(
        500, ge=1, description="Most records a consumer takes in one batch."
    )
    kafka_max_event_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="Largest record a consumer accepts; larger ones are dead-lettered.",
    )
    kafka_linger_ms: int = Field(
        5, ge=0, description="Producer batching delay; trades a little latency for throughput."
    )
    max_event_ahead_s: float = Field(
        3600,
        gt=0,
        description="How far past a consumer's clock an event_time may be; a later one is "
        "dead-lettered (it would move event-time clocks: expire joins, close windows).",
    )

    # Topics
    topic_partitions: int = Field(3, ge=1, description="Partitions of each topic created.")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of each topic created."
    )
    topic_inference_requests: str = Field(
        "driftloop.inference-requests", description="Inference requests sent over Kafka."
    )
    topic_predictions: str = Field(
        "driftloop.predictions", description="Every prediction serve made."
    )
    topic_labels: str = Field("driftloop.labels", description="True labels sent by apps.")
    topic_examples: str = Field(
        "driftloop.examples", description="Labelled examples (prediction joined with label)."
    )
    topic_drift: str = Field("driftloop.drift", description="Drift events, for alerting.")
    topic_triggers: str = Field("driftloop.triggers", description="Retraining triggers.")
    topic_model_updates: str = Field(
        "driftloop.model-updates", description="Promotions that serving replicas swap to."
    )
    topic_training_results: str = Field(
        "driftloop.training-results",
        description="Every fit's outcome: promoted, rejected by the gate, failed.",
    )
    topic_swaps: str = Field(
        "driftloop.swaps", description="Each serving replica's swaps and failed loads."
    )
    topic_dead_letters: str = Field(
        "driftloop.dead-letters", description="Events that failed validation, with the reason."
    )
    topic_contracts: str = Field(
        "driftloop.contracts",
        description="Every model's feature contract, each version once (one partition, kept "
        "forever: the first record of a version wins).",
    )
    topic_data_quality: str = Field(
        "driftloop.data-quality",
        description="Data-quality events: a model's inputs degraded (triggers held) or recovered.",
    )
    topic_online_models: str = Field(
        "driftloop.online-models",
        description="The online model's snapshots and which model answers (compacted: the "
        "latest per model is the state every serving replica follows).",
    )

    # Feature contracts (driftloop/contract.py)
    contract_file: Path | None = Field(
        None,
        description="A declared contract (JSON) that ingest registers at start, as a new "
        "version when its terms differ from the model's latest; unset infers one.",
    )
    contract_sample: int = Field(
        1000,
        ge=10,
        description="Labelled examples a contract is inferred from, when none is declared.",
    )
    contract_minority_share: float = Field(
        0.02,
        gt=0,
        lt=0.5,
        description="Share of the sample under which a feature's type, a null or a feature is "
        "taken for bad data when a contract is inferred (those events are dead-lettered).",
    )
    contract_min_class_share: float = Field(
        0.01,
        ge=0,
        lt=0.5,
        description="Share of the sample's labels under which a value is not inferred as a class.",
    )
    contract_max_wait_s: float = Field(
        30.0,
        gt=0,
        description="Longest a new model's examples are held for inference when fewer than "
        "`CONTRACT_SAMPLE` come; then at least 50 must, and the contract is inferred from them.",
    )
    contract_refresh_s: float = Field(
        5.0, gt=0, description="How often ingest looks for a new contract version."
    )

    # MLflow
    mlflow_tracking_uri: str = Field(
        f"http://{LOCAL_HOST}:{LOCAL_MLFLOW_PORT}",
        description="MLflow tracking server; unset, the local stack's (at its `MLFLOW_PORT`, "
        "below, for the `driftloop` commands and the services they start).",
    )
    model_name: str = Field("driftloop-model", description="Registered model name.")

    # S3 (artifacts and, later, the example store); credentials come from the usual AWS_* vars.
    s3_endpoint_url: str = Field(
        "", description="S3-compatible endpoint; empty means AWS's own when a bucket is set."
    )
    s3_bucket: str = Field(
        "", description="Bucket for MLflow artifacts; empty keeps them on the local disk."
    )
    s3_prefix: str = Field("driftloop", description="Key prefix inside the bucket.")

    # The example store: ingest writes it, the trainer reads windows from it, the monitor keeps
    # its reports there.
    store_uri: str = Field(
        "",
        description="Example store: a folder, or `s3://bucket/prefix`; empty means "
        "`<STATE_DIR>/example-store`, or the S3 bucket when `S3_BUCKET` is set.",
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, data: Any) -> Any:
        """An empty endpoint is the default (or, for the local stack, derived from its ports)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (k in _EMPTY_IS_UNSET and v == "")}
        return data

    def topic_for(self, event_type: EventType) -> str:
        """The topic that carries ``event_type``."""
        return str(getattr(self, f"topic_{event_type.topic_setting}"))

    def topics(self) -> dict[EventType, str]:
        """Every event type with its topic."""
        return {event_type: self.topic_for(event_type) for event_type in EventType}


SERVICES = ("ingest", "monitor", "trainer", "serve")


@functools.cache
def service_settings() -> dict[str, type[Settings]]:
    """Each service's settings class, by service name.

    Imported when asked for, never at import time: the services build on this package.
    """
    found: dict[str, type[Settings]] = {}
    for service in SERVICES:
        module = importlib.import_module(f"driftloop.services.{service}.settings")
        (cls,) = (
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Settings)
            and value.__module__ == module.__name__
        )
        found[service] = cls
    return found


def as_environment(values: Settings | Mapping[str, Any]) -> dict[str, str]:
    """Settings (or ``{field: value}``) as the ``DRIFTLOOP_<FIELD>`` variables that give them."""
    if isinstance(values, Settings):
        values = values.model_dump(mode="json")
    # An unset optional setting (None) is left out: its absence is what gives it.
    return {
        f"{ENV_PREFIX}{name.upper()}": str(value)
        for name, value in values.items()
        if value is not None
    }


def settings_table(*classes: type[BaseSettings], skip: Iterable[str] = ()) -> str:
    """A markdown table of every setting in ``classes`` (later classes add their own fields),
    but those named in ``skip`` (a subclass's table without its base's fields)."""
    rows = ["| Variable | Type | Default | Meaning |", "| --- | --- | --- | --- |"]
    seen: set[str] = set(skip)
    for cls in classes:
        for name, field in cls.model_fields.items():
            if name in seen:
                continue
            seen.add(name)
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if "shown_default" in extra:
                default = f"`{extra['shown_default']}`"
            else:
                value = field.default
                value = value.value if isinstance(value, StrEnum) else value
                default = f"`{value}`" if value != "" else "(empty)"
            kind = _type_name(field.annotation).replace("|", "\\|")
            env = f"`{ENV_PREFIX}{name.upper()}`"
            rows.append(f"| {env} | {kind} | {default} | {field.description or ''} |")
    return "\n".join(rows)


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(str(arg) for arg in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return " | ".join(member.value for member in annotation)
    return getattr(annotation, "__name__", str(annotation))
