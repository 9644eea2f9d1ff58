"""Inference over Kafka against the real broker and MLflow: requests on the inference-requests
topic answered by `driftloop run serve` on the predictions topic (and a reply topic), bad
requests dead-lettered with their rule, a swap mid-stream, and exactly one answer per request
across a kill -9 and a restart."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from kafka.admin import NewTopic

from driftloop.events import EventType, new_event
from driftloop.messaging import EventProducer, kafka_admin, kafka_producer
from driftloop.services.serve.settings import ServeSettings
from tests.integration.serve.conftest import (
    RECORD,
    ServeProcess,
    promote,
    read_events,
    register,
)

pytestmark = pytest.mark.integration

Start = Callable[[ServeSettings], ServeProcess]


def request(settings: ServeSettings, request_id: str, **fields: Any) -> dict[str, Any]:
    return (
        new_event(
            request_id=request_id,
            model_name=settings.model_name,
            features=dict(RECORD),
            source="test-app",
        )
        | fields
    )


def send(settings: ServeSettings, events: list[dict[str, Any]]) -> None:
    with EventProducer(settings, service="test-app") as producer:
        for event in events:
            producer.send(EventType.INFERENCE_REQUEST, event)
        producer.flush()


def send_raw(settings: ServeSettings, values: list[bytes]) -> None:
    producer = kafka_producer(settings, "test-app")
    try:
        for value in values:
            producer.send(settings.topic_inference_requests, value)
        producer.flush()
    finally:
        producer.close()


def answers(settings: ServeSettings, ids: set[str], timeout: float = 90) -> list[dict[str, Any]]:
    """The prediction events (committed only) for ``ids``, once each has one or at timeout."""
    found = read_events(
        settings,
        EventType.PREDICTION,
        lambda events: ids <= {e["request_id"] for e in events},
        timeout,
    )
    return [event for event in found if event["request_id"] in ids]


def test_kafka_requests_are_answered_replied_to_and_bad_ones_dead_lettered(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    settings = serve_settings
    reply_topic = f"{settings.serve_kafka_reply_prefix}{uuid.uuid4().hex[:8]}"
    admin = kafka_admin(settings)
    try:
        admin.create_topics([NewTopic(reply_topic, 2, 1)])
    finally:
        admin.close()
    first = register(settings)
    promote(settings, first)
    serve = serve_process(settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")

    good = [request(settings, f"k-{i}") for i in range(100)]
    replied = [request(settings, f"r-{i}", reply_to=reply_topic) for i in range(20)]
    bad = {
        "other-model": request(settings, "b-model", model_name="someone-else"),
        "bad-type": request(settings, "b-type", features=RECORD | {"age": "old"}),
        "unknown": request(settings, "b-unknown", features=RECORD | {"height": 1.8}),
        "bad-reply": request(settings, "b-reply", reply_to="driftloop.labels"),
        "no-reply-topic": request(
            settings,
            "b-missing",
            reply_to=f"{settings.serve_kafka_reply_prefix}missing-{uuid.uuid4().hex}",
        ),
    }
    send(settings, good[:50] + list(bad.values()) + replied + good[50:])
    no_id = request(settings, "x")
    del no_id["request_id"]
    send_raw(settings, [b"{not json", orjson.dumps(no_id)])

    # Every valid request answered once, by the champion, on the predictions topic...
    ids = {e["request_id"] for e in good + replied}
    found = answers(settings, ids)
    counts = Counter(e["request_id"] for e in found)
    assert set(counts) == ids and set(counts.values()) == {1}, counts
    assert {e["model_version"] for e in found} == {first}
    assert all(e["prediction"] in ("no", "yes") and "scores" in e for e in found)

    # ... and the ones that named a reply topic there too, the same answer.
    settings_reply = settings.model_copy(update={"topic_predictions": reply_topic})
    replies = read_events(settings_reply, EventType.PREDICTION, lambda es: len(es) >= 20)
    assert sorted(e["request_id"] for e in replies) == sorted(e["request_id"] for e in replied)
    by_id = {e["request_id"]: e for e in found}
    assert all(e["event_id"] == by_id[e["request_id"]]["event_id"] for e in replies)

    # Bad requests: dead-lettered once each, with the rule they broke; none answered.
    assert not {"b-model", "b-type", "b-unknown", "b-reply", "b-missing"} & set(
        e["request_id"] for e in found
    )
    letters = read_events(settings, EventType.DEAD_LETTER, lambda es: len(es) >= 7)
    rules = Counter(letter["error"]["rule"] for letter in letters)
    assert rules == Counter(
        {"model_name": 1, "feature_type": 1, "unknown_feature": 1, "reply_to": 2, "json": 1,
         "required": 1}
    ), letters  # fmt: skip
    fields = {letter["error"]["field"] for letter in letters}
    assert {"model_name", "features.age", "features.height", "reply_to"} <= fields
    assert serve.metric("driftloop_serve_kafka_answered_total") == len(ids)


def test_a_swap_mid_stream_loses_nothing_and_each_answer_names_its_version(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    settings = serve_settings
    first = register(settings)
    promote(settings, first)
    serve = serve_process(settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")
    second = register(settings, bias=2.0)

    def swapped() -> bool:
        return serve.get(f"/v2/models/{settings.model_name}")[1]["versions"] == [second]

    # A stream of 50 requests every 0.1 s; the promotion after 500, the stream goes on until
    # the swap and 500 more.
    ids: set[str] = set()
    more = 500
    with EventProducer(settings, service="test-app") as producer:
        while more > 0:
            for _ in range(50):
                event = request(settings, f"s-{len(ids)}")
                ids.add(event["request_id"])
                producer.send(EventType.INFERENCE_REQUEST, event)
            producer.flush()
            if len(ids) == 500:
                promote(settings, second, previous=first)
            if len(ids) > 500 and swapped():
                more -= 50
            assert len(ids) < 50_000, "no swap"
            time.sleep(0.1)

    found = answers(settings, ids, timeout=120)
    counts = Counter(e["request_id"] for e in found)
    assert set(counts) == ids and set(counts.values()) == {1}
    versions = [e["model_version"] for e in sorted(found, key=lambda e: int(e["request_id"][2:]))]
    assert set(versions) == {first, second}, Counter(versions)
    assert versions[0] == first and versions[-1] == second


def test_exactly_one_answer_per_request_across_a_kill_9_and_a_restart(
    serve_settings: ServeSettings, serve_process: Start
) -> None:
    settings = serve_settings
    first = register(settings)
    promote(settings, first)
    serve = serve_process(settings)
    serve.wait_until(lambda: serve.get("/v2/health/ready")[0] == 200, "ready")

    ids = [f"c-{i}" for i in range(4_000)]
    with EventProducer(settings, service="test-app") as producer:
        for index, request_id in enumerate(ids):
            producer.send(EventType.INFERENCE_REQUEST, request(settings, request_id))
            if index == 1_000:
                producer.flush()
                # killed in the middle of the stream, while it answers
                serve.wait_until(
                    lambda: serve.metric("driftloop_serve_kafka_answered_total") > 200, "answers"
                )
                serve.kill()
        producer.flush()
    answered_before = len(answers(settings, set(ids), timeout=5))
    assert answered_before < len(ids), "the replica was killed after it had answered all"

    restarted = serve_process(settings)  # the same replica id: its open transaction aborts
    restarted.wait_until(lambda: restarted.get("/v2/health/ready")[0] == 200, "ready")
    found = answers(settings, set(ids), timeout=120)
    counts = Counter(e["request_id"] for e in found)
    assert set(counts) == set(ids), f"{len(set(ids) - set(counts))} requests never answered"
    duplicates = {request_id: n for request_id, n in counts.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} requests answered more than once"
