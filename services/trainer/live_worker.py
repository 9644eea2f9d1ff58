"""LiveWorker: the trainer's second loop. Labelled examples and model updates from Kafka into
:class:`~driftloop.services.trainer.live.LiveEvidence`; its decisions to the store, the registry and
Kafka.

- **online model**: every answerer change, and while the online model answers a snapshot at
  most every ``trainer_online_snapshot_s``, is an online-model event (compacted topic, keyed by
  model); a snapshot goes to the store's ring of slots first
  (:class:`~driftloop.online_snapshots.OnlineSnapshots`) and the event names its key. At start
  the state is announced as it stands: the champion answers until new evidence says otherwise
  (a trainer before this one may have left the online model answering with a snapshot this
  process cannot go on from).
- **rollback**: :func:`driftloop.services.trainer.commands.rollback`, compare-and-set on the
  champion that was judged, its model update carrying reason ``rollback`` and the evidence.
- **challenger**: promoted with :func:`driftloop.services.trainer.promotion.promote` (the same path
  a promotion at once takes) and announced, or withdrawn; a training result says which.
- **order**: one consumer reads the examples and the model updates, and when it runs behind on
  the examples Kafka hands it the few updates long before the examples written before them. A
  model update is therefore held (:class:`UpdateBarrier`) until the examples written before it
  (record timestamps before its ``event_time``) have been judged: otherwise the champion would
  move on before its predecessor's answers are judged, and those would pair with nothing.

Offsets are committed once a batch's effects are on the broker (at-least-once: a redelivered
example is learned twice, which an online learner takes in its stride), but a partition with a
held model update only up to before it: it was read, not applied. A new consumer group
starts at the topics' ends: the online learner is warmed from the store's most recent labelled
examples instead (``trainer_online_warmup_examples``), and the champion, its previous version
and a challenger are read from the registry (their probation and trial start afresh).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
from kafka.structs import TopicPartition
from prometheus_client import Counter, Gauge

from driftloop.errors import RegistryError
from driftloop.events import EventType, epoch
from driftloop.messaging import EventConsumer, EventProducer, Received
from driftloop.online_snapshots import OnlineSnapshots
from driftloop.registry import CHALLENGER, CHAMPION, PREVIOUS, ModelRegistry
from driftloop.services.trainer import commands
from driftloop.services.trainer.live import (
    Action,
    ChallengerVerdict,
    LiveConfig,
    LiveEvidence,
    OnlineDecision,
    Rollback,
)
from driftloop.services.trainer.online import OnlineLearner
from driftloop.services.trainer.promotion import promote, registered_update, withdraw
from driftloop.services.trainer.schema import FEATURE_PREFIX
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.store import ExampleStore, open_store, store_blobs

log = logging.getLogger(__name__)

LAG = Gauge(
    "driftloop_trainer_live_lag_seconds",
    "Seconds from the label of the last labelled example judged to its judgement: how far the "
    "live evidence runs behind the app's labels.",
)
ROLLBACKS = Counter(
    "driftloop_trainer_rollbacks_total",
    "Rollbacks the live evidence made: the previous champion, in shadow, answered evidently "
    "better than the new one.",
)
ONLINE_ANSWERING = Gauge(
    "driftloop_trainer_online_answering", "1 while the online model answers requests."
)
ONLINE_UPDATES = Counter(
    "driftloop_trainer_online_updates_total",
    "Labelled examples the online learner learned from (the warm-up's too).",
)
SWITCHES = Counter(
    "driftloop_trainer_answerer_switches_total",
    "Changes of the model that answers, by the one answering after (champion or online).",
    ["to"],
)
CHALLENGERS = Counter(
    "driftloop_trainer_challenger_verdicts_total",
    "Challengers judged on live evidence: promoted or rejected.",
    ["verdict"],
)


@dataclass(frozen=True)
class _Held:
    event: dict[str, Any]
    partition: TopicPartition  # where the update was read
    offset: int
    ends: dict[TopicPartition, int]  # per examples partition, the first example written after it


class UpdateBarrier:
    """Model updates held until the labelled examples written before each have been judged;
    released in the order they were read.

    One consumer reads both topics: running behind on the examples, it gets the few updates
    long before the examples written before them. Applied at once, the champion would move on
    (v1 to v2 to v3) before the examples v2 answered are judged, and those would pair with
    nothing (:meth:`~driftloop.services.trainer.live.LiveEvidence.observe` pairs only the
    current champion's answers).
    """

    def __init__(self) -> None:
        self._held: deque[_Held] = deque()

    def __len__(self) -> int:
        return len(self._held)

    def hold(
        self,
        event: dict[str, Any],
        partition: TopicPartition,
        offset: int,
        ends: Mapping[TopicPartition, int],
    ) -> None:
        """Hold ``event``, read at ``offset`` of ``partition``, until each examples partition
        in ``ends`` has been read up to the offset there (the first example written after the
        update)."""
        self._held.append(_Held(event, partition, offset, dict(ends)))

    def release(self, positions: Mapping[TopicPartition, int | None]) -> list[dict[str, Any]]:
        """The held updates, oldest first, whose examples have all been judged.

        ``positions``: each examples partition assigned now, with the offset of the next
        example to be read from it (None: unknown yet). A partition no longer assigned is not
        waited for: its examples are another consumer's now.
        """
        released: list[dict[str, Any]] = []
        while self._held and self._reached(self._held[0], positions):
            released.append(self._held.popleft().event)
        return released

    def commit_limits(self) -> dict[TopicPartition, int]:
        """Per updates partition, the offset of its oldest held update: offsets are committed
        no further, so that a restart reads the held updates again (they were read, not
        applied)."""
        limits: dict[TopicPartition, int] = {}
        for held in self._held:
            limits.setdefault(held.partition, held.offset)
        return limits

    @staticmethod
    def _reached(held: _Held, positions: Mapping[TopicPartition, int | None]) -> bool:
        for partition, end in held.ends.items():
            if partition not in positions:
                continue  # revoked
            position = positions[partition]
            if position is None or position < end:
                return False
        return True


class LiveWorker:
    """The live-evidence loop: :meth:`run` until ``stop`` is set.

    Parameters:
        settings: the trainer's settings.
        store: the example store the warm-up reads; the settings' by default.
        start_at: where a consumer group without committed offsets starts: ``latest`` (the
            warm-up stands for what came before) or ``earliest``.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        store: ExampleStore | None = None,
        start_at: Literal["latest", "earliest"] = "latest",
    ) -> None:
        self.settings = settings
        self.name = settings.model_name
        self._store = store
        self.registry = ModelRegistry(settings.mlflow_tracking_uri)
        self.snapshots = OnlineSnapshots(store_blobs(settings), self.name)
        self.consumer = EventConsumer(
            settings,
            settings.trainer_live_group_id,
            [EventType.LABELLED_EXAMPLE, EventType.MODEL_UPDATE],
            service="trainer-live",
            auto_offset_reset=start_at,
        )
        self.producer = EventProducer(settings, service="trainer-live")
        self.barrier = UpdateBarrier()
        self._examples_topic = settings.topic_for(EventType.LABELLED_EXAMPLE)
        self.live: LiveEvidence | None = None  # set by run: the registry is read there
        self._answerer = "champion"
        self._counted_updates = 0
        self._label_time: str | None = None  # of the last labelled example judged

    def run(self, stop: threading.Event) -> None:
        """Start from the registry and the store, then consume and decide until ``stop``."""
        live = self.live = self._start()
        self._apply([live.announce(time.time())])
        self.producer.flush()
        while not stop.is_set():
            batch = self.consumer.poll(timeout_ms=500)
            for received in batch:
                if received.event_type is EventType.MODEL_UPDATE:
                    self._hold(received)
                    continue
                self._apply(live.observe(received.event, time.time()))
                self._label_time = received.event.get("label_time") or self._label_time
            released = self._release(live)  # after the whole batch: positions are past it
            if self._label_time is not None:
                LAG.set(max(0.0, time.time() - epoch(self._label_time)))
            self._apply(live.tick(time.time()))
            self._count_updates(live)
            if self.consumer.uncommitted or released:
                self.producer.flush()
                # Held updates' partitions no further than the oldest held one; the rest all
                # (examples are judged, dead letters sent): a restart reads the held ones again.
                self.consumer.commit_before(self.barrier.commit_limits())

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()

    # --- state -------------------------------------------------------------------------------

    def _start(self) -> LiveEvidence:
        registry, name = self.registry, self.name
        champion = registry.champion(name)
        live = LiveEvidence(
            name,
            LiveConfig.from_settings(self.settings),
            champion=champion,
            previous=registry.version_of(name, PREVIOUS) if champion else None,
            challenger=registry.version_of(name, CHALLENGER) if champion else None,
            task=self._task(champion),
        )
        self._warm(live)
        log.info(
            "live evidence started",
            extra={"champion": champion, "previous": live.previous,
                   "challenger": live.challenger, "online_learner": live.learner is not None,
                   "warmed_on": live.updates},
        )  # fmt: skip
        return live

    def _task(self, version: str | None) -> str | None:
        return None if version is None else self.registry.model_card(self.name, version).task

    def _hold(self, received: Received) -> None:
        """Hold a model update of this model until the examples written before it are judged.

        Before it: the examples' record timestamps (when ingest wrote them) are before the
        update's ``event_time``; where every example is, up to the partition's end now. Not the
        ends at the time the update is read: Kafka hands it over late, too, when the consumer
        has much of the examples buffered, and the examples the new champion answered by then
        would be judged against the old one.
        """
        event = received.event
        if event["model_name"] != self.name:
            return
        examples = self.consumer.assigned(self._examples_topic)
        written = self.consumer.offsets_for_time(examples, int(epoch(event["event_time"]) * 1000))
        ends = {p: offset for p, offset in written.items() if offset is not None}
        ends |= self.consumer.end_offsets(p for p, offset in written.items() if offset is None)
        origin = received.origin
        partition = TopicPartition(origin["topic"], origin["partition"])
        self.barrier.hold(event, partition, origin["offset"], ends)

    def _release(self, live: LiveEvidence) -> int:
        """Apply the held updates whose examples have been judged; how many."""
        if not self.barrier:
            return 0
        positions = {
            partition: self.consumer.position(partition)
            for partition in self.consumer.assigned(self._examples_topic)
        }
        released = self.barrier.release(positions)
        for event in released:
            self._apply(self._model_update(live, event))
        return len(released)

    def _model_update(self, live: LiveEvidence, event: dict[str, Any]) -> list[Action]:
        if event["model_name"] != self.name:
            return []
        version, alias = str(event["model_version"]), event.get("alias", CHAMPION)
        if alias == CHALLENGER:
            live.challenger_offered(version)
            return []
        if alias != CHAMPION or version == live.champion:
            return []
        reason = event.get("reason", "promotion")
        actions = live.champion_changed(
            version, event.get("previous_version"), self._task(version), time.time(), reason
        )
        log.info(
            "champion is %s (%s): live evidence starts again",
            version,
            reason,
            extra={"on_probation": live.on_probation, "online_learner": live.learner is not None},
        )
        self._warm(live)
        return actions

    def _warm(self, live: LiveEvidence) -> None:
        """A learner that has learned nothing yet learns the store's most recent examples."""
        learner, limit = live.learner, self.settings.trainer_online_warmup_examples
        if learner is None or learner.updates or limit <= 0:
            return
        try:
            if self._store is None:
                self._store = open_store(self.settings, dedupe_horizon_s=0)
            warm_up(learner, self._store, self.name, limit)
        except Exception:  # best effort: the learner learns from the topic anyway
            log.exception("the online learner's warm-up failed; it starts from nothing")

    def _count_updates(self, live: LiveEvidence) -> None:
        updates = live.updates
        if updates > self._counted_updates:
            ONLINE_UPDATES.inc(updates - self._counted_updates)
        self._counted_updates = updates

    # --- effects -----------------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, OnlineDecision):
                self._publish(action)
            elif isinstance(action, Rollback):
                self._roll_back(action)
            else:
                self._settle(action)

    def _publish(self, decision: OnlineDecision) -> None:
        key = None
        if decision.snapshot:
            assert self.live is not None and self.live.learner is not None
            started = time.perf_counter()
            key = self.snapshots.put(decision.online_version, self.live.learner.model)
            self.live.snapshot_took(time.perf_counter() - started)
        self.producer.send(EventType.ONLINE_MODEL, decision.event(self.name, key))
        ONLINE_ANSWERING.set(int(decision.answerer == "online"))
        if decision.answerer != self._answerer:
            SWITCHES.labels(decision.answerer).inc()
            log.info(
                "the %s model answers now",
                decision.answerer,
                extra={"online_version": decision.online_version,
                       "champion_version": decision.champion_version,
                       "evidence": decision.evidence,
                       "behind_label_s": None if self._label_time is None
                       else round(time.time() - epoch(self._label_time), 3)},
            )  # fmt: skip
            self._answerer = decision.answerer

    def _roll_back(self, rollback: Rollback) -> None:
        try:
            update = commands.rollback(
                self.settings, expected=rollback.champion, evidence=rollback.evidence
            )
        except RegistryError as error:
            log.warning("live evidence asked for a rollback, but: %s", error)
            return
        if update is None:
            log.info("no rollback: the champion is no longer %s", rollback.champion)
            return
        ROLLBACKS.inc()
        log.warning(
            "rolled back from %s to %s: the previous champion answered evidently better live",
            rollback.champion,
            rollback.previous,
            extra={"evidence": rollback.evidence},
        )

    def _settle(self, verdict: ChallengerVerdict) -> None:
        """Promote or withdraw the challenger, if the registry is still as it was judged."""
        # TensorFlow comes with the trainer's module: imported only when a verdict needs it.
        from driftloop.services.trainer.trainer import TrainingOutcome

        registry, name, version = self.registry, self.name, verdict.version
        if registry.champion(name) != verdict.champion:
            log.info("challenger %s not settled: the champion moved", version)
            return
        update = registered_update(
            registry, name, version, previous=None, reason="promotion",
            evidence=verdict.evidence, with_trigger=True,
        )  # fmt: skip
        if verdict.promote:
            if registry.version_of(name, CHALLENGER) != version:
                log.info("challenger %s not promoted: it is no longer the challenger", version)
                return
            update["previous_version"] = promote(registry, name, version)
            self.producer.send(EventType.MODEL_UPDATE, update)
        elif not withdraw(registry, name, version):
            return
        outcome = "promoted" if verdict.promote else "rejected"
        CHALLENGERS.labels(outcome).inc()
        log.info("challenger %s %s", version, verdict.reason, extra={"evidence": verdict.evidence})
        result = TrainingOutcome(
            outcome,
            verdict.reason,
            (update["trigger_id"],) if update["trigger_id"] else (),
            run_id=update["run_id"],
            model_version=version,
            champion_version=verdict.champion,
            metrics=update["metrics"],
        )
        self.producer.send(EventType.TRAINING_RESULT, result.training_result(name))


