"""Every error driftloop raises on purpose, in one place.

Adapters map these to their protocol: the CLI prints ``str(error)`` on one line and exits with
``exit_code``; HTTP adapters use ``http_status``; consumers send a :class:`SchemaViolation` to the
dead-letter topic.
"""

from __future__ import annotations


class DriftloopError(Exception):
    """Base of every error driftloop raises on purpose."""

    exit_code = 1
    http_status = 500


class SchemaViolation(DriftloopError):
    """An event that does not match its schema.

    Parameters:
        field: dotted path of the offending field (``features.age``), or ``$`` for the whole
            document.
        rule: the JSON Schema keyword that failed (``required``, ``type``, ``format``...), or
            ``json`` when the bytes are not JSON at all.
        message: a sentence for a person.
    """

    http_status = 422

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{message} (rule: {rule})")
        self.field = field
        self.rule = rule
        self.message = message

    def as_detail(self) -> dict[str, str]:
        return {"message": self.message, "field": self.field, "rule": self.rule}


class StackError(DriftloopError):
    """The local stack cannot start, stop or answer: a missing tool, a taken port, a crash."""

    exit_code = 2


class BrokerUnavailable(DriftloopError):
    """No Kafka broker answered at the configured bootstrap servers."""

    exit_code = 3
    http_status = 503
