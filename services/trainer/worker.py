"""TrainerWorker: triggers from Kafka, one fit at a time in a thread, verdicts to Kafka.

The loop polls the triggers topic; the triggers of a batch go to the
:class:`TriggerCoalescer`. When no fit runs, the pending refit starts in the fit thread and the
trigger partitions are *paused*: the loop keeps polling (which keeps the consumer in its group
however long the fit takes: ``max.poll.interval.ms`` counts from the last poll) but fetches
nothing, so the triggers that arrive meanwhile wait on the broker and come in one batch after
the verdict: one follow-up fit for all of them.

Exactly-once effects over at-least-once delivery:

- before a refit starts, each of its trigger ids is looked up in MLflow; one a finished run
  already answered is not trained again (a ``skipped`` result says so);
- offsets are committed only after the verdict is recorded (the run's outcome tag) and its
  events are on the broker; a crash before that re-reads the trigger after the restart, and
  a crash mid-fit leaves the champion untouched (the alias moves only at the very end).

Bootstrap: while there is no champion, the store is checked every
``trainer_bootstrap_poll_s`` and the first model is trained as soon as it holds
``trainer_min_examples`` labelled examples, triggered or not. That internal trigger's id is
the store's content hash, so the same data is never tried twice.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kafka import ConsumerRebalanceListener
from kafka.structs import TopicPartition
from prometheus_client import Counter, Gauge

from driftloop.events import EventType, new_event
from driftloop.messaging import EventConsumer, EventProducer
from driftloop.registry import CHALLENGER, CHAMPION, PREVIOUS
from driftloop.services.trainer.coalesce import Refit, TriggerCoalescer
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.trainer import OFFERED, Trainer, TrainingOutcome
from driftloop.store import ExampleStore

log = logging.getLogger(__name__)

TRIGGERS = Counter(
    "driftloop_trainer_triggers_total",
    "Triggers taken in, by what became of them: queued, coalesced (into a pending refit), "
    "duplicate, ignored (another model), handled_before (a finished run answered it).",
    ["admission"],
)
FITTING = Gauge("driftloop_trainer_fitting", "1 while a fit runs.")


class _Partitions(ConsumerRebalanceListener):
    """Keeps the assignment, and pauses newly assigned partitions while a fit runs."""

    def __init__(self) -> None:
        self.assigned: set[TopicPartition] = set()
        self.consumer: EventConsumer | None = None
        self.paused = False

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.assigned -= set(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("trigger partitions assigned", extra={"partitions": sorted(map(str, assigned))})
        self.assigned |= set(assigned)
        if self.paused and self.consumer is not None and assigned:
            self.consumer.pause(*assigned)


class TrainerWorker:
    """The consuming half of the trainer: :meth:`run` until ``stop`` is set.

    Parameters:
        settings: the trainer's settings.
        trainer: the refit pipeline; built from settings by default.
        store: the example store (for the bootstrap check); the trainer's by default.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        trainer: Trainer | None = None,
        store: ExampleStore | None = None,
    ) -> None:
        self.settings = settings
        self.trainer = trainer or Trainer(settings, store)
        self.store = store or self.trainer.store
        self.coalescer = TriggerCoalescer(settings.model_name)
        self._partitions = _Partitions()
        self.consumer = EventConsumer(
            settings,
            settings.trainer_group_id,
            [EventType.TRIGGER],
            service="trainer",
            listener=self._partitions,
            session_timeout_ms=settings.trainer_session_timeout_ms,
            heartbeat_interval_ms=min(3000, settings.trainer_session_timeout_ms // 3),
        )
        self._partitions.consumer = self.consumer
        self.producer = EventProducer(settings, service="trainer")
        self._fit_stop = threading.Event()
        self._next_bootstrap = 0.0
        self.outcomes: list[TrainingOutcome] = []  # the latest verdicts, for health and tests

    def run(self, stop: threading.Event) -> None:
        """Poll, coalesce, fit in the background, publish verdicts, commit; until ``stop``."""
        executor = ThreadPoolExecutor(1, thread_name_prefix="trainer-fit")
        running: tuple[Refit, Refit, Future[TrainingOutcome]] | None = None
        try:
            while not stop.is_set():
                for received in self.consumer.poll(timeout_ms=200 if running else 500):
                    self._admit(received.event)
                if running is not None:
                    if not running[2].done():
                        continue
                    done, running = running, None
                    self._finish(*done)
                elif not self.coalescer.pending:
                    self._maybe_bootstrap()
                running = self._start(executor)
                self._commit_if_idle(running)
        finally:
            # A fit stops at its next batch; one already past its fit (registering) finishes,
            # and its verdict is published and committed like any other.
            self._fit_stop.set()
            executor.shutdown(wait=True)
            if running is not None and running[2].exception() is None:
                self._finish(*running)
                self._commit_if_idle(None)
            elif running is not None:
                log.info("stopped in the middle of a fit; its triggers are read again on restart")

    def _finish(self, queued: Refit, refit: Refit, future: Future[TrainingOutcome]) -> None:
        self._record(refit, future.result())
        self.coalescer.finish(queued)
        self._resume()

    def _commit_if_idle(self, running: object) -> None:
        if running is None and self.coalescer.pending is None and self.consumer.uncommitted:
            # Everything polled has its verdict (or needed none).
            self.consumer.commit()

    def close(self) -> None:
        self.consumer.close()
        self.producer.close()
        self.trainer.close()

    # --- steps -------------------------------------------------------------------------------

    def _admit(self, trigger: dict[str, Any]) -> None:
        admission = self.coalescer.add(trigger)
        TRIGGERS.labels(admission).inc()
        if admission == "duplicate" and not self._in_flight(trigger["trigger_id"]):
            # A redelivery of a trigger this process answered: say so, train nothing.
            self._skip_if_handled(trigger["trigger_id"])
            self.producer.flush()

    def _in_flight(self, trigger_id: str) -> bool:
        return any(
            refit is not None and trigger_id in refit.trigger_ids
            for refit in (self.coalescer.running, self.coalescer.pending)
        )

    def _skip_if_handled(self, trigger_id: str) -> bool:
        """Publish a ``skipped`` result when a finished run answered ``trigger_id``."""
        before = self.trainer.lineage.handled(trigger_id)
        if before is None:
            return False
        reason = f"skipped: run {before.run_id} already answered this trigger ({before.outcome})"
        self._publish_result(
            TrainingOutcome("skipped", reason, (trigger_id,), run_id=before.run_id)
        )
        name = self.settings.model_name
        if before.outcome in OFFERED and before.model_version is not None:
            # The process may have died between the promotion and its announcement: announce
            # it again while it still holds the alias (a replica already on it changes nothing).
            registry = self.trainer.registry
            for alias, previous in ((CHAMPION, PREVIOUS), (CHALLENGER, None)):
                if registry.version_of(name, alias) != before.model_version:
                    continue
                again = TrainingOutcome(
                    before.outcome, reason, (trigger_id,), run_id=before.run_id,
                    model_version=before.model_version, metrics=before.metrics, alias=alias,
                    previous_version=previous and registry.version_of(name, previous),
                )  # fmt: skip
                self.producer.send(EventType.MODEL_UPDATE, again.model_update(name) or {})
        return True

    def _start(
        self, executor: ThreadPoolExecutor
    ) -> tuple[Refit, Refit, Future[TrainingOutcome]] | None:
        """Start the pending refit, less its triggers that a finished run answered already."""
        queued = self.coalescer.start()
        if queued is None:
            return None
        handled = {i for i in queued.trigger_ids if self._skip_if_handled(i)}
        TRIGGERS.labels("handled_before").inc(len(handled))
        refit = queued.without(handled)
        if refit is None:
            self.producer.flush()
            self.coalescer.finish(queued)
            return None
        self._pause()
        FITTING.set(1)
        log.info("refit started", extra={"trigger_ids": list(refit.trigger_ids)})
        return queued, refit, executor.submit(self.trainer.train, refit, self._fit_stop)

    def _record(self, refit: Refit, outcome: TrainingOutcome) -> None:
        """Publish the verdict's events and wait until the broker has them."""
        FITTING.set(0)
        update = outcome.model_update(self.settings.model_name)
        if update is not None:
            self.producer.send(EventType.MODEL_UPDATE, update)
        for trigger_id in refit.trigger_ids:
            self._publish_result(outcome, trigger_id)
        self.producer.flush()
        outcome.model = None  # not kept across refits
        self.outcomes = [*self.outcomes[-99:], outcome]

    def _publish_result(self, outcome: TrainingOutcome, trigger_id: str | None = None) -> None:
        event = outcome.training_result(self.settings.model_name, trigger_id)
        self.producer.send(EventType.TRAINING_RESULT, event)

    def _maybe_bootstrap(self) -> None:
        """With no champion, queue a refit once the store holds enough examples."""
        now = time.monotonic()
        if now < self._next_bootstrap:
            return
        self._next_bootstrap = now + self.settings.trainer_bootstrap_poll_s
        try:
            if self.trainer.registry.champion(self.settings.model_name) is not None:
                return
            manifests = self.store.manifests()
        except Exception:  # the registry or the store is away: try again next time
            log.exception("bootstrap check failed")
            return
        rows = sum(m.rows for m in manifests)
        if rows < self.settings.trainer_min_examples:
            return
        trigger = new_event(
            trigger_id=f"bootstrap-{ExampleStore.window_hash(manifests)[:24]}",
            model_name=self.settings.model_name,
            model_version=None,
            reason="data_arrival",
            evidence={"source": "trainer bootstrap", "examples": rows},
        )
        admission = self.coalescer.add(trigger)
        if admission == "queued":
            log.info("no champion yet and %d examples stored: training the first model", rows)

    def _pause(self) -> None:
        self._partitions.paused = True
        if self._partitions.assigned:
            self.consumer.pause(*self._partitions.assigned)

    def _resume(self) -> None:
        self._partitions.paused = False
        if self._partitions.assigned:
            self.consumer.resume(*self._partitions.assigned)
