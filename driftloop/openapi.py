"""Every service's OpenAPI document: ``/openapi.json`` (OpenAPI 3.1), read at ``/docs``
(Swagger UI) and ``/redoc``.

FastAPI documents what its routes declare, but driftloop's handlers read their bodies
themselves (:func:`driftloop.http.read_request`, :func:`~driftloop.http.parse_json`: faster,
and the errors answered as every service answers them), and serve's inference paths are no
FastAPI routes at all. So a route declares its body with :func:`json_body` (FastAPI's
``openapi_extra``) and its errors with :func:`error_responses`, both referring to schemas of
the document's ``components``; the app's :class:`ApiDocument` (``service_app`` makes one)
adds those schemas, fed from the repo's JSON Schemas (:class:`~driftloop.schemas.EventSchemas`:
JSON Schema 2020-12 is OpenAPI 3.1's dialect), and the paths no route answers, to the
document FastAPI generates. Nothing here runs while a request is answered: the document is
built on its first request, and kept.

Example:
    >>> from fastapi import FastAPI
    >>> app = FastAPI()
    >>> @app.post("/v1/things", status_code=202, openapi_extra=json_body(ref("Thing")),
    ...           responses=error_responses({400: "the body is not JSON"}))
    ... async def things() -> None: ...
    >>> ApiDocument(app).add(schemas=lambda: {"Thing": {"type": "object"}})
    >>> document = app.openapi()
    >>> document["paths"]["/v1/things"]["post"]["requestBody"]["content"]["application/json"]
    {'schema': {'$ref': '#/components/schemas/Thing'}}
    >>> sorted(document["components"]["schemas"])
    ['Error', 'Thing']
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI

from driftloop.events import Envelope

JSON = "application/json"
Schema = dict[str, Any]
# A part of the document, or what makes it when the document is built (a schema read from
# disk is read then, not when the app is made).
Part = Mapping[str, Any] | Callable[[], Mapping[str, Any]]

# The body of every error answer (driftloop.http.error_answer).
ERROR: Schema = {
    "title": "Error",
    "description": "Every error answer: what went wrong, and where when the body is at fault.",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What went wrong, for a person."},
        "field": {
            "type": "string",
            "description": "The field at fault (`label`, `inputs.age`, `records[3].region`), "
            "`$` for the whole body.",
        },
        "rule": {
            "type": "string",
            "description": "The rule it broke: a JSON Schema keyword (`required`, `type`...) "
            "or a contract rule (`feature_type`, `unknown_feature`...).",
        },
        "index": {
            "type": "integer",
            "minimum": 0,
            "description": "The item of a batch the error is about.",
        },
    },
}
# What a JSON scalar value (a feature, a label, a prediction) may be.
SCALAR: Schema = {"type": ["number", "string", "boolean", "null"]}


def ref(name: str) -> Schema:
    """A reference to the schema ``name`` of the document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: Schema, description: str = "", required: bool = True) -> dict[str, Any]:
    """A route's ``openapi_extra`` for a JSON body it reads itself."""
    body: dict[str, Any] = {"required": required, "content": {JSON: {"schema": schema}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def json_answer(schema: Schema, description: str) -> dict[str, Any]:
    """A response with a JSON body of ``schema``."""
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error_responses(statuses: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, by status (as the document keys them: a string): each
    a sentence on when, and the error body."""
    return {str(status): json_answer(ref("Error"), text) for status, text in statuses.items()}


def sent_event(schema: Mapping[str, Any]) -> Schema:
    """An event's schema as a caller sends it over HTTP: the envelope (``schema_version``,
    ``event_id``, ``event_time``) may be left out (:func:`driftloop.events.new_event` fills
    it in); the rest is the event's schema as it is. Its ``$id`` is dropped: this is not that
    document.

    Example:
        >>> sent_event({"$id": "x", "required": ["event_id", "label"], "type": "object"})
        {'required': ['label'], 'type': 'object'}
    """
    envelope = Envelope.__annotations__.keys()
    sent = {key: copy.deepcopy(value) for key, value in schema.items() if key != "$id"}
    if "required" in sent:
        sent["required"] = [name for name in sent["required"] if name not in envelope]
    return sent


def one_or_many(item: Schema, plural: str) -> Schema:
    """A body of one item, a list of them, or ``{plural: [...]}`` (a batch: all or none)."""
    items = {"type": "array", "minItems": 1, "items": item}
    return {
        "oneOf": [
            item,
            items,
            {"type": "object", "required": [plural], "properties": {plural: items}},
        ]
    }


class ApiDocument:
    """An app's OpenAPI document: what FastAPI generates from its routes, plus the component
    schemas and the paths added here (merged into the generated operation where a route has
    one). It replaces ``app.openapi``; FastAPI builds the document on its first request.

    Parameters:
        app: the app it documents.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._parts: list[tuple[Part, Part]] = [({}, {"Error": ERROR})]
        self._built: dict[str, Any] | None = None
        app.openapi = self.openapi  # type: ignore[method-assign]

    def add(self, paths: Part | None = None, schemas: Part | None = None) -> None:
        """Add ``paths`` (``{path: {method: operation}}``, merged into the operation a route
        has there) and component ``schemas`` (``{name: schema}``), each a mapping or what makes
        one when the document is built."""
        self._parts.append((paths or {}, schemas or {}))
        self._built = None
        self.app.openapi_schema = None

    def openapi(self) -> dict[str, Any]:
        """The document (FastAPI's ``app.openapi``)."""
        document = FastAPI.openapi(self.app)
        if document is not self._built:  # FastAPI made it anew: add the parts to it
            components = document.setdefault("components", {}).setdefault("schemas", {})
            found = document.setdefault("paths", {})
            for paths, schemas in self._parts:
                components.update(_made(schemas))
                for path, operations in _made(paths).items():
                    for method, operation in operations.items():
                        _merge(found.setdefault(path, {}).setdefault(method, {}), operation)
            self._built = document
        return document


def api_document(app: FastAPI) -> ApiDocument:
    """The app's :class:`ApiDocument` (made by :func:`driftloop.asgi.service_app`)."""
    found = getattr(app.state, "api_document", None)
    if not isinstance(found, ApiDocument):
        found = app.state.api_document = ApiDocument(app)
    return found


def _made(part: Part) -> Mapping[str, Any]:
    return part() if callable(part) else part


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    """``update`` merged into ``into``: mappings key by key, except a schema, which is replaced
    whole, as is anything else."""
    for key, value in update.items():
        if key != "schema" and isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
