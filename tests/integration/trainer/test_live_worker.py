"""The live worker against the real broker and MLflow: when it runs behind on the labelled
examples, a model update read before them waits for them (examples and updates are applied in
the order they happened), and a held update is read again after a restart."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka import TopicPartition

from driftloop.events import EventType
from driftloop.messaging import EventConsumer, Received
from driftloop.services.trainer.live_worker import LiveWorker
from driftloop.services.trainer.promotion import model_update_event
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.trainer import TrainingOutcome
from tests.integration.trainer.conftest import (
    classification_rows,
    in_thread,
    train_once,
    write_examples,
)
from tests.integration.trainer.test_live import everything, labelled, publish, until

pytestmark = pytest.mark.integration


class Gate:
    """Holds ``consumer``'s reader before its next poll while closed, as a busy process (a fit
    in the same process, a slow host) would: the topics fill up meanwhile."""

    def __init__(self, consumer: EventConsumer) -> None:
        self._poll = consumer.poll
        consumer.poll = self._gated  # type: ignore[method-assign]
        self._open = threading.Event()
        self._open.set()
        self._waiting = threading.Event()

    def _gated(self, timeout_ms: int = 1000) -> list[Received]:
        if not self._open.is_set():
            self._waiting.set()
            self._open.wait()
            self._waiting.clear()
        return self._poll(timeout_ms)

    @contextmanager
    def closed(self) -> Iterator[None]:
        """The reader waits (once it is waiting, the block runs); it goes on after the block."""
        self._open.clear()
        try:
            assert self._waiting.wait(timeout=60), "the worker never came back to poll"
            yield
        finally:
            self._open.set()


def update(settings: TrainerSettings, outcome: TrainingOutcome, previous: str) -> dict[str, Any]:
    """The model update promoting ``outcome``'s version to champion, as the trainer sends it."""
    assert outcome.model_version is not None and outcome.run_id is not None
    return model_update_event(
        settings.model_name,
        str(outcome.model_version),
        outcome.run_id,
        previous=previous,
        metrics=outcome.metrics,
    )


def answered_online(
    settings: TrainerSettings, champion: str, n: int, *, seed: int, offset: int
) -> list[dict[str, Any]]:
    """Labelled examples the online model answered (wrongly), the champion ``champion`` scored
    in shadow (rightly)."""
    return [
        row | {"model_version": "online.1", "answered_by": "online",
               "prediction": 1 - row["label"],
               "shadows": [{"role": "champion", "model_version": champion,
                            "prediction": row["label"]}]}
        for row in labelled(settings, champion, n, seed=seed, offset=offset)
    ]  # fmt: skip


def other_models(n: int, size: int) -> list[dict[str, Any]]:
    """Another model's labelled examples of ``size`` bytes or so: passed over at once, they
    stand for a backlog larger than one fetch of each partition."""
    pad = "x" * size
    return [
        row | {"model_name": "another-model", "event_id": f"other-{i}",
               "request_id": f"other-{i}", "features": {"pad": pad}}
        for i, row in enumerate(classification_rows(n, seed=99))
    ]  # fmt: skip


