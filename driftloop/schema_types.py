"""Fast checks compiled from the event schemas: JSON Schema to msgspec types.

fastjsonschema checks an event in Python, several microseconds a prediction, on top of the
parse; msgspec checks the same constraints in C while it parses. The types are derived from
the schema documents when they are loaded, so ``schemas/`` stays the one definition, for the
subset of JSON Schema the schemas use (listed in :data:`KEYWORDS`). A schema that uses anything
else, or whose types msgspec cannot express, gets no fast check.

The fast check is only ever a fast *accept*: its types are at least as strict as the schema,
and what it rejects is checked again by fastjsonschema, which names the field and the rule (and
accepts what the stricter types refuse, such as ``1.0`` for an integer or a duplicated key).

Example:
    >>> decoder = fast_decoder({"type": "object", "additionalProperties": False,
    ...                         "required": ["id"], "properties": {"id": {"type": "string"}}})
    >>> decoder.decode(b'{"id": "a"}').id
    'a'
    >>> fast_decoder({"type": "string", "contentEncoding": "base64"}) is None
    True

References:
    msgspec, constraints: https://jcristharif.com/msgspec/constraints.html
    JSON Schema 2020-12 validation: https://json-schema.org/draft/2020-12/json-schema-validation
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import msgspec
from fastjsonschema.draft04 import CodeGeneratorDraft04

# Keywords that only describe: they constrain nothing.
ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "examples", "$comment"})
# What the translation understands; any other keyword leaves a schema without a fast check.
KEYWORDS = ANNOTATIONS | {
    "type", "const", "enum", "minLength", "maxLength", "pattern", "format", "minimum",
    "maximum", "properties", "required", "additionalProperties", "minProperties",
    "maxProperties", "propertyNames", "items", "minItems", "maxItems",
}  # fmt: skip
# The same expression fastjsonschema checks `format: date-time` with.
DATE_TIME = CodeGeneratorDraft04.FORMAT_REGEXS["date-time"]


class Unsupported(Exception):
    """The schema uses something the translation does not express."""


def fast_decoder(schema: Mapping[str, Any]) -> msgspec.json.Decoder[Any] | None:
    """A decoder that accepts only documents ``schema`` accepts; None when there is none."""
    try:
        return msgspec.json.Decoder(schema_type(schema, "Event"))
    except (Unsupported, TypeError, ValueError):  # TypeError: a union msgspec refuses
        return None


def schema_type(node: Mapping[str, Any], name: str) -> Any:
    """The msgspec type of one schema node (``name`` names the structs made for it)."""
    unknown = set(node) - KEYWORDS
    if unknown:
        raise Unsupported(f"keywords {sorted(unknown)}")
    if "const" in node or "enum" in node:
        return _choice(node)
    kinds = node.get("type")
    if kinds is None:
        if set(node) - ANNOTATIONS:
            raise Unsupported("constraints without a type")
        return Any
    members: list[Any] = []
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        members += _members(kind, node, name)
    return members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007


def _choice(node: Mapping[str, Any]) -> Any:
    if set(node) - ANNOTATIONS - {"const", "enum"}:
        raise Unsupported("const or enum beside other constraints")
    values = [node["const"]] if "const" in node else list(node["enum"])
    allowed = [v for v in values if v is not None]
    # Literal matches by type and value: 1 is not true (as in JSON Schema); floats, which
    # JSON Schema would compare by value (1 == 1.0), are left to the full check.
    if not all(type(v) in (str, int) for v in allowed):
        raise Unsupported("const or enum of other than strings and integers")
    members: list[Any] = [Literal[tuple(allowed)]] if allowed else []
    if len(allowed) < len(values):
        members.append(None)
    return members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007


def _members(kind: str, node: Mapping[str, Any], name: str) -> list[Any]:
    if kind == "string":
        meta = _meta(node, minLength="min_length", maxLength="max_length", pattern="pattern")
        if "format" in node:
            if node["format"] != "date-time" or "pattern" in node:
                raise Unsupported(f"format {node['format']!r}")
            meta["pattern"] = DATE_TIME
        return [_constrained(str, meta)]
    if kind in ("integer", "number"):
        meta = _meta(node, minimum="ge", maximum="le")
        numbers: list[type] = [int] if kind == "integer" else [int, float]
        return [_constrained(t, meta) for t in numbers]
    if kind == "boolean":
        return [bool]
    if kind == "null":
        return [None]
    if kind == "array":
        items = schema_type(node["items"], f"{name}Item") if "items" in node else Any
        lengths = _meta(node, minItems="min_length", maxItems="max_length")
        return [_constrained(list[items], lengths)]
    if kind == "object":
        return [_object(node, name)]
    raise Unsupported(f"type {kind!r}")


def _object(node: Mapping[str, Any], name: str) -> Any:
    extra = node.get("additionalProperties", True)
    if "properties" not in node:
        key = str
        if "propertyNames" in node:
            names = node["propertyNames"]
            if set(names) - ANNOTATIONS - {"minLength", "maxLength"}:
                raise Unsupported("propertyNames beyond lengths")
            key = _constrained(str, _meta(names, minLength="min_length", maxLength="max_length"))
        if extra is False:
            raise Unsupported("an object that allows no property")
        values = Any if extra is True else schema_type(extra, f"{name}Value")
        meta = _meta(node, minProperties="min_length", maxProperties="max_length")
        return _constrained(dict[key, values], meta)  # type: ignore[valid-type]
    if extra not in (True, False) or {"propertyNames", "minProperties", "maxProperties"} & set(
        node
    ):
        raise Unsupported("properties beside other property constraints")
    required = set(node.get("required", ()))
    fields: list[Any] = []
    for field, sub in node["properties"].items():
        if not field.isidentifier() or keyword.iskeyword(field) or field.startswith("_"):
            raise Unsupported(f"property name {field!r}")
        kind = schema_type(sub, f"{name}_{field}")
        if field in required:
            fields.append((field, kind))
        else:  # absent stays absent: the parsed dict is what callers get, not this struct
            fields.append((field, Union[kind, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
    if required - set(node["properties"]):
        raise Unsupported("a required property without a schema")
    # Required fields first: a struct's fields without defaults must precede those with.
    fields.sort(key=lambda f: len(f) == 3)
    return msgspec.defstruct(name, fields, forbid_unknown_fields=extra is False)


def _meta(node: Mapping[str, Any], **names: str) -> dict[str, Any]:
    return {meta: node[keyword_] for keyword_, meta in names.items() if keyword_ in node}


def _constrained(base: Any, meta: dict[str, Any]) -> Any:
    return Annotated[base, msgspec.Meta(**meta)] if meta else base
