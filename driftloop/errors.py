"""Every error driftloop raises on purpose, in one place.

Adapters map these to their protocol: the CLI prints ``str(error)`` on one line and exits with
``exit_code``; every HTTP adapter answers with ``http_status`` and one body
(:func:`driftloop.http.error_answer`); consumers send a :class:`SchemaViolation` to the
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
    """No Kafka broker answered at the configured bootstrap servers, or Kafka did not take what
    was sent in time (the caller retries)."""

    exit_code = 3
    http_status = 503


class InvalidInput(DriftloopError):
    """A request whose content does not fit what the endpoint takes: an inference request that
    does not fit the model's features, an empty batch, a field of the wrong type (422).

    Parameters:
        field: where the problem is (``inputs.age``, ``records[3].region``), or ``$`` for the
            whole body.
        message: a sentence for a person; it names the field.
        rule: the contract's rule it broke (``feature_type``, ``unknown_feature``...), or
            ``invalid_input`` for the request's shape: what a dead letter names.
    """

    http_status = 422

    def __init__(self, field: str, message: str, rule: str = "invalid_input") -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


class MalformedRequest(DriftloopError):
    """A request body that is not JSON, or not the shape the endpoint takes."""

    http_status = 400


class PayloadTooLarge(DriftloopError):
    """A request body over the configured limit."""

    http_status = 413


class MethodNotAllowed(DriftloopError):
    """A method the path does not take (a GET to an inference path)."""

    http_status = 405


class NotFound(DriftloopError):
    """Something a request names that is not here (a report, a model)."""

    http_status = 404


class ModelNotFound(NotFound):
    """A model name or version this server does not serve."""


class NotReady(DriftloopError):
    """A service that cannot answer yet: its consumer is not running, no model is loaded."""

    http_status = 503


class ModelNotReady(NotReady):
    """No model is loaded yet (none promoted, or the registry has not answered)."""


class ModelLoadFailed(DriftloopError):
    """A model version that could not be loaded, warmed up or checked; it is not served."""

    http_status = 500


class ModelCallFailed(DriftloopError):
    """A served model that raised while predicting: the server's fault, not the request's."""

    http_status = 500


class Unauthorized(DriftloopError):
    """An admin request without the right bearer token."""

    http_status = 401


class RegistryError(DriftloopError):
    """The model registry cannot do what was asked: no champion, no previous version..."""

    exit_code = 4
    http_status = 409


class TrainingError(DriftloopError):
    """A fit cannot start or finish: a bad builder, a window the model cannot be built from."""

    exit_code = 5


class FitInterrupted(DriftloopError):
    """The trainer is stopping in the middle of a fit; the trigger is left for a restart."""

    exit_code = 130
