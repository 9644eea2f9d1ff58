"""The fast checks derived from the schemas: never looser than the schemas, same answers.

Every event of the examples, and thousands of mutations of the valid ones (fields dropped,
added, or given values of every JSON kind, edge lengths, bad times, nested ones too), are
decoded twice: by :meth:`EventSchemas.decode` (fast check first) and by fastjsonschema alone.
The answers must be the same dict or the same violation, and whatever the fast check accepts
the schema must accept.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from driftloop.errors import SchemaViolation
from driftloop.events import EventType, epoch
from driftloop.schema_types import fast_decoder, is_date_time
from driftloop.schemas import EventSchemas
from driftloop.settings import REPO_ROOT

SCHEMAS = EventSchemas()
EXAMPLES = REPO_ROOT / "schemas/examples"
TYPES = [t for t in EventType if (EXAMPLES / f"{t.schema_name}.valid.json").exists()]
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 0.5, -2.5, 1e308, 2**70, "", "x", "x" * 300,
    "2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123456+01:00", "2026-13-01T00:00:00Z",
    "2026-11-22 10:00:00", "2016-12-31T23:59:60z", "2026-11-22t10:00:00.5-0130",
    "2026-11-22T10:00:00.Z", "2026-11-22T24:00:00Z", "2026-11-22T10:00:00", "2026-11-22",
    "2026-11-22T10:00:00.\u0661Z", "\u0662026-11-22T10:00:00Z", "2026-11-22T10:00:00+01",
    [], [1], ["a"], {}, {"k": 1}, {"": 1}, {"k": None}, {"k": [1]},
]  # fmt: skip


def examples(event_type: EventType, kind: str) -> list[dict[str, Any]]:
    path = EXAMPLES / f"{event_type.schema_name}.{kind}.json"
    documents = json.loads(path.read_text())
    return [d["event"] if kind == "invalid" else d for d in documents]


def slow(event_type: EventType, payload: bytes) -> dict[str, Any] | tuple[str, str]:
    """fastjsonschema alone: the event, or the violation's (field, rule)."""
    try:
        event = orjson.loads(payload)
        if not isinstance(event, dict):
            return ("$", "type")
        SCHEMAS.validate(event_type, event)
        return dict(event)
    except orjson.JSONDecodeError:
        return ("$", "json")
    except SchemaViolation as violation:
        return (violation.field, violation.rule)


def decoded(event_type: EventType, payload: bytes) -> dict[str, Any] | tuple[str, str]:
    try:
        return SCHEMAS.decode(event_type, payload)
    except SchemaViolation as violation:
        return (violation.field, violation.rule)


def mutations(event: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field, value in event.items():
        yield {k: v for k, v in event.items() if k != field}
        for other in VALUES:
            yield event | {field: other}
        if isinstance(value, dict) and value:
            inner = next(iter(value))
            yield event | {field: {k: v for k, v in value.items() if k != inner}}
            for other in VALUES:
                yield event | {field: value | {inner: other}}
                yield event | {field: value | {"added": other}}
    for other in VALUES[:6]:
        yield event | {"unknown_field": other}


def test_every_schema_but_the_dead_letters_has_a_fast_check() -> None:
    # contentEncoding (base64 payloads) is not translated: dead letters are checked as before
    compiled = {t.schema_name for t in TYPES if fast_decoder(SCHEMAS.schema(t)) is not None}
    assert compiled == {t.schema_name for t in TYPES} - {"dead_letter"}


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.schema_name)
def test_the_examples_get_the_same_answers(event_type: EventType) -> None:
    for kind in ("valid", "invalid"):
        for event in examples(event_type, kind):
            payload = orjson.dumps(event)
            assert decoded(event_type, payload) == slow(event_type, payload), (kind, event)


@pytest.mark.parametrize("event_type", TYPES, ids=lambda t: t.schema_name)
def test_mutated_events_are_never_accepted_by_the_fast_check_alone(
    event_type: EventType,
) -> None:
    fast = fast_decoder(SCHEMAS.schema(event_type))
    cases = accepted = 0
    for event in examples(event_type, "valid"):
        for mutated in mutations(event):
            payload = json.dumps(mutated).encode()
            cases += 1
            expected = slow(event_type, payload)
            assert decoded(event_type, payload) == expected, mutated
            if fast is not None:
                if fast.accept(payload) is None:
                    continue
                accepted += 1
                assert isinstance(expected, dict), f"fast check accepted an invalid {mutated}"
    assert cases > 100
    if fast is not None:
        assert accepted > 10, "the fast check accepts valid variations too"


def test_documents_that_are_not_events_get_the_full_checks_answer() -> None:
    for payload in (b"", b"[]", b"null", b"{", b'{"a": NaN}', b"\xff", b'"text"'):
        assert decoded(EventType.LABEL, payload) == slow(EventType.LABEL, payload), payload


def test_what_the_fast_types_refuse_but_the_schema_allows_is_still_accepted() -> None:
    label = examples(EventType.LABEL, "valid")[0]
    # A duplicated key (the last wins, as orjson reads it) and 1.0 for the const 1.
    payload = orjson.dumps(label)[:-1] + b', "label": 1}'
    assert decoded(EventType.LABEL, payload) == slow(EventType.LABEL, payload)
    float_version = orjson.dumps(label | {"schema_version": 1.0})
    assert decoded(EventType.LABEL, float_version) == slow(EventType.LABEL, float_version)


def test_every_date_time_the_schemas_accept_can_be_read_as_a_time() -> None:
    # The leap second and the lower-case z are RFC 3339; digits other than ASCII are not.
    label = examples(EventType.LABEL, "valid")[0]
    for text in ("2016-12-31T23:59:60Z", "2026-11-22t10:00:00.5z", "2026-11-22T10:00:00-0130"):
        event = SCHEMAS.decode(EventType.LABEL, orjson.dumps(label | {"event_time": text}))
        assert epoch(event["event_time"]) > 0, text
    assert epoch("2016-12-31T23:59:60.5Z") == epoch("2017-01-01T00:00:00.5Z")
    with pytest.raises(SchemaViolation) as refused:
        SCHEMAS.decode(
            EventType.LABEL, orjson.dumps(label | {"event_time": "2026-11-22T1\u0660:00:00Z"})
        )
    assert (refused.value.field, refused.value.rule) == ("event_time", "format")


def test_the_date_time_check_remembers_seconds_not_events() -> None:
    # A second's validity is kept; what follows it is checked every time.
    assert is_date_time("2026-11-22T10:00:00.25Z")
    assert not is_date_time("2026-11-22T10:00:00.25")
    assert not is_date_time("2026-11-22T10:00:00.2\u00b2Z")  # a superscript is no digit
    assert is_date_time("2026-11-22T10:00:00+23:59")
    assert not is_date_time("2026-11-22T10:00:00+24:00")
    assert not is_date_time("2026-11-31T10:00:00Z")
