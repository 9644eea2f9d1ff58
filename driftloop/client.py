"""The producing app's side of driftloop: predictions from serve, labels to ingest or to Kafka.

A producing app asks serve for predictions and, when it knows the outcome, sends each label
with the request id the answer gave. :class:`Client` does both with what an app already has:
it needs httpx, and kafka-python only to send labels over Kafka; never TensorFlow, MLflow or
river.

- :meth:`Client.infer` sends plain records (one or a list) to serve's ``/v1/predict`` and
  returns an :class:`Answer`: the model and version that answered (``online.<n>`` when the
  online model did), and one :class:`Prediction` per record with the request id its label
  must name. A request id of the app's own goes with the request (:func:`new_request_id`
  makes them as serve does); otherwise serve makes one.
- :meth:`Client.send_prediction` logs a prediction the app made itself (its fallback while
  serve has no model yet) with ingest, so that its label becomes training data too.
- :meth:`Client.send_label` sends a label over HTTP (ingest's ``/v1/labels``) or to the labels
  topic as a whole event keyed by its request id: kafka-python's default partitioner is the
  Java client's murmur2, so the label lands on its prediction's partition (librdkafka-based
  clients need ``partitioner=murmur2_random`` for that).
- A refused request raises :class:`Refused` with the status and the server's reason, which
  names the field (422: a record that breaks the model's contract; 503: no model yet).

Example:
    >>> with Client("http://127.0.0.1:8080", "http://127.0.0.1:8081") as client:  # doctest: +SKIP
    ...     answer = client.infer({"amount": 12000.0, "term_months": 36, "grade": "B"})
    ...     client.send_label(answer.request_id, 1)
    >>> label_event("order-1", 1, source="loans")["request_id"]
    'order-1'
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from driftloop.events import Scalar, new_event, new_request_id

DEFAULT_LABELS_TOPIC = "driftloop.labels"
__all__ = ["Answer", "Client", "Prediction", "Refused", "label_event", "new_request_id"]


class Refused(Exception):
    """driftloop refused a request: ``status`` and the server's ``reason`` (naming the field)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Prediction:
    """One record's prediction: the id its label must name, the answer, class probabilities."""

    request_id: str
    prediction: Scalar
    scores: dict[str, float] | None = None


@dataclass(frozen=True)
class Answer:
    """serve's answer to one request: who answered, and a prediction per record."""

    model_name: str
    model_version: str
    request_id: str
    predictions: list[Prediction]

    @property
    def online(self) -> bool:
        """Whether the online model answered (its versions are ``online.<n>``)."""
        return self.model_version.startswith("online.")


def label_event(request_id: str, label: Scalar, source: str | None = None) -> dict[str, Any]:
    """The label event (schemas/label.schema.json) for ``request_id``."""
    fields: dict[str, Any] = {"request_id": request_id, "label": label}
    if source:
        fields["source"] = source
    return new_event(**fields)


def parse_answer(document: Any) -> Answer:
    """An :class:`Answer` from serve's plain-records response."""
    try:
        return Answer(
            str(document["model_name"]),
            str(document["model_version"]),
            str(document["request_id"]),
            [
                Prediction(str(row["request_id"]), row["prediction"], row.get("scores"))
                for row in document["predictions"]
            ],
        )
    except (KeyError, TypeError) as error:
        raise ValueError(f"not an answer of serve's /v1/predict: {error!r}") from error


class Client:
    """Predictions and labels for one producing app.

    Parameters:
        serve_url: serve's base URL.
        ingest_url: ingest's base URL (labels over HTTP).
        bootstrap_servers: the brokers, for labels over Kafka (None: HTTP only).
        labels_topic: the labels topic (``DRIFTLOOP_TOPIC_LABELS``).
        source: names the app in the label events it sends.
        model_name: the registered model, named in predictions the app made itself.
        timeout_s: each HTTP request's limit.
        kafka: more kafka-python producer settings (security, for instance).
    """

    def __init__(
        self,
        serve_url: str = "http://127.0.0.1:8080",
        ingest_url: str = "http://127.0.0.1:8081",
        *,
        bootstrap_servers: str | None = None,
        labels_topic: str = DEFAULT_LABELS_TOPIC,
        source: str | None = None,
        model_name: str = "driftloop-model",
        timeout_s: float = 10.0,
        kafka: Mapping[str, Any] | None = None,
    ) -> None:
        self.serve_url = serve_url.rstrip("/")
        self.ingest_url = ingest_url.rstrip("/")
        self.bootstrap_servers = bootstrap_servers
        self.labels_topic = labels_topic
        self.source = source
        self.model_name = model_name
        self.kafka = dict(kafka or {})
        self._http = httpx.Client(timeout=timeout_s)
        self._producer: Any = None  # a kafka-python KafkaProducer, made on first use

    def infer(
        self,
        records: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        request_id: str | None = None,
    ) -> Answer:
        """Predictions for one record or a list of them; raises :class:`Refused`."""
        body: Any = dict(records) if isinstance(records, Mapping) else {"records": list(records)}
        if request_id is not None:
            body = dict(body, request_id=request_id)
        return parse_answer(self._post(f"{self.serve_url}/v1/predict", body))

    def send_label(
        self, request_id: str, label: Scalar, *, via: Literal["http", "kafka"] = "http"
    ) -> None:
        """Send the true ``label`` of the request ``request_id``; raises :class:`Refused`
        (HTTP) or kafka-python's error (Kafka, once the broker has answered)."""
        if via == "http":
            body = {"labels": [{"request_id": request_id, "label": label}]}
            if self.source:
                body["labels"][0]["source"] = self.source
            self._post(f"{self.ingest_url}/v1/labels", body)
            return
        event = label_event(request_id, label, self.source)
        self.producer().send(
            self.labels_topic, key=request_id.encode(), value=json.dumps(event).encode()
        )

    def send_prediction(
        self,
        request_id: str,
        features: Mapping[str, Any],
        prediction: Scalar,
        model_version: str = "0",
    ) -> None:
        """Log a prediction the app made itself (its fallback rule while serve has no model
        yet) with ingest, so that its label becomes training data; raises :class:`Refused`."""
        record = {
            "request_id": request_id,
            "model_name": self.model_name,
            "model_version": model_version,
            "features": dict(features),
            "prediction": prediction,
        }
        self._post(f"{self.ingest_url}/v1/predictions", {"predictions": [record]})

    def producer(self) -> Any:
        """The Kafka producer labels go through (kafka-python, made on first use)."""
        if self._producer is None:
            if self.bootstrap_servers is None:
                raise ValueError("labels over Kafka need bootstrap_servers")
            from kafka import KafkaProducer  # only an app that sends over Kafka needs it

            self._producer = KafkaProducer(
                bootstrap_servers=self.bootstrap_servers, acks="all", **self.kafka
            )
        return self._producer

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until the labels sent over Kafka are on the broker."""
        if self._producer is not None:
            self._producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self.flush()
        if self._producer is not None:
            self._producer.close()
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def _post(self, url: str, body: Any) -> Any:
        response = self._http.post(url, json=body)
        if response.status_code >= 400:
            try:
                reason = str(response.json().get("error", response.text))
            except ValueError:
                reason = response.text
            raise Refused(response.status_code, reason[:2000])
        return response.json() if response.content else None
