"""Every event schema against its valid and invalid examples, and against events.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from driftloop.errors import SchemaViolation
from driftloop.events import EVENT_CLASSES, EventType, new_event
from driftloop.schemas import EventSchemas, dumps
from driftloop.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "schemas"
EXAMPLES = SCHEMAS / "examples"


def load(path: Path) -> list[Any]:
    return list(json.loads(path.read_text()))


def cases(kind: str) -> list[Any]:
    return [
        pytest.param(event_type, case, id=f"{event_type.schema_name}-{i}")
        for event_type in EventType
        for i, case in enumerate(load(EXAMPLES / f"{event_type.schema_name}.{kind}.json"))
    ]


@pytest.fixture(scope="module")
def schemas() -> EventSchemas:
    return EventSchemas(SCHEMAS)


def test_there_is_one_schema_and_two_example_files_per_event_type() -> None:
    names = {event_type.schema_name for event_type in EventType}
    assert {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")} == names
    for name in names:
        assert load(EXAMPLES / f"{name}.valid.json"), f"{name} has no valid example"
        assert load(EXAMPLES / f"{name}.invalid.json"), f"{name} has no invalid example"


@pytest.mark.parametrize(("event_type", "event"), cases("valid"))
def test_valid_examples_pass(schemas: EventSchemas, event_type: EventType, event: dict) -> None:
    schemas.validate(event_type, event)


@pytest.mark.parametrize(("event_type", "case"), cases("invalid"))
def test_invalid_examples_fail_naming_field_and_rule(
    schemas: EventSchemas, event_type: EventType, case: dict
) -> None:
    with pytest.raises(SchemaViolation) as caught:
        schemas.validate(event_type, case["event"])
    expected = case["expect"]
    assert (caught.value.field, caught.value.rule) == (expected["field"], expected["rule"])
    assert expected["field"] in str(caught.value), case["why"]


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.schema_name)
def test_every_schema_carries_the_envelope(schemas: EventSchemas, event_type: EventType) -> None:
    schema = schemas.schema(event_type)
    assert {"schema_version", "event_id", "event_time"} <= set(schema["required"])
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("event_type", "ids"),
    [
        (EventType.INFERENCE_REQUEST, {"request_id"}),
        (EventType.PREDICTION, {"request_id", "model_version"}),
        (EventType.LABEL, {"request_id"}),
        (EventType.LABELLED_EXAMPLE, {"request_id", "model_version"}),
        (EventType.DRIFT, {"model_version"}),
        (EventType.TRIGGER, {"trigger_id", "model_version"}),
        (EventType.MODEL_UPDATE, {"model_version", "run_id", "trigger_id"}),
    ],
    ids=lambda value: getattr(value, "schema_name", ""),
)
def test_schemas_require_the_ids_that_tie_the_loop(
    schemas: EventSchemas, event_type: EventType, ids: set[str]
) -> None:
    assert ids <= set(schemas.schema(event_type)["required"])


@pytest.mark.parametrize("event_type", list(EventType), ids=lambda t: t.schema_name)
def test_typed_dicts_match_the_schemas(schemas: EventSchemas, event_type: EventType) -> None:
    schema = schemas.schema(event_type)
    cls = EVENT_CLASSES[event_type]
    assert set(cls.__annotations__) | _inherited(cls) == set(schema["properties"])
    assert set(cls.__required_keys__) == set(schema["required"])


def _inherited(cls: type) -> set[str]:
    return {key for base in cls.__mro__[1:] for key in getattr(base, "__annotations__", {})}


def test_decode_rejects_bytes_that_are_not_json(schemas: EventSchemas) -> None:
    with pytest.raises(SchemaViolation) as caught:
        schemas.decode(EventType.LABEL, b"\xff not json")
    assert (caught.value.field, caught.value.rule) == ("$", "json")


def test_decode_rejects_json_that_is_not_an_object(schemas: EventSchemas) -> None:
    with pytest.raises(SchemaViolation) as caught:
        schemas.decode(EventType.LABEL, b"[1, 2]")
    assert (caught.value.field, caught.value.rule) == ("$", "type")
    assert "list" in caught.value.message


def test_new_event_round_trips_through_the_wire_form(schemas: EventSchemas) -> None:
    event = new_event(request_id="r-1", label="churned")
    assert schemas.decode(EventType.LABEL, dumps(event)) == event
    assert new_event(label=1)["event_id"] != new_event(label=1)["event_id"]


def test_record_keys_keep_one_request_on_one_partition() -> None:
    prediction = {"request_id": "r-9", "model_name": "m"}
    assert EventType.PREDICTION.key(prediction) == EventType.LABEL.key(prediction) == b"r-9"
    assert EventType.MODEL_UPDATE.key(prediction) == b"m"
    assert EventType.DEAD_LETTER.key(prediction) is None