@pytest.mark.parametrize("late", [False, True], ids=["v2-read-at-once", "v2-read-late"])
def test_a_model_update_waits_for_the_examples_written_before_it(
    trainer_settings: TrainerSettings, late: bool
) -> None:
    """The champion moves to v2, the examples v2 answered (the online model answering) pile up
    behind a backlog, then v3 is promoted: v2's examples are judged with v2 as the champion,
    and it takes back over from the online model, before v3 is applied. Whether v2's update
    was read at once or (``late``) behind the backlog too."""
    settings = trainer_settings.model_copy(
        update={"trainer_online_windows": "200", "trainer_online_min_discordant": 10,
                "trainer_online_snapshot_s": 3600}
    )  # fmt: skip
    write_examples(settings, classification_rows(400))
    weaker = settings.model_copy(update={"trainer_features": "x1"})
    first = train_once(weaker)
    assert first.outcome == "promoted", first.reason
    # Two more versions, registered but not promoted (no better, and the gate asks for the
    # impossible): the test's own model updates promote them.
    unpromoted = weaker.model_copy(update={"trainer_gate_margin": 0.99})
    second, third = train_once(unpromoted), train_once(unpromoted)
    assert (second.outcome, third.outcome) == ("rejected", "rejected")
    v1, v2, v3 = (str(o.model_version) for o in (first, second, third))

    worker = LiveWorker(settings, start_at="earliest")
    gate = Gate(worker.consumer)
    with in_thread(worker, join_s=60):
        until(lambda: worker.live is not None and worker.live.champion == v1)
        # v1 answers wrongly: the online model (warmed on the store) takes over.
        wrong = labelled(settings, v1, 100, seed=5, offset=10_000, champion_right=False)
        publish(settings, EventType.LABELLED_EXAMPLE, *wrong)
        until(lambda: worker.live is not None and worker.live.arbiter.answerer == "online")
        promoted = update(settings, second, v1)
        if not late:  # v2 is promoted while the worker keeps up
            publish(settings, EventType.MODEL_UPDATE, promoted)
            until(lambda: worker.live is not None and worker.live.champion == v2)
        with gate.closed():  # the worker falls behind
            if late:  # v2's update waits with what follows: Kafka hands both updates over first
                publish(settings, EventType.MODEL_UPDATE, promoted)
            publish(settings, EventType.LABELLED_EXAMPLE, *other_models(180, 60_000))
            publish(
                settings,
                EventType.LABELLED_EXAMPLE,
                *answered_online(settings, v2, 30, seed=6, offset=20_000),
            )
            publish(settings, EventType.MODEL_UPDATE, update(settings, third, v2))
        until(lambda: worker.live is not None and worker.live.champion == v3, timeout=120)
        assert worker.live is not None and worker.live.examples == 130
        until(lambda: worker.consumer.uncommitted == 0)  # its events are on the broker

    moves = everything(settings, settings.topic_online_models)
    assert [(e["answerer"], e["champion_version"]) for e in moves] == [
        ("champion", v1),  # at start
        ("online", v1),
        ("champion", v2),  # v2's examples were judged with v2 as the champion
    ]
    assert not worker.barrier


def test_a_held_model_update_is_read_again_after_a_restart(
    trainer_settings: TrainerSettings,
) -> None:
    """Offsets of a partition with a held update are committed up to before it; the rest are
    committed in full."""
    settings, name = trainer_settings, trainer_settings.model_name
    moves = [
        model_update_event(name, str(v), f"run-{v}", previous=None, metrics={}) for v in (1, 2, 3)
    ]
    publish(settings, EventType.MODEL_UPDATE, *moves)
    publish(settings, EventType.LABELLED_EXAMPLE, *classification_rows(20))
    group = f"{settings.trainer_live_group_id}-restart"
    topics = [EventType.LABELLED_EXAMPLE, EventType.MODEL_UPDATE]

    def reader() -> EventConsumer:
        return EventConsumer(settings, group, topics, service="test", auto_offset_reset="earliest")

    def read(consumer: EventConsumer, n: int) -> list[Received]:
        seen: list[Received] = []
        for _ in range(60):
            seen += consumer.poll(timeout_ms=500)
            if len(seen) >= n:
                return seen
        raise AssertionError(f"read {len(seen)} of {n} events")

    with reader() as consumer:
        seen = read(consumer, 23)
        held = next(r for r in seen if r.event.get("model_version") == "2").origin
        partition = TopicPartition(held["topic"], held["partition"])
        consumer.commit_before({partition: held["offset"]})
        assert consumer.uncommitted == 0
    with reader() as consumer:
        again = read(consumer, 2)
        assert [r.event["model_version"] for r in again] == ["2", "3"]
        assert consumer.poll(timeout_ms=2000) == []  # the examples were committed in full
