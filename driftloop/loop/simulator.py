"""The producing app: asks serve for predictions, and sends the true labels a little later.

:class:`ProducingApp` replays a :class:`~driftloop.loop.streams.DriftingStream` as an app in
production would: one HTTP request per record to serve's ``POST /v1/predict`` (async httpx,
at most ``concurrency`` in flight, optionally paced to ``rate`` requests a second), keeping the
``request_id`` and ``model_version`` of each answer. ``label_delay_s`` later the true label
goes out, half of them through Kafka (``EventProducer``, the labels topic) and half through
ingest's ``POST /v1/labels`` (batched), so both paths the loop offers are used. Every answer is
recorded in a :class:`~driftloop.loop.timeline.Timeline` (was the served prediction right,
which version gave it).

Before a model exists, :meth:`ProducingApp.bootstrap` sends records the way an app with a
fallback rule would: its own prediction (the majority class) through ingest's
``POST /v1/predictions``, then the labels, so the trainer has examples for the first model.

Example:
    >>> serve, ingest = "http://127.0.0.1:8080", "http://127.0.0.1:8081"
    >>> app = ProducingApp(serve, ingest, settings)  # doctest: +SKIP
    >>> asyncio.run(app.replay(streams.demo()))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from driftloop.events import EventType, new_event
from driftloop.loop.streams import DriftingStream, Features
from driftloop.loop.timeline import Timeline
from driftloop.messaging import EventProducer
from driftloop.settings import Settings

# The version bootstrap predictions carry: no registered model made them (MLflow numbers
# versions from 1), the app's fallback rule did.
FALLBACK_VERSION = "0"


@dataclass(frozen=True, slots=True)
class Answer:
    """What serve said about one record."""

    request_id: str
    prediction: Any
    version: str


def parse_answers(document: Any, headers: httpx.Headers | None = None) -> list[Answer]:
    """serve's answer to ``POST /v1/predict``, one :class:`Answer` per record.

    Accepts one object, a list, or ``{"predictions": [...]}``; ``model_version`` and
    ``request_id`` may sit on each item or once at the top.
    """
    top: dict[str, Any] = document if isinstance(document, dict) else {}
    if isinstance(document, list):
        items = document
    elif "predictions" in top and isinstance(top["predictions"], list):
        items = top["predictions"]
    else:
        items = [top]
    header_id = headers.get("x-request-id") if headers is not None else None
    answers = []
    for item in items:
        entry = item if isinstance(item, dict) else {"prediction": item}
        version = entry.get("model_version", top.get("model_version"))
        request_id = entry.get("request_id", top.get("request_id", header_id))
        prediction = entry.get("prediction", entry.get("label"))
        if version is None or request_id is None:
            raise ValueError(f"serve's answer lacks model_version or request_id: {entry}")
        answers.append(Answer(str(request_id), prediction, str(version)))
    return answers


def same_label(prediction: Any, label: Any) -> bool:
    """Whether a served prediction names ``label`` (serve may answer 1, 1.0 or "1")."""
    if prediction == label:
        return True
    with contextlib.suppress(TypeError, ValueError):
        return float(prediction) == float(label)
    return str(prediction) == str(label)


@dataclass
class PendingLabel:
    due: float
    request_id: str
    label: Any
    via_kafka: bool


class ProducingApp:
    """An app that calls serve and later reports what really happened.

    Parameters:
        serve_url: serve's base URL.
        ingest_url: ingest's base URL (labels over HTTP, bootstrap predictions).
        settings: where Kafka and the labels topic are.
        timeline: where answers are recorded; a new one when None.
        concurrency: most requests in flight at once.
        label_delay_s: how long after its answer a label is sent.
        rate: requests a second to pace at; None sends as fast as serve answers.
        model_name: the model named in bootstrap predictions.
    """

    def __init__(
        self,
        serve_url: str,
        ingest_url: str,
        settings: Settings,
        timeline: Timeline | None = None,
        concurrency: int = 8,
        label_delay_s: float = 1.0,
        rate: float | None = None,
        model_name: str | None = None,
    ) -> None:
        self.serve_url = serve_url.rstrip("/")
        self.ingest_url = ingest_url.rstrip("/")
        self.settings = settings
        self.timeline = timeline or Timeline(started=time.time())
        self.concurrency = concurrency
        self.label_delay_s = label_delay_s
        self.rate = rate
        self.model_name = model_name or settings.model_name
        self.labels_by_kafka = 0
        self.labels_by_http = 0
        self.errors: deque[str] = deque(maxlen=20)  # the last failures, for the report
        self.label_ids: list[str] = []  # every request_id a label was sent for
        self._pending: deque[PendingLabel] = deque()
        self._producer: EventProducer | None = None

    async def replay(
        self,
        stream: DriftingStream | Iterable[tuple[Features, Any]],
        stop: Callable[[], bool] | None = None,
    ) -> Timeline:
        """Send every record of ``stream`` (until ``stop()`` is true) and all their labels.

        The stream's drift points are put on the timeline when their first record is sent.
        """
        drifts = {d.position: d.kind for d in getattr(stream, "drifts", ())}
        if isinstance(stream, DriftingStream):
            self.timeline.stream = self.timeline.stream or stream.description
        slots = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency + 2)
        labeller_stop = asyncio.Event()
        self._producer = EventProducer(self.settings, service="demo-app")
        try:
            async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
                labeller = asyncio.create_task(self._send_labels(client, labeller_stop))
                tasks: set[asyncio.Task[None]] = set()
                started = time.monotonic()
                for index, (features, label) in enumerate(stream):
                    if stop is not None and stop():
                        break
                    if self.rate:
                        due = started + index / self.rate
                        await asyncio.sleep(max(0.0, due - time.monotonic()))
                    if index in drifts:
                        self.timeline.inject(index, time.time(), drifts[index])
                    await slots.acquire()
                    task = asyncio.create_task(self._ask(client, index, features, label))
                    task.add_done_callback(lambda _: slots.release())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*tasks)
                labeller_stop.set()
                await labeller
        finally:
            self._producer.close(timeout=10)
            self._producer = None
        self.timeline.ended = time.time()
        return self.timeline

    async def _ask(
        self, client: httpx.AsyncClient, index: int, features: Features, label: Any
    ) -> None:
        try:
            response = await client.post(f"{self.serve_url}/v1/predict", json=features)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}: {response.text[:200]}")
            (answer,) = parse_answers(response.json(), response.headers)
        except (httpx.HTTPError, ValueError) as error:
            self.timeline.failed += 1
            self.errors.append(f"request {index}: {type(error).__name__}: {error}")
            return
        now = time.time()
        self.timeline.serve(now, answer.version, same_label(answer.prediction, label), index)
        self._pending.append(
            PendingLabel(now + self.label_delay_s, answer.request_id, label, index % 2 == 0)
        )

    async def _send_labels(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        """Every 0.2 s, send the labels that are due: Kafka ones one by one, HTTP ones batched."""
        while True:
            finishing = stop.is_set()
            now = time.time()
            due: list[PendingLabel] = []
            while self._pending and (finishing or self._pending[0].due <= now):
                due.append(self._pending.popleft())
            if due:
                await self._deliver(client, due)
            if finishing and not self._pending:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        assert self._producer is not None
        await asyncio.to_thread(self._producer.flush, 30)

    async def _deliver(self, client: httpx.AsyncClient, due: list[PendingLabel]) -> None:
        assert self._producer is not None
        over_http = []
        for pending in due:
            event = new_event(request_id=pending.request_id, label=pending.label, source="demo")
            if pending.via_kafka:
                self._producer.send(EventType.LABEL, event)
                self.labels_by_kafka += 1
            else:
                over_http.append(event)
        for start in range(0, len(over_http), 500):
            batch = over_http[start : start + 500]
            await self._post(client, "/v1/labels", {"labels": batch})
            self.labels_by_http += len(batch)
        self.label_ids += [pending.request_id for pending in due]
        self.timeline.labels_sent += len(due)

    async def _post(self, client: httpx.AsyncClient, path: str, body: Any) -> None:
        # ingest answers 503 when Kafka did not take the batch in time: the caller retries.
        for attempt in range(5):
            response = await client.post(f"{self.ingest_url}{path}", json=body)
            if response.status_code == 202:
                return
            if response.status_code != 503:
                break
            await asyncio.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"ingest refused {path}: HTTP {response.status_code} {response.text}")

    async def bootstrap(self, records: Iterable[tuple[Features, Any]]) -> list[str]:
        """Send ``records`` as an app with no model yet: predictions by a fallback rule (the
        most common class so far, version ``0``), through ingest, then their labels. Returns the
        request ids.
        """
        rows = list(records)
        counts: dict[Any, int] = {}
        predictions = []
        ids = []
        for features, label in rows:
            guess = max(counts, key=counts.__getitem__) if counts else label
            counts[label] = counts.get(label, 0) + 1
            request_id = f"boot-{uuid.uuid4().hex[:12]}"
            ids.append(request_id)
            predictions.append(
                new_event(
                    request_id=request_id,
                    model_name=self.model_name,
                    model_version=FALLBACK_VERSION,
                    features=features,
                    prediction=guess,
                )
            )
        labels = [
            new_event(request_id=request_id, label=label, source="demo")
            for request_id, (_, label) in zip(ids, rows, strict=True)
        ]
        async with httpx.AsyncClient(timeout=30.0) as client:
            for start in range(0, len(predictions), 500):
                body = {"predictions": predictions[start : start + 500]}
                await self._post(client, "/v1/predictions", body)
            await asyncio.sleep(self.label_delay_s)
            for start in range(0, len(labels), 500):
                await self._post(client, "/v1/labels", {"labels": labels[start : start + 500]})
        self.label_ids += ids
        return ids
