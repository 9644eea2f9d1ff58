"""The live-evidence loop against the real broker and MLflow: the online model takes over after
a change, a promotion that answers worse than its predecessor is rolled back, a challenger is
judged on its shadow answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from driftloop.events import EventType
from driftloop.messaging import EventProducer
from driftloop.online_snapshots import OnlineSnapshots
from driftloop.registry import CHALLENGER, ModelRegistry
from driftloop.services.trainer.lineage import OUTCOME
from driftloop.services.trainer.live_worker import LiveWorker
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.store import store_blobs
from tests.integration.trainer.conftest import (
    Events,
    classification_rows,
    in_thread,
    train_once,
    write_examples,
)

pytestmark = pytest.mark.integration


@contextmanager
def live_running(settings: TrainerSettings) -> Iterator[LiveWorker]:
    """The loop in a thread, its group reading the test's topics from their start."""
    with in_thread(LiveWorker(settings, start_at="earliest"), join_s=60) as worker:
        yield worker


def until(condition: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def publish(settings: TrainerSettings, event_type: EventType, *events: dict[str, Any]) -> None:
    with EventProducer(settings, service="test") as producer:
        for event in events:
            producer.send(event_type, event)
        producer.flush()


def labelled(
    settings: TrainerSettings,
    version: str,
    n: int,
    *,
    seed: int,
    offset: int,
    flip: bool = False,
    champion_right: bool = True,
    **shadows: tuple[str, bool],
) -> list[dict[str, Any]]:
    """Labelled examples the champion ``version`` answered, right or wrong; ``flip`` turns the
    concept over (the labels, not the inputs); each shadow ``role=(version, right)``."""
    rows = []
    for row in classification_rows(n, seed=seed, offset=offset):
        label = 1 - row["label"] if flip else row["label"]
        event = row | {
            "model_name": settings.model_name,
            "model_version": version,
            "label": label,
            "prediction": label if champion_right else 1 - label,
        }
        if shadows:
            event["shadows"] = [
                {"role": role, "model_version": v, "prediction": label if right else 1 - label}
                for role, (v, right) in shadows.items()
            ]
        rows.append(event)
    return rows


def everything(settings: TrainerSettings, topic: str) -> list[dict[str, Any]]:
    """Every event on ``topic`` up to its end now."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        seen: list[dict[str, Any]] = []
        while any(consumer.position(p) < ends[p] for p in partitions):
            for records in consumer.poll(timeout_ms=500).values():
                seen += [orjson.loads(record.value) for record in records]
        return seen
    finally:
        consumer.close()


def test_after_a_change_the_online_model_answers_with_a_snapshot_serve_can_read(
    trainer_settings: TrainerSettings,
) -> None:
    settings = trainer_settings.model_copy(
        # One snapshot, the switch's: the slot it names is not written over during the test.
        update={"trainer_online_windows": "200", "trainer_online_min_discordant": 10,
                "trainer_online_snapshot_s": 3600}
    )  # fmt: skip
    write_examples(settings, classification_rows(300))
    champion = train_once(settings)
    assert champion.outcome == "promoted", champion.reason
    version = str(champion.model_version)
    online = Events(settings, settings.topic_online_models)
    try:
        with live_running(settings) as worker:
            # At start: the champion answers, and the online learner is on (a classifier).
            start = online.wait_for(lambda seen: bool(seen))[0]
            assert (start["answerer"], start["snapshot_uri"]) == ("champion", None)
            assert start["champion_version"] == version
            assert worker.live is not None and worker.live.learner is not None

            before = labelled(settings, version, 300, seed=5, offset=10_000)
            after = labelled(
                settings, version, 1_500, seed=6, offset=20_000, flip=True, champion_right=False
            )
            publish(settings, EventType.LABELLED_EXAMPLE, *before, *after)
            seen = online.wait_for(lambda seen: any(e["answerer"] == "online" for e in seen), 180)
    finally:
        online.close()
    switch = next(e for e in seen if e["answerer"] == "online")
    # (the examples' partitions interleave: the flip is somewhere in the first few hundred)
    assert switch["champion_version"] == version and switch["updates"] > 0
    assert switch["evidence"]["online_wins"] > switch["evidence"]["champion_wins"]
    assert [e["answerer"] for e in seen[: seen.index(switch)]] == ["champion"], "no flapping"
    model = OnlineSnapshots(store_blobs(settings), settings.model_name).get(
        switch["snapshot_uri"], switch["online_version"]
    )
    # What a replica answers with: a model that gives a class for each request.
    requests = labelled(settings, version, 50, seed=7, offset=30_000)
    assert {model.predict_one(e["features"]) for e in requests} <= {0, 1}


def test_a_promotion_that_answers_worse_than_its_predecessor_is_rolled_back_once(
    trainer_settings: TrainerSettings, updates: Events
) -> None:
    write_examples(trainer_settings, classification_rows(400))
    weaker = trainer_settings.model_copy(update={"trainer_features": "x1"})
    first = train_once(weaker)
    assert first.outcome == "promoted", first.reason
    registry = ModelRegistry(trainer_settings.mlflow_tracking_uri)
    name = trainer_settings.model_name
    old, new = str(first.model_version), ""
    with live_running(trainer_settings) as worker:
        until(lambda: worker.live is not None and worker.live.champion == old)
        second = train_once(trainer_settings)
        assert second.outcome == "promoted", second.reason
        new = str(second.model_version)
        publish(trainer_settings, EventType.MODEL_UPDATE, second.model_update(name) or {})
        until(lambda: worker.live is not None and worker.live.champion == new)
        assert worker.live is not None and worker.live.on_probation

        # Serve answered with the new champion, the previous one in shadow: it was right
        # where the new one was wrong.
        worse = labelled(
            trainer_settings, new, 100, seed=8, offset=10_000, champion_right=False,
            previous=(old, True),
        )  # fmt: skip
        publish(trainer_settings, EventType.LABELLED_EXAMPLE, *worse)
        seen = updates.wait_for(lambda seen: any(e.get("reason") == "rollback" for e in seen))
        rolled = next(e for e in seen if e.get("reason") == "rollback")
        assert (rolled["model_version"], rolled["previous_version"]) == (old, new)
        assert rolled["evidence"]["previous_wins"] > rolled["evidence"]["new_wins"]
        assert registry.champion(name) == old

        # Its own update comes back; stragglers answered by the rolled-back version follow.
        until(lambda: worker.live is not None and worker.live.champion == old)
        stragglers = labelled(
            trainer_settings, new, 100, seed=9, offset=20_000, champion_right=False,
            previous=(old, True),
        )  # fmt: skip
        publish(trainer_settings, EventType.LABELLED_EXAMPLE, *stragglers)
        until(lambda: worker.live is not None and worker.live.examples == 200)
        until(lambda: worker.consumer.uncommitted == 0)
    moves = everything(trainer_settings, trainer_settings.topic_model_updates)
    assert [e["model_version"] for e in moves if e.get("reason") == "rollback"] == [old]
    assert registry.champion(name) == old


def test_a_challenger_is_judged_on_its_shadow_answers(
    trainer_settings: TrainerSettings, updates: Events, results: Events
) -> None:
    settings = trainer_settings.model_copy(update={"trainer_promotion_live_examples": 60})
    write_examples(settings, classification_rows(400))
    registry = ModelRegistry(settings.mlflow_tracking_uri)
    name = settings.model_name
    first = train_once(settings.model_copy(update={"trainer_features": "x1"}))
    assert first.outcome == "promoted" and first.alias == "champion", first.reason
    champion = str(first.model_version)
    assert registry.champion(name) == champion, "the first model needs no live evidence"

    # Better offline: the challenger, not the champion.
    candidate = train_once(settings)
    assert (candidate.outcome, candidate.alias) == ("challenger", CHALLENGER), candidate.reason
    assert candidate.reason.startswith("challenger:") and "shadow" in candidate.reason
    rejected = str(candidate.model_version)
    assert registry.version_of(name, CHALLENGER) == rejected
    assert registry.champion(name) == champion
    announced = candidate.model_update(name)
    assert announced is not None and announced["alias"] == CHALLENGER

    with live_running(settings) as worker:
        until(lambda: worker.live is not None and worker.live.challenger == rejected)
        # Live, the champion is right where the challenger is wrong: rejected early.
        worse = labelled(
            settings, champion, 60, seed=10, offset=10_000, challenger=(rejected, False)
        )
        publish(settings, EventType.LABELLED_EXAMPLE, *worse)
        verdict = results.wait_for(lambda seen: any(e["outcome"] == "rejected" for e in seen))[-1]
        assert verdict["model_version"] == rejected and verdict["champion_version"] == champion
        assert "evidently better" in verdict["reason"]
        assert registry.version_of(name, CHALLENGER) is None
        tags = registry.client.get_model_version(name, rejected).tags
        assert tags[OUTCOME] == "rejected"

        # The next candidate, offered and announced as the trainer does; live, not worse.
        offered = train_once(settings)
        assert offered.alias == CHALLENGER, offered.reason
        promoted = str(offered.model_version)
        publish(settings, EventType.MODEL_UPDATE, offered.model_update(name) or {})
        until(lambda: worker.live is not None and worker.live.challenger == promoted)
        better = labelled(
            settings, champion, 60, seed=11, offset=20_000, challenger=(promoted, True)
        )
        publish(settings, EventType.LABELLED_EXAMPLE, *better)
        update = updates.wait_for(
            lambda seen: any(e["model_version"] == promoted and e["alias"] == "champion"
                             for e in seen)
        )[-1]  # fmt: skip
        assert update["reason"] == "promotion" and update["previous_version"] == champion
        assert update["evidence"]["examples"] == 60
    assert registry.champion(name) == promoted
    assert registry.version_of(name, CHALLENGER) is None
    assert registry.client.get_model_version(name, promoted).tags[OUTCOME] == "promoted"
    outcomes = [(e["outcome"], e["model_version"]) for e in results.wait_for(lambda s: len(s) >= 2)]
    assert outcomes == [("rejected", rejected), ("promoted", promoted)]
