"""Validation of events against the JSON Schemas in ``schemas/``.

The schemas travel with the package: ``driftloop/event_schemas`` links to the repo's
``schemas/``, the wheel carries them as package data, and they are read with
:mod:`importlib.resources` (:func:`packaged_schemas`), so an installed driftloop validates from
any folder. ``DRIFTLOOP_SCHEMAS_DIR`` points at another folder instead.

Each schema is compiled once, on first use, to Python code (fastjsonschema), which checks a
typical event in a few microseconds. A failure becomes a :class:`SchemaViolation` naming the
field and the rule, so that a dead letter or an HTTP 422 tells the sender what to fix.

Records off Kafka (:meth:`EventSchemas.decode`) are first checked as they are parsed, in C, by
msgspec types derived from the same schema (:mod:`driftloop.schema_types`): two to three times
faster, and only a fast accept, so what it rejects goes through fastjsonschema as before.

Example:
    >>> schemas = EventSchemas()
    >>> schemas.validate(EventType.LABEL, {"schema_version": 1, "event_id": "e-1",
    ...                                    "event_time": "2026-11-22T10:00:00Z", "label": 1})
    Traceback (most recent call last):
    ...
    driftloop.errors.SchemaViolation: request_id is required (rule: required)

References:
    JSON Schema 2020-12, https://json-schema.org/draft/2020-12/json-schema-validation
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from driftloop.errors import SchemaViolation
from driftloop.events import EventType
from driftloop.schema_types import fast_decoder, is_date_time

Validator = Callable[[Any], Any]
# The schemas' folder inside the package: a link to the repo's schemas/, a copy in the wheel.
PACKAGED_SCHEMAS = "event_schemas"


def packaged_schemas() -> Traversable:
    """The event schemas installed with driftloop, wherever it is installed."""
    return files("driftloop").joinpath(PACKAGED_SCHEMAS)


class EventSchemas:
    """The event schemas of one folder, compiled lazily and kept.

    Parameters:
        directory: folder with one ``<event type>.schema.json`` per event type; by default (or
            ``None``, an unset ``DRIFTLOOP_SCHEMAS_DIR``) the schemas packaged with driftloop.
    """

    def __init__(self, directory: str | os.PathLike[str] | Traversable | None = None) -> None:
        self.directory: Traversable
        if directory is None:
            self.directory = packaged_schemas()
        elif isinstance(directory, Traversable):
            self.directory = directory
        else:
            self.directory = Path(directory)
        self._validators: dict[EventType, Validator] = {}
        self._decoders: dict[EventType, Callable[[bytes], dict[str, Any]]] = {}

    def schema(self, event_type: EventType) -> dict[str, Any]:
        """The schema document of ``event_type``, as loaded from its folder."""
        path = self.directory.joinpath(f"{event_type.schema_name}.schema.json")
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"no schema for {event_type.schema_name} at {path}") from None

    def _validator(self, event_type: EventType) -> Validator:
        validator = self._validators.get(event_type)
        if validator is None:
            validator = fastjsonschema.compile(
                self.schema(event_type), formats={"date-time": is_date_time}
            )
            self._validators[event_type] = validator
        return validator

    def validate(self, event_type: EventType, event: Mapping[str, Any]) -> None:
        """Raise :class:`SchemaViolation` unless ``event`` matches its schema."""
        try:
            self._validator(event_type)(event)
        except fastjsonschema.JsonSchemaValueException as error:
            raise _violation(error) from None

    def decode(self, event_type: EventType, payload: bytes) -> dict[str, Any]:
        """Parse a record value and validate it; bad JSON is a violation of the whole document."""
        return self.decoder(event_type)(payload)

    def decoder(self, event_type: EventType) -> Callable[[bytes], dict[str, Any]]:
        """:meth:`decode` for one event type, for a caller that decodes many records of it."""
        found = self._decoders.get(event_type)
        if found is None:
            found = self._decoders[event_type] = self._make_decoder(event_type)
        return found

    def _make_decoder(self, event_type: EventType) -> Callable[[bytes], dict[str, Any]]:
        fast = fast_decoder(self.schema(event_type))
        accept = fast.accept if fast is not None else None

        def decode(payload: bytes) -> dict[str, Any]:
            if accept is not None:
                event = accept(payload)
                if event is not None:
                    return event
                # Refused: the full check below names the problem, or accepts what the
                # stricter types refused.
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError as error:
                raise SchemaViolation("$", "json", f"not valid JSON: {error}") from None
            if not isinstance(event, dict):
                raise SchemaViolation(
                    "$", "type", f"must be a JSON object, not {type(event).__name__}"
                )
            self.validate(event_type, event)
            return event

        return decode


def _violation(error: fastjsonschema.JsonSchemaValueException) -> SchemaViolation:
    """Turn fastjsonschema's ``data.a.b`` paths into ``a.b`` and name the missing/extra key."""
    path = (error.name or "data").removeprefix("data").lstrip(".")
    rule = error.rule or "invalid"
    definition = error.definition if isinstance(error.definition, dict) else {}
    value = error.value if isinstance(error.value, dict) else {}

    def under(key: str) -> str:
        return f"{path}.{key}" if path else key

    if rule == "required":
        missing = [key for key in definition.get("required", []) if key not in value]
        if missing:
            field = under(missing[0])
            return SchemaViolation(field, rule, f"{field} is required")
    if rule == "additionalProperties":
        known = definition.get("properties", {})
        extra = sorted(key for key in value if key not in known)
        if extra:
            field = under(extra[0])
            return SchemaViolation(field, rule, f"{field} is not a field of this event")
    field = path or "$"
    message = error.message.replace(error.name or "data", field, 1)
    return SchemaViolation(field, rule, message)


def dumps(event: Mapping[str, Any]) -> bytes:
    """The wire form of an event: compact UTF-8 JSON."""
    return orjson.dumps(event)
