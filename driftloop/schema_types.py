"""Fast checks compiled from the event schemas: JSON Schema to msgspec types.

fastjsonschema checks an event in Python, several microseconds a prediction, on top of the
parse; msgspec checks the same constraints in C while it parses. The types are derived from
the schema documents when they are loaded, so ``schemas/`` stays the one definition, for the
subset of JSON Schema the schemas use (listed in :data:`KEYWORDS`). A schema that uses anything
else, or whose types msgspec cannot express, gets no fast check.

The fast check is only ever a fast *accept*: its types are at least as strict as the schema,
and what it rejects is checked again by fastjsonschema, which names the field and the rule (and
accepts what the stricter types refuse, such as ``1.0`` for an integer or a duplicated key).

``format: date-time`` is :func:`is_date_time` on both paths (fastjsonschema is given it as a
custom format): RFC 3339 with ASCII digits, checked per distinct second rather than per event.

Example:
    >>> check = fast_decoder({"type": "object", "additionalProperties": False,
    ...                       "required": ["id", "at"], "properties": {"id": {"type": "string"},
    ...                       "at": {"type": "string", "format": "date-time"}}})
    >>> check.accept(b'{"id": "a", "at": "2026-11-22T10:00:00.5Z"}')
    {'id': 'a', 'at': '2026-11-22T10:00:00.5Z'}
    >>> check.accept(b'{"id": "a", "at": "2026-11-22T25:00:00Z"}') is None
    True
    >>> fast_decoder({"type": "string", "contentEncoding": "base64"}) is None
    True

References:
    msgspec, constraints: https://jcristharif.com/msgspec/constraints.html
    JSON Schema 2020-12 validation: https://json-schema.org/draft/2020-12/json-schema-validation
"""

from __future__ import annotations

import keyword
import re
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
# The expression fastjsonschema checks `format: date-time` with, digits in ASCII only (RFC
# 3339's DIGIT; Python's parser refuses others). Its first 19 characters are the date and the
# time to the second, of fixed width; what follows (a fraction, the zone) is the tail.
DATE_TIME = "(?a)" + CodeGeneratorDraft04.FORMAT_REGEXS["date-time"]
_FULL = re.compile(DATE_TIME)
_TAIL = re.compile("(?a)" + DATE_TIME[DATE_TIME.index(r"(?:\.\d+)?") :])
_SECONDS: dict[str, bool] = {}  # whether each date-and-second seen so far is valid
_SECONDS_KEPT = 4096  # past this many, the cache starts again


def is_date_time(text: str) -> bool:
    """Whether ``text`` is a JSON Schema ``date-time`` (RFC 3339; a leap second allowed).

    Events of one second share their first 19 characters: those are checked once, the rest
    (``Z``, ``.123456Z``, ``+01:00``...) each time.

    Example:
        >>> is_date_time("2026-02-28T23:59:60.25Z"), is_date_time("2026-02-29T00:00:00Z")
        (True, False)
    """
    head = text[:19]
    valid = _SECONDS.get(head)
    if valid is None:
        if len(_SECONDS) >= _SECONDS_KEPT:
            _SECONDS.clear()
        valid = _SECONDS[head] = _FULL.match(head + "Z") is not None
    if not valid:
        return False
    tail = text[19:]
    if tail == "Z" or (
        tail[:1] == "." and tail[-1:] == "Z" and tail[1:-1].isdigit() and tail.isascii()
    ):
        return True  # what driftloop's own events carry: no expression to run
    return _TAIL.match(tail) is not None


class Unsupported(Exception):
    """The schema uses something the translation does not express."""


class FastCheck:
    """A schema's msgspec decoders (one per variant of a root ``oneOf``: the first that
    accepts decides), and the top-level ``date-time`` fields they leave to
    :func:`is_date_time` (checked after the parse: cheaper than a pattern in it)."""

    def __init__(self, decoders: list[msgspec.json.Decoder[Any]], times: list[str]) -> None:
        self.decoders = decoders
        self.times = times

    def accept(self, payload: bytes) -> dict[str, Any] | None:
        """The document as a dict if it certainly matches the schema; else None (the full
        check decides). Fields the document leaves out are left out of the dict."""
        for decoder in self.decoders:
            try:
                event = msgspec.to_builtins(decoder.decode(payload))
            except (msgspec.ValidationError, msgspec.DecodeError):
                continue
            if not isinstance(event, dict):
                return None
            for field in self.times:
                if field in event and not is_date_time(event[field]):
                    return None
            return event
        return None


def fast_decoder(schema: Mapping[str, Any]) -> FastCheck | None:
    """A check that accepts only documents ``schema`` accepts; None when there is none.

    A root ``oneOf`` is understood in one form: an object that allows no other properties,
    each member only ``required``, the members' properties disjoint (one of ``features`` and
    ``records``). Each member is a variant of its own, with its properties required and the
    other members' left out: a document matches exactly one member if a variant accepts it.
    """
    times: list[str] = []
    try:
        variants = [
            schema_type(variant, "Event", times if not index else [])
            for index, variant in enumerate(_variants(schema))
        ]
        return FastCheck([msgspec.json.Decoder(variant) for variant in variants], times)
    except (Unsupported, TypeError, ValueError):  # TypeError: a union msgspec refuses
        return None


def _variants(schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    members = schema.get("oneOf")
    if members is None:
        return [schema]
    required = [set(member.get("required", ())) for member in members]
    if (
        schema.get("additionalProperties") is not False
        or any(set(member) != {"required"} for member in members)
        or sum(map(len, required)) != len(set().union(*required))
    ):
        raise Unsupported("a oneOf other than of disjoint required properties")
    base = {key: value for key, value in schema.items() if key != "oneOf"}
    variants: list[Mapping[str, Any]] = []
    for own in required:
        others = set().union(*required) - own
        properties = {k: v for k, v in base["properties"].items() if k not in others}
        wanted = [*base.get("required", ()), *sorted(own)]
        variants.append(base | {"properties": properties, "required": wanted})
    return variants


def schema_type(node: Mapping[str, Any], name: str, times: list[str] | None = None) -> Any:
    """The msgspec type of one schema node (``name`` names the structs made for it).

    ``times``, given for the root, collects the names of its ``date-time`` fields, left as
    plain strings for :class:`FastCheck` to check; nested ones get the pattern."""
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
        members += _members(kind, node, name, times)
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


def _members(
    kind: str, node: Mapping[str, Any], name: str, times: list[str] | None = None
) -> list[Any]:
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
        return [_constrained(list[items], lengths)]  # type: ignore[valid-type]  # built at run time
    if kind == "object":
        return [_object(node, name, times)]
    raise Unsupported(f"type {kind!r}")


def _object(node: Mapping[str, Any], name: str, times: list[str] | None = None) -> Any:
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
        if times is not None and _plain_date_time(sub):
            kind: Any = str
            times.append(field)
        else:
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


def _plain_date_time(node: Mapping[str, Any]) -> bool:
    return (
        node.get("type") == "string"
        and node.get("format") == "date-time"
        and not (set(node) - ANNOTATIONS - {"type", "format"})
    )


def _meta(node: Mapping[str, Any], **names: str) -> dict[str, Any]:
    return {meta: node[keyword_] for keyword_, meta in names.items() if keyword_ in node}


def _constrained(base: Any, meta: dict[str, Any]) -> Any:
    return Annotated[base, msgspec.Meta(**meta)] if meta else base
