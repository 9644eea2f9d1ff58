"""The events that flow through driftloop's topics.

The JSON Schemas under ``schemas/`` are the contract (apps in any language produce and consume
them); the ``TypedDict`` classes here are their Python view, kept in step with the schemas by a
test. Events travel as plain dicts: validation is the schema's job, not a class constructor's.

Example:
    >>> event = new_event(request_id="r-1", label=1)
    >>> sorted(event)
    ['event_id', 'event_time', 'label', 'request_id', 'schema_version']
    >>> EventType.LABEL.key(event)
    b'r-1'
"""

# No `from __future__ import annotations` here: TypedDict must see NotRequired[...] itself.
import functools
import itertools
import math
import os
import time
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal, NotRequired, TypedDict

from driftloop.errors import SchemaViolation

SCHEMA_VERSION = 1

Scalar = float | int | str | bool | None


class EventType(Enum):
    """One event type: its schema file, the setting naming its topic, and its record key.

    The key keeps ordering where it matters: everything about one request lands on one
    partition, and so does everything about one model.
    """

    INFERENCE_REQUEST = ("inference_request", "inference_requests", "request_id")
    PREDICTION = ("prediction", "predictions", "request_id")
    LABEL = ("label", "labels", "request_id")
    LABELLED_EXAMPLE = ("labelled_example", "examples", "request_id")
    DRIFT = ("drift", "drift", "model_name")
    TRIGGER = ("trigger", "triggers", "model_name")
    MODEL_UPDATE = ("model_update", "model_updates", "model_name")
    TRAINING_RESULT = ("training_result", "training_results", "model_name")
    SWAP = ("swap", "swaps", "model_name")
    DEAD_LETTER = ("dead_letter", "dead_letters", None)
    CONTRACT = ("contract", "contracts", "model_name")
    DATA_QUALITY = ("data_quality", "data_quality", "model_name")
    ONLINE_MODEL = ("online_model", "online_models", "model_name")

    def __init__(self, schema_name: str, topic_setting: str, key_field: str | None) -> None:
        self.schema_name = schema_name
        self.topic_setting = topic_setting
        self.key_field = key_field

    def key(self, event: dict[str, Any]) -> bytes | None:
        """The Kafka record key for ``event``, or None to spread records over partitions."""
        if self.key_field is None or event.get(self.key_field) is None:
            return None
        return str(event[self.key_field]).encode()


def now() -> str:
    """The current time as the RFC 3339 string every ``event_time`` uses."""
    return format_time(time.time())


def format_time(seconds: float) -> str:
    """``seconds`` since the epoch as every ``event_time`` is written: RFC 3339, UTC,
    microseconds. The part down to the second is formatted once a second (serve stamps every
    prediction with it).

    Example:
        >>> format_time(1764064800.25)
        '2025-11-25T10:00:00.250000Z'
    """
    whole = math.floor(seconds)
    return f"{_second(whole)}.{int((seconds - whole) * 1e6):06d}Z"


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def epoch(event_time: str) -> float:
    """Seconds since the epoch of an RFC 3339 ``event_time``."""
    return parse_time(event_time).timestamp()


def parse_time(event_time: str) -> datetime:
    """An RFC 3339 time (as the schemas' ``date-time`` accepts it) as an aware datetime.

    Python's parser refuses two forms RFC 3339 allows, which would otherwise pass validation
    and then fail whatever reads the time: a lower-case ``z``, and a leap second (``:60``),
    folded into the next second as POSIX time does.

    Example:
        >>> parse_time("2016-12-31T23:59:60.5z").isoformat()
        '2017-01-01T00:00:00.500000+00:00'
    """
    try:
        return datetime.fromisoformat(event_time)
    except ValueError:
        text = event_time[:-1] + "Z" if event_time.endswith("z") else event_time
        leap = text[16:19] == ":60"
        if leap:
            text = text[:17] + "59" + text[19:]
        return datetime.fromisoformat(text) + timedelta(seconds=leap)


