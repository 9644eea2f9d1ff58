"""The producing app's side of driftloop: predictions from serve, labels to ingest or to Kafka.

A producing app asks serve for predictions and, when it knows the outcome, sends each label
with the request id the answer gave. :class:`Client` does both with what an app already has:
it needs httpx, and kafka-python only to send labels over Kafka; never TensorFlow, MLflow or
river.

- :meth:`Client.infer` sends plain records (one or a list) to serve's ``/v1/predict`` and
  returns an :class:`Answer`: the model and version that answered (``online.<n>`` when the
  online model did), and one :class:`Prediction` per record with the request id its label
  must name. A request id of the app's own goes with the request (:func:`new_request_id`
  makes them as serve does); otherwise serve makes one. ``via="kafka"`` sends the request
  to the inference-requests topic naming the client's ``reply_topic`` instead, and waits for
  serve's answer there (committed answers only: exactly one per request).
- :meth:`Client.send_request` sends an inference request over Kafka and returns at once: an
  app that reads the predictions topic (or its reply topic) itself.
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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from driftloop.events import Scalar, new_event, new_request_id

DEFAULT_LABELS_TOPIC = "driftloop.labels"
DEFAULT_REQUESTS_TOPIC = "driftloop.inference-requests"
UNCLAIMED_REPLIES = 10_000  # replies read for requests nobody waits on (yet) that are kept
__all__ = [
    "Answer",
    "Client",
    "Prediction",
    "Refused",
    "answer_of",
    "label_event",
    "new_request_id",
    "request_event",
]


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


def request_event(
    model_name: str,
    records: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    request_id: str,
    reply_to: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """The inference-request event (schemas/inference_request.schema.json): ``features`` for
    one record, ``records`` for a list.

    Example:
        >>> event = request_event("m", [{"x": 1.0}, {"x": 2.0}], "r-1", "driftloop.replies.a")
        >>> event["records"], event["reply_to"]
        ([{'x': 1.0}, {'x': 2.0}], 'driftloop.replies.a')
    """
    fields: dict[str, Any] = {"request_id": request_id, "model_name": model_name}
    if isinstance(records, Mapping):
        fields["features"] = dict(records)
    else:
        fields["records"] = [dict(record) for record in records]
    if reply_to is not None:
        fields["reply_to"] = reply_to
    if source:
        fields["source"] = source
    return new_event(**fields)


def answer_of(request_id: str, events: Sequence[Mapping[str, Any]]) -> Answer:
    """An :class:`Answer` from the prediction events serve wrote for one Kafka request (one per
    record, in the records' order).

    Example:
        >>> answer_of("r-1", [{"model_name": "m", "model_version": "3", "request_id": "r-1",
        ...                    "prediction": "yes", "scores": {"yes": 0.9, "no": 0.1}}])
        Answer(model_name='m', model_version='3', request_id='r-1', predictions=[Prediction(request_id='r-1', prediction='yes', scores={'yes': 0.9, 'no': 0.1})])
    """  # noqa: E501
    first = events[0]
    return Answer(
        str(first["model_name"]),
        str(first["model_version"]),
        request_id,
        [Prediction(str(e["request_id"]), e["prediction"], e.get("scores")) for e in events],
    )


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
        timeout_s: each HTTP request's limit, and how long a Kafka request waits for its
            answer.
        kafka: more kafka-python client settings (security, for instance).
        requests_topic: the inference-requests topic (``DRIFTLOOP_TOPIC_INFERENCE_REQUESTS``).
        reply_topic: where serve answers this client's Kafka requests; it must exist and start
            with serve's ``SERVE_KAFKA_REPLY_PREFIX`` (``driftloop.replies.`` by default).
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
        requests_topic: str = DEFAULT_REQUESTS_TOPIC,
        reply_topic: str | None = None,
    ) -> None:
        self.serve_url = serve_url.rstrip("/")
        self.ingest_url = ingest_url.rstrip("/")
        self.bootstrap_servers = bootstrap_servers
        self.labels_topic = labels_topic
        self.source = source
        self.model_name = model_name
        self.kafka = dict(kafka or {})
        self.requests_topic = requests_topic
        self.reply_topic = reply_topic
        self.timeout_s = timeout_s
        self._http = httpx.Client(timeout=timeout_s)
        self._producer: Any = None  # a kafka-python KafkaProducer, made on first use
        self._replies: Any = None  # a kafka-python KafkaConsumer of reply_topic, likewise
        self._unclaimed: dict[str, list[dict[str, Any]]] = {}  # replies by request id

    def infer(
        self,
        records: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        request_id: str | None = None,
        *,
        via: Literal["http", "kafka"] = "http",
    ) -> Answer:
        """Predictions for one record or a list of them; raises :class:`Refused` (HTTP), or
        ``TimeoutError`` when no answer came over Kafka in ``timeout_s``."""
        if via == "kafka":
            return self._infer_over_kafka(records, request_id or new_request_id())
        body: Any = dict(records) if isinstance(records, Mapping) else {"records": list(records)}
        if request_id is not None:
            body = dict(body, request_id=request_id)
        return parse_answer(self._post(f"{self.serve_url}/v1/predict", body))

    def send_request(
        self,
        records: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        request_id: str | None = None,
        reply_to: str | None = None,
    ) -> str:
        """Send an inference request over Kafka, keyed by its id; returns the id at once.
        serve answers it on the predictions topic, and on ``reply_to`` if given."""
        request_id = request_id or new_request_id()
        event = request_event(self.model_name, records, request_id, reply_to, self.source)
        self.producer().send(
            self.requests_topic, key=request_id.encode(), value=json.dumps(event).encode()
        )
        return request_id

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
        """The Kafka producer labels and requests go through (kafka-python, made on first
        use)."""
        if self._producer is None:
            if self.bootstrap_servers is None:
                raise ValueError("sending over Kafka needs bootstrap_servers")
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
        if self._replies is not None:
            self._replies.close()
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

    def _infer_over_kafka(
        self, records: Mapping[str, Any] | Sequence[Mapping[str, Any]], request_id: str
    ) -> Answer:
        if self.reply_topic is None:
            raise ValueError("inference over Kafka needs a reply_topic")
        replies = self._reply_consumer()  # at the topic's end before the request goes
        self.send_request(records, request_id, self.reply_topic)
        self.producer().flush(timeout=self.timeout_s)
        rows = 1 if isinstance(records, Mapping) else len(records)
        ids = [request_id] if rows == 1 else [f"{request_id}-{i}" for i in range(rows)]
        deadline = time.monotonic() + self.timeout_s
        while not all(i in self._unclaimed for i in ids):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no answer to request {request_id} on {self.reply_topic} in "
                    f"{self.timeout_s} s: serve may be down, or it dead-lettered the request "
                    "(see the dead-letter topic for the field and rule it broke)"
                )
            for batch in replies.poll(timeout_ms=int(min(left, 0.5) * 1000)).values():
                for message in batch:
                    event = json.loads(message.value)
                    self._unclaimed.setdefault(event["request_id"], []).append(event)
            while len(self._unclaimed) > UNCLAIMED_REPLIES:  # nobody waits on the oldest
                del self._unclaimed[next(iter(self._unclaimed))]
        return answer_of(request_id, [self._unclaimed.pop(i)[0] for i in ids])

    def _reply_consumer(self) -> Any:
        """A consumer of every partition of ``reply_topic``, from its end (made once)."""
        if self._replies is None:
            if self.bootstrap_servers is None:
                raise ValueError("inference over Kafka needs bootstrap_servers")
            from kafka import KafkaConsumer, TopicPartition

            consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap_servers,
                isolation_level="read_committed",  # serve's answers are transactional
                enable_auto_commit=False,
                **self.kafka,
            )
            found = consumer.partitions_for_topic(self.reply_topic)
            if not found:
                consumer.close()
                raise ValueError(f"the reply topic {self.reply_topic} does not exist")
            partitions = [TopicPartition(self.reply_topic, p) for p in sorted(found)]
            consumer.assign(partitions)
            consumer.seek_to_end(*partitions)
            for partition in partitions:
                consumer.position(partition)  # resolved now, not after the answer came
            self._replies = consumer
        return self._replies

    def _post(self, url: str, body: Any) -> Any:
        response = self._http.post(url, json=body)
        if response.status_code >= 400:
            try:
                reason = str(response.json().get("error", response.text))
            except ValueError:
                reason = response.text
            raise Refused(response.status_code, reason[:2000])
        return response.json() if response.content else None
