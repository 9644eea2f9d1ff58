"""LabelJoin: every outcome, the TTL on event time, the bound, and the changelog round trip."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from driftloop.events import EventType, ahead_of_clock
from driftloop.schemas import EventSchemas
from driftloop.services.ingest.join import EXAMPLE_NAMESPACE, LabelJoin, example_id, later

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def prediction(request_id: str, t: float, value: Any = 0) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"p-{request_id}-{t}",
        "event_time": at(t),
        "request_id": request_id,
        "model_name": "m",
        "model_version": "1",
        "features": {"x": 1.5, "colour": "red"},
        "prediction": value,
    }


def label(request_id: str, t: float, value: Any = 1) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_id": f"l-{request_id}-{t}",
        "event_time": at(t),
        "request_id": request_id,
        "label": value,
    }


def test_label_after_prediction_joins() -> None:
    join = LabelJoin(ttl_s=60)
    assert join.add_prediction(prediction("r", 0)).outcome == "pending"
    result = join.add_label(label("r", 30))
    assert result.outcome == "joined"
    example = result.example
    assert example is not None
    assert example["event_id"] == example_id("r")
    assert (example["prediction"], example["label"]) == (0, 1)
    assert (example["prediction_time"], example["label_time"]) == (at(0), at(30))
    assert example["event_time"] == at(30)
    EventSchemas().validate(EventType.LABELLED_EXAMPLE, example)


def test_label_before_prediction_joins_when_the_prediction_comes() -> None:
    join = LabelJoin(ttl_s=60)
    assert join.add_label(label("r", 5)).outcome == "pending"
    result = join.add_prediction(prediction("r", 0))
    assert result.outcome == "label_before_prediction"
    assert result.example is not None and result.example["label"] == 1
    assert result.example["event_time"] == at(5)


def test_a_label_after_the_ttl_is_late_and_the_prediction_expired() -> None:
    join = LabelJoin(ttl_s=60)
    join.add_prediction(prediction("r", 0))
    join.add_prediction(prediction("other", 61))  # moves event time past r's deadline
    assert join.expire() == {"expired_prediction": 1}
    assert join.add_label(label("r", 62)).outcome == "late_label"


def test_an_event_past_the_horizon_is_refused_and_expires_nothing() -> None:
    join = LabelJoin(ttl_s=60)
    join.horizon = T0.timestamp() + 3600
    join.add_prediction(prediction("r", 0))
    # A producer's clock a year ahead: it would move the watermark there, and r would expire.
    assert join.add_label(label("r", 365 * 86_400)).outcome == "ahead_of_clock"
    assert join.add_prediction(prediction("s", 7200)).outcome == "ahead_of_clock"
    assert join.expire() == {} and join.waiting == 1 and join.watermark == T0.timestamp()
    assert join.outcomes["ahead_of_clock"] == 2
    assert join.add_label(label("r", 3600)).outcome == "joined"  # at the horizon: fine
    violation = ahead_of_clock(at(7200), T0.timestamp(), 3600)
    assert violation is not None and violation.field == "event_time"
    assert "7200 s ahead" in violation.message
    assert ahead_of_clock(at(60), T0.timestamp(), 60) is None


def test_a_label_whose_prediction_never_comes_is_an_orphan() -> None:
    join = LabelJoin(ttl_s=60)
    join.add_label(label("r", 0))
    join.add_label(label("other", 100))
    assert join.expire()["orphan_label"] == 1
    assert join.add_prediction(prediction("r", 101)).outcome == "late_prediction"


def test_a_second_label_is_a_duplicate_and_the_first_stands(
    caplog: pytest.LogCaptureFixture,
) -> None:
    join = LabelJoin(ttl_s=60)
    join.add_prediction(prediction("r", 0))
    assert join.add_label(label("r", 1, value=1)).outcome == "joined"
    assert join.add_label(label("r", 2, value=1)) == ("duplicate_label", None)
    assert join.add_label(label("r", 3, value=0)) == ("duplicate_label", None)
    assert "first stands" in caplog.text
    # Two labels before the prediction: still one example, with the first label.
    join.add_label(label("q", 4, value="a"))
    assert join.add_label(label("q", 5, value="b")).outcome == "duplicate_label"
    result = join.add_prediction(prediction("q", 6))
    assert result.example is not None and result.example["label"] == "a"


def test_a_redelivered_prediction_is_a_duplicate() -> None:
    join = LabelJoin(ttl_s=60)
    join.add_prediction(prediction("r", 0))
    assert join.add_prediction(prediction("r", 0)).outcome == "duplicate_prediction"
    join.add_label(label("r", 1))
    assert join.add_prediction(prediction("r", 0)).outcome == "duplicate_prediction"


def test_outcomes_are_counted() -> None:
    join = LabelJoin(ttl_s=60)
    join.add_prediction(prediction("a", 0))
    join.add_label(label("a", 1))
    join.add_label(label("a", 2))
    join.add_label(label("b", 3))
    join.add_prediction(prediction("b", 4))
    assert join.outcomes == {
        "pending": 2,
        "joined": 1,
        "duplicate_label": 1,
        "label_before_prediction": 1,
    }


def test_finished_requests_are_forgotten_after_a_second_ttl() -> None:
    join = LabelJoin(ttl_s=60)
    join.add_prediction(prediction("a", 0))
    assert join.drain_changes()["a"][1]["status"] == "waiting"
    join.add_label(label("a", 10))
    assert len(join) == 1 and join.waiting == 0
    assert join.drain_changes()["a"][1]["status"] == "joined"
    join.add_label(label("z", 10 + 61))
    join.expire()
    assert join.drain_changes()["a"] == (0, None), "forgotten: a changelog tombstone"
    assert len(join) == 1
    assert join.add_label(label("a", 200)).outcome == "pending"  # a new request by then


def test_requests_that_start_and_finish_between_drains_leave_no_changelog_trace() -> None:
    join = LabelJoin(ttl_s=60)
    join.add_prediction(prediction("quick", 0))
    join.add_label(label("quick", 1))
    join.add_prediction(prediction("slow", 1))
    assert set(join.drain_changes()) == {"slow"}


def test_the_join_is_bounded_and_evicts_the_oldest() -> None:
    join = LabelJoin(ttl_s=3600, max_entries=3)
    for i in range(5):
        join.add_prediction(prediction(f"r{i}", i))
    assert len(join) == 3
    assert join.outcomes["evicted"] == 2
    assert join.add_label(label("r0", 10)).outcome == "pending"  # r0 was evicted


def test_state_survives_through_the_changelog() -> None:
    first = LabelJoin(ttl_s=60)
    first.add_prediction(prediction("waiting", 0), partition=2)
    first.add_prediction(prediction("done", 1), partition=1)
    changelog = dict(first.drain_changes())
    first.add_label(label("done", 2), partition=1)
    changelog |= first.drain_changes()  # compaction keeps the latest per key
    assert {rid: partition for rid, (partition, _) in changelog.items()} == {
        "waiting": 2,
        "done": 1,
    }
    assert first.drain_changes() == {}

    second = LabelJoin(ttl_s=60)
    for request_id, (_, snapshot) in changelog.items():
        second.restore(request_id, snapshot)
    assert second.add_label(label("waiting", 3)).outcome == "joined"
    assert second.add_label(label("done", 3)).outcome == "duplicate_label"


def test_a_prediction_kept_as_read_survives_the_changelog_as_json() -> None:
    """The worker hands the join each prediction's bytes as read; the changelog nests them as
    an object, and an entry restored from that (or from the older text form) joins as before."""
    waiting = prediction("waiting", 0)
    first = LabelJoin(ttl_s=60)
    first.add_prediction(waiting, partition=2, value=orjson.dumps(waiting))
    ((_, snapshot),) = first.drain_changes().values()
    record = orjson.loads(orjson.dumps(snapshot))  # what the changelog topic holds
    assert record["prediction"] == waiting  # an object, not its text

    text = record | {"prediction": orjson.dumps(waiting).decode()}  # as older versions wrote
    for stored in (record, text):
        second = LabelJoin(ttl_s=60)
        second.restore("waiting", stored)
        result = second.add_label(label("waiting", 3, value=0))
        assert result.outcome == "joined"
        assert result.example is not None
        assert result.example["features"] == waiting["features"]
        assert result.example["prediction_time"] == waiting["event_time"]


def test_revoked_partitions_are_dropped() -> None:
    join = LabelJoin(ttl_s=60)
    join.add_prediction(prediction("a", 0), partition=0)
    join.add_prediction(prediction("b", 0), partition=1)
    assert join.drop_partitions({1}) == 1
    assert join.add_label(label("b", 1), partition=1).outcome == "pending"
    assert join.add_label(label("a", 1), partition=0).outcome == "joined"


def test_waiting_counts_the_waiting_entries_through_every_change() -> None:
    """The count is kept as entries change; it must match a count of the entries themselves."""
    join = LabelJoin(ttl_s=60, max_entries=6)

    def counted() -> int:
        return sum(1 for entry in join._entries.values() if entry.status == "waiting")

    steps = [
        lambda: join.add_prediction(prediction("a", 0), partition=0),
        lambda: join.add_label(label("b", 1), partition=1),
        lambda: join.add_label(label("a", 2), partition=0),  # joined: no longer waiting
        lambda: join.add_label(label("a", 3), partition=0),  # duplicate
        *[lambda i=i: join.add_prediction(prediction(f"e{i}", 4), partition=2) for i in range(6)],
        lambda: join.drop_partitions({1}),
        lambda: join.restore("r", {"partition": 0, "deadline": 100.0, "status": "waiting",
                                   "prediction": "{}", "label": None}),
        lambda: join.restore("r", None),
        lambda: join.add_prediction(prediction("late", 200), partition=0),
        join.expire,  # the rest expire: markers, not waiting
    ]  # fmt: skip
    seen = []
    for step in steps:
        step()
        assert join.waiting == counted()
        seen.append(join.waiting)
    assert max(seen) == 7 and join.outcomes["evicted"] == 2 and seen[-1] == 1


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        LabelJoin(ttl_s=0)


def test_outcomes_do_not_depend_on_arrival_order_or_batching() -> None:
    """Every order and every split into batches of two predictions, then their labels."""
    predictions = [prediction("old", 0), prediction("new", 300)]
    labels = [label("old", 360), label("new", 360)]

    def splits(events: list[dict[str, Any]]) -> list[list[list[dict[str, Any]]]]:
        return [[events], [events[:1], events[1:]]]

    seen = set()
    for ps in (predictions, predictions[::-1]):
        for ls in (labels, labels[::-1]):
            for batches in (a + b for a in splits(ps) for b in splits(ls)):
                join = LabelJoin(ttl_s=60)
                for batch in batches:
                    for event in batch:
                        add = join.add_label if "label" in event else join.add_prediction
                        add(event)
                    join.expire()
                seen.add(tuple(sorted(join.outcomes.items())))
    assert seen == {(("expired_prediction", 1), ("joined", 1), ("late_label", 1), ("pending", 2))}


def test_example_ids_are_uuid5_of_the_request_id() -> None:
    for request_id in ["r", "req-ü-42", "x" * 300]:
        assert example_id(request_id) == str(uuid.uuid5(EXAMPLE_NAMESPACE, request_id))


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("2026-11-22T10:00:00.5Z", "2026-11-22T10:00:00.4Z", "2026-11-22T10:00:00.5Z"),
        ("2026-11-22T10:00:00.4Z", "2026-11-22T10:00:00.5Z", "2026-11-22T10:00:00.5Z"),
        ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00Z", "2026-11-22T10:00:00Z"),
        # Different layouts are compared as times, not as text.
        ("2026-11-22T10:00:00.9Z", "2026-11-22T10:00:01Z", "2026-11-22T10:00:01Z"),
        ("2026-11-22T12:00:00+02:00", "2026-11-22T10:30:00Z", "2026-11-22T10:30:00Z"),
        ("2026-11-22 10:00:02Z", "2026-11-22T10:00:01Z", "2026-11-22 10:00:02Z"),
    ],
)
def test_the_later_of_two_times(first: str, second: str, expected: str) -> None:
    assert later(first, second) == expected