def ahead_of_clock(event_time: str, now: float, allowed_s: float) -> SchemaViolation | None:
    """Why an event timed more than ``allowed_s`` past ``now`` is refused; None if it is not.

    Consumers that keep an event-time clock (ingest's join, monitor's windows) refuse such an
    event (``max_event_ahead_s``): one producer's clock far ahead would move theirs there.

    Example:
        >>> ahead_of_clock("2026-11-22T11:00:00Z", epoch("2026-11-22T10:00:00Z"), 600).rule
        'ahead_of_clock'
    """
    ahead = epoch(event_time) - now
    if ahead <= allowed_s:
        return None
    return SchemaViolation(
        "event_time",
        "ahead_of_clock",
        f"event_time {event_time} is {ahead:.0f} s ahead of the consumer's clock; at most "
        f"{allowed_s:.0f} s is allowed (DRIFTLOOP_MAX_EVENT_AHEAD_S)",
    )


_ID_PREFIX = os.urandom(8).hex()  # this process's, random: ids differ across processes
_ID_COUNT = itertools.count()


def new_request_id() -> str:
    """A new request id, 32 hex digits: this process's random prefix and a count (unique
    without a system call per request, which a random id costs). serve gives one to a request
    that names none; an app may make its own with it (:mod:`driftloop.client`).

    Example:
        >>> first, second = new_request_id(), new_request_id()
        >>> len(first), first[:16] == second[:16], first != second
        (32, True, True)
    """
    return f"{_ID_PREFIX}{next(_ID_COUNT):016x}"


def new_event(**fields: Any) -> dict[str, Any]:
    """An event with a fresh ``event_id`` and ``event_time`` around ``fields``.

    Parameters:
        fields: the type's own fields; ``event_time`` may be given to back-date an event.
            Nothing is validated here: the producer checks the event against its schema.
    """
    envelope = {
        "schema_version": SCHEMA_VERSION,
        "event_id": str(uuid.uuid4()),
        "event_time": now(),
    }
    return envelope | fields


class Envelope(TypedDict):
    schema_version: int
    event_id: str
    event_time: str


class InferenceRequest(Envelope):
    request_id: str
    model_name: str
    features: NotRequired[dict[str, Scalar]]  # one record, or
    records: NotRequired[list[dict[str, Scalar]]]  # several
    source: NotRequired[str]
    reply_to: NotRequired[str]


class Shadow(TypedDict):
    role: Literal["champion", "previous", "challenger"]
    model_version: str
    prediction: Scalar


class Prediction(Envelope):
    request_id: str
    model_name: str
    model_version: str
    features: dict[str, Scalar]
    prediction: Scalar
    scores: NotRequired[dict[str, float]]
    latency_ms: NotRequired[float]
    answered_by: NotRequired[Literal["champion", "online"]]
    shadows: NotRequired[list[Shadow]]


class Label(Envelope):
    request_id: str
    label: Scalar
    source: NotRequired[str]


class LabelledExample(Envelope):
    request_id: str
    model_name: str
    model_version: str
    features: dict[str, Scalar]
    prediction: Scalar
    label: Scalar
    prediction_time: str
    label_time: str
    answered_by: NotRequired[Literal["champion", "online"]]
    shadows: NotRequired[list[Shadow]]


class Window(TypedDict):
    kind: Literal["count", "time"]
    start: str
    end: str
    size: int


class FeatureDrift(TypedDict):
    feature: str
    statistic: str
    score: float
    threshold: float
    p_value: NotRequired[float | None]
    drifted: bool


class Drift(Envelope):
    model_name: str
    model_version: str
    window: Window
    features: list[FeatureDrift]
    severity: Literal["none", "low", "medium", "high"]
    report_uri: NotRequired[str]


class Trigger(Envelope):
    trigger_id: str
    model_name: str
    model_version: str | None
    reason: Literal["drift", "data_arrival", "schedule", "manual"]
    evidence: dict[str, Any]
    window: NotRequired[Window]
    drift_event_id: NotRequired[str]


# A trigger whose ``evidence.action`` is this asks the trainer to recall an earlier champion
# that already knows the new concept, and to fit nothing (see services/trainer/recall.py).
RECALL = "recall"