def warm_up(learner: OnlineLearner, store: ExampleStore, model_name: str, limit: int) -> int:
    """Teach ``learner`` the store's last ``limit`` labelled examples of ``model_name``, oldest
    first; returns how many.

    The files are read newest first, one at a time, until they hold enough of the model's rows.
    """
    files: list[list[tuple[dict[str, Any], Any]]] = []
    found = 0
    for manifest in reversed(store.manifests()):
        if found >= limit:
            break
        if manifest.model_name not in (None, model_name):
            continue
        frame = store.read_frame([manifest])
        frame = frame[(frame["model_name"] == model_name) & frame["label"].notna()]
        frame = frame.sort_values(["event_time", "event_id"], kind="stable")
        names = [c for c in frame.columns if c.startswith(FEATURE_PREFIX)]
        strip = len(FEATURE_PREFIX)
        rows = zip(frame[names].to_dict("records"), frame["label"].tolist(), strict=True)
        files.append(
            [
                ({k[strip:]: _value(v) for k, v in features.items() if not pd.isna(v)}, label)
                for features, label in rows
            ]
        )
        found += len(frame)
    examples = [row for rows in reversed(files) for row in rows][-limit:] if limit > 0 else []
    for features, label in examples:
        learner.learn(features, _value(label))
    return len(examples)


def _value(value: Any) -> Any:
    """A value as an event carries it: a numpy scalar (the store's) as the Python one; a
    snapshot's answers end up in serve's JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