def is_recall(trigger: Mapping[str, Any]) -> bool:
    """Whether ``trigger`` asks for a recall rather than a fit."""
    evidence = trigger.get("evidence")
    return isinstance(evidence, Mapping) and evidence.get("action") == RECALL


def scored_by(event: Mapping[str, Any], role: str) -> tuple[str, Scalar] | None:
    """``(version, prediction)`` of the model in ``role`` on a prediction or labelled example,
    or None when it was not scored.

    ``champion`` is the registered champion whether it answered or was scored in shadow while
    the online model answered; ``online`` is the answer of the online model; ``previous`` and
    ``challenger`` are shadows (see the prediction schema's ``shadows``).

    Example:
        >>> event = {"model_version": "online.7", "prediction": 1, "answered_by": "online",
        ...          "shadows": [{"role": "champion", "model_version": "3", "prediction": 0}]}
        >>> scored_by(event, "champion"), scored_by(event, "online"), scored_by(event, "previous")
        (('3', 0), ('online.7', 1), None)
    """
    answered_by = event.get("answered_by", "champion")
    if role == answered_by:
        return str(event["model_version"]), event["prediction"]
    for shadow in event.get("shadows") or ():
        if shadow["role"] == role:
            return str(shadow["model_version"]), shadow["prediction"]
    return None


class ModelUpdate(Envelope):
    model_name: str
    model_version: str
    run_id: str
    trigger_id: str | None
    alias: str
    previous_version: str | None
    metrics: dict[str, float]
    reason: NotRequired[Literal["promotion", "rollback"]]
    evidence: NotRequired[dict[str, float]]


class TrainingResult(Envelope):
    model_name: str
    trigger_id: str | None
    outcome: Literal["promoted", "challenger", "rejected", "failed", "skipped"]
    reason: str
    run_id: str | None
    model_version: str | None
    champion_version: str | None
    metrics: dict[str, float]
    champion_metrics: dict[str, float]
    duration_s: NotRequired[float]


class Swap(Envelope):
    model_name: str
    model_version: str
    previous_version: str | None
    replica: str
    outcome: Literal["swapped", "failed"]
    error: NotRequired[str]
    duration_s: NotRequired[float]


class RecordOrigin(TypedDict):
    topic: str
    partition: int
    offset: int


class ViolationDetail(TypedDict):
    message: str
    field: str
    rule: str


class DeadLetter(Envelope):
    service: str
    origin: RecordOrigin
    key_b64: str | None
    payload_b64: str
    error: ViolationDetail
    model_name: NotRequired[str]


class Contract(Envelope):
    model_name: str
    version: int
    source: Literal["declared", "inferred", "card"]
    contract: dict[str, Any]


class QualityWindow(TypedDict):
    size: int
    invalid: int
    invalid_by_rule: dict[str, int]
    null_share: dict[str, float]
    unknown_category_share: dict[str, float]
    label_balance: dict[str, float]


class DataQuality(Envelope):
    model_name: str
    status: Literal["degraded", "recovered"]
    invalid_share: float
    threshold: float
    holding_triggers: bool
    window: QualityWindow


class OnlineModel(Envelope):
    model_name: str
    online_version: str
    snapshot_uri: str | None
    answerer: Literal["champion", "online"]
    champion_version: str | None
    updates: int
    evidence: dict[str, float]


EVENT_CLASSES: dict[EventType, type] = {
    EventType.INFERENCE_REQUEST: InferenceRequest,
    EventType.PREDICTION: Prediction,
    EventType.LABEL: Label,
    EventType.LABELLED_EXAMPLE: LabelledExample,
    EventType.DRIFT: Drift,
    EventType.TRIGGER: Trigger,
    EventType.MODEL_UPDATE: ModelUpdate,
    EventType.TRAINING_RESULT: TrainingResult,
    EventType.SWAP: Swap,
    EventType.DEAD_LETTER: DeadLetter,
    EventType.CONTRACT: Contract,
    EventType.DATA_QUALITY: DataQuality,
    EventType.ONLINE_MODEL: OnlineModel,
}
