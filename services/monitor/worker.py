"""MonitorWorker: the monitor's Kafka and registry edges around the pure DriftMonitor.

One consumer group reads predictions, labelled examples, model updates and training results
(a rejected fit re-arms the drift episode); each batch is
handed to :class:`~services.monitor.monitor.DriftMonitor` in order, after the references of
any version it has not met are loaded from the registry (in a thread, cached per version;
a version whose load failed is retried after ``REFERENCE_RETRY_S``). What the core returns
goes out as:

- trigger events, at once (``acks=all``; offsets commit after they are stored);
- for each judged window, an Evidently report built in a thread (skipped while more than
  ``monitor_report_backlog`` wait, and for clean windows at most one per model each
  ``CLEAN_REPORT_INTERVAL_S``), then, for a drifted window, its drift event linking to it;
- metrics, and a line in :attr:`MonitorWorker.recent` for the HTTP page.

The monitor's state (windows, detectors, episodes) lives in memory: a restart begins new
windows from the committed offsets, which costs at most a window's worth of detection delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from mlflow.exceptions import MlflowException
from prometheus_client import Counter, Gauge

from driftloop.async_messaging import AsyncEventConsumer, AsyncEventProducer
from driftloop.events import EventType, ahead_of_clock
from driftloop.registry import ModelRegistry
from services.monitor.budget import FalseAlarmBudget
from services.monitor.monitor import (
    ConceptDrift,
    DriftMonitor,
    ModelReference,
    TriggerDecision,
    WindowVerdict,
)
from services.monitor.report import WindowReports
from services.monitor.settings import MonitorSettings

log = logging.getLogger(__name__)

# The events whose times move the monitor's clock (its windows, detectors and policies).
TIMED = frozenset({EventType.PREDICTION, EventType.LABELLED_EXAMPLE})

EVENTS = Counter("driftloop_monitor_events_total", "Events the monitor handled, by kind.", ["kind"])
WINDOWS = Counter(
    "driftloop_monitor_windows_total",
    "Closed windows by verdict (drift, clean, no_verdict).",
    ["model", "verdict"],
)
NO_VERDICT = Counter(
    "driftloop_monitor_no_verdict_total",
    "Windows without a verdict, by why (not_loaded, no_reference, too_few_events).",
    ["model", "reason"],
)
FEATURE_SCORE = Gauge(
    "driftloop_monitor_feature_drift_score",
    "Each feature's drift scores in the last judged window (ks, wasserstein, psi, chi2, js, "
    "unseen).",
    ["model", "feature", "statistic"],
)
FEATURE_P = Gauge(
    "driftloop_monitor_feature_p_value",
    "Each feature's p-value in the last judged window.",
    ["model", "feature"],
)
TRIGGERS = Counter(
    "driftloop_monitor_triggers_total", "Triggers sent, by reason.", ["model", "reason"]
)
DRIFT_EVENTS = Counter(
    "driftloop_monitor_drift_events_total", "Drift events sent, by severity.", ["model", "severity"]
)
DETECTOR = Gauge(
    "driftloop_monitor_detector_state",
    "The error-stream detector of each version: error_rate, width, rolling_accuracy, examples, "
    "cusum_level, cusum_in_control_error.",
    ["model", "version", "quantity"],
)
EPISODE = Gauge(
    "driftloop_monitor_drift_episode_open", "1 while a drift episode is open.", ["model"]
)
REPORTS = Counter("driftloop_monitor_reports_total", "Window reports, by outcome.", ["outcome"])
REFERENCES = Counter(
    "driftloop_monitor_reference_loads_total", "Reference loads from the registry.", ["outcome"]
)

REFERENCE_RETRY_S = 30.0
CLEAN_REPORT_INTERVAL_S = 300.0


def build_monitor(settings: MonitorSettings, references: Any) -> DriftMonitor:
    """The core, configured from ``settings``."""
    return DriftMonitor(
        references,
        window_kind=settings.monitor_window_kind,
        window_size=settings.monitor_window_size,
        window_step=settings.monitor_window_step or None,
        min_window_events=settings.monitor_min_window_events,
        budget=FalseAlarmBudget(settings.monitor_false_alarm_rate),
        correction=settings.monitor_correction,
        open_after=settings.monitor_open_after,
        close_after=settings.monitor_close_after,
        cooldown_s=settings.monitor_cooldown_s,
        data_arrival_examples=settings.monitor_data_arrival_examples,
        retry_s=settings.monitor_retry_s,
        min_examples=settings.monitor_trigger_min_examples,
        recall_examples=settings.monitor_recall_examples,
        detector=settings.monitor_detector,
        holdout_metric=settings.monitor_holdout_metric,
        holdout_examples=settings.monitor_holdout_examples,
        min_error_rise=settings.monitor_min_error_rise,
    )


class MonitorWorker:
    """The consuming half of the monitor: ``await start()``, then :meth:`step` or :meth:`run`."""

    def __init__(
        self, settings: MonitorSettings, registry: ModelRegistry, reports: WindowReports
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.reports = reports
        self.monitor = build_monitor(settings, self.reference)
        self.recent: deque[dict[str, Any]] = deque(maxlen=settings.monitor_recent_windows)
        self._references: dict[tuple[str, str], ModelReference] = {}
        self._failed: dict[tuple[str, str], tuple[float, str]] = {}  # when, why
        self._registry_thread = ThreadPoolExecutor(1, thread_name_prefix="monitor-registry")
        self._report_thread = ThreadPoolExecutor(1, thread_name_prefix="monitor-report")
        self._reports_waiting = 0
        self._last_clean_report: dict[str, float] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._last_schedule = time.monotonic()
        self.started = False
        self.producer = AsyncEventProducer(settings, service="monitor")
        self.consumer = AsyncEventConsumer(
            settings,
            settings.monitor_group_id,
            [
                EventType.PREDICTION,
                EventType.LABELLED_EXAMPLE,
                EventType.MODEL_UPDATE,
                EventType.TRAINING_RESULT,
            ],
            service="monitor",
        )

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        loop = asyncio.get_running_loop()
        name = self.settings.model_name
        try:
            champion = await loop.run_in_executor(
                self._registry_thread, self.registry.champion, name
            )
        except (MlflowException, OSError) as error:
            log.warning("could not read the champion", extra={"model": name, "error": str(error)})
            champion = None
        if champion is not None:
            self.monitor.champions[name] = champion
        self.started = True

    # --- references -----------------------------------------------------------------------

    def reference(self, name: str, version: str) -> ModelReference | None:
        """The core's lookup: what was loaded for a version, None while it is not."""
        return self._references.get((name, version))

    def _load(self, name: str, version: str) -> ModelReference:
        # Whatever fails (a missing version or artifact, an unreachable server, a malformed
        # file), the version gets no verdict with the reason, and is tried again later.
        try:
            card = self.registry.model_card(name, version)
        except Exception as error:
            return ModelReference(None, None, f"no model card for {name} v{version}: {error}")
        try:
            sketch = self.registry.reference(name, version)
        except Exception as error:
            return ModelReference(card, None, f"no reference for {name} v{version}: {error}")
        return ModelReference(card, sketch)

    async def _load_references(self, batch: list[Any]) -> None:
        # A promotion's version too: its reference is ready before its predictions arrive.
        wanted = {
            (received.event["model_name"], str(received.event["model_version"]))
            for received in batch
            if received.event_type != EventType.TRAINING_RESULT
        }
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        for key in wanted:
            if key in self._references and key not in self._failed:
                continue
            if key in self._failed and now - self._failed[key][0] < REFERENCE_RETRY_S:
                continue
            loaded = await loop.run_in_executor(self._registry_thread, self._load, *key)
            if loaded.sketch is None:
                REFERENCES.labels("failed").inc()
                self._failed[key] = (now, loaded.reason)
                detail = {"model": key[0], "version": key[1], "reason": loaded.reason}
                log.warning("no reference: no drift verdicts for this version", extra=detail)
            else:
                REFERENCES.labels("loaded").inc()
                self._failed.pop(key, None)
                log.info("reference loaded", extra={"model": key[0], "version": key[1]})
            self._references[key] = loaded

    # --- the loop -------------------------------------------------------------------------

    async def step(self, timeout_ms: int = 500) -> int:
        """One poll: feed the core, send what it decided, commit; returns the events handled."""
        batch = await self.consumer.poll(timeout_ms)
        if batch:
            await self._load_references(batch)
        sent: list[Any] = []
        now, allowed = time.time(), self.settings.max_event_ahead_s
        for received in batch:
            event = received.event
            if received.event_type in TIMED:
                # One producer's clock far ahead would close every window up to its time.
                ahead = ahead_of_clock(event["event_time"], now, allowed)
                if ahead is not None:
                    await self.consumer.reject(received, ahead)
                    continue
            if received.event_type == EventType.PREDICTION:
                EVENTS.labels("prediction").inc()
                outcomes = self.monitor.observe_prediction(event)
            elif received.event_type == EventType.LABELLED_EXAMPLE:
                EVENTS.labels("example").inc()
                outcomes = self.monitor.observe_example(event)
            elif received.event_type == EventType.MODEL_UPDATE:
                EVENTS.labels("model_update").inc()
                self.monitor.observe_model_update(event)
                outcomes = []
            else:
                EVENTS.labels("training_result").inc()
                self.monitor.observe_training_result(event)
                outcomes = []
            for outcome in outcomes:
                sent += await self._act(outcome)
        if self._schedule_due():
            sent += await self._act(self._scheduled())
        if not batch and self.settings.monitor_window_kind == "time":
            # Caught up: time windows of a quiet stream close on the clock.
            for outcome in self.monitor.advance(time.time()):
                sent += await self._act(outcome)
        self._publish_state()
        await asyncio.gather(*sent)
        await self.consumer.commit()
        return len(batch)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.producer.flush()
        await self.consumer.stop()
        await self.producer.stop()
        self._report_thread.shutdown(wait=False, cancel_futures=True)
        self._registry_thread.shutdown(wait=False, cancel_futures=True)

    # --- triggers that do not come from the data -------------------------------------------

    def _schedule_due(self) -> bool:
        every = self.settings.monitor_schedule_s
        if not every or time.monotonic() - self._last_schedule < every:
            return False
        self._last_schedule = time.monotonic()
        return True

    def _scheduled(self) -> TriggerDecision:
        name = self.settings.model_name
        evidence = {"every_s": self.settings.monitor_schedule_s}
        return TriggerDecision(name, self.monitor.champions.get(name), "schedule", evidence)

    async def manual_trigger(
        self, model_name: str | None = None, evidence: dict[str, Any] | None = None
    ) -> str:
        """Send a ``manual`` trigger (the HTTP API's); returns its trigger id once stored."""
        name = model_name or self.settings.model_name
        decision = TriggerDecision(name, self.monitor.champions.get(name), "manual", evidence or {})
        for sent in await self._act(decision):
            await sent
        return decision.trigger_id

    # --- outcomes -------------------------------------------------------------------------

    async def _act(self, outcome: WindowVerdict | TriggerDecision | ConceptDrift) -> list[Any]:
        if isinstance(outcome, ConceptDrift):
            DRIFT_EVENTS.labels(outcome.model_name, outcome.severity).inc()
            return [await self.producer.send(EventType.DRIFT, outcome.drift_event())]
        if isinstance(outcome, TriggerDecision):
            TRIGGERS.labels(outcome.model_name, outcome.reason).inc()
            log.info("trigger", extra={"model": outcome.model_name, "reason": outcome.reason,
                                       "trigger_id": outcome.trigger_id})  # fmt: skip
            return [await self.producer.send(EventType.TRIGGER, outcome.trigger_event())]
        self._record(outcome)
        if outcome.has_verdict and self._wants_report(outcome):
            self._reports_waiting += 1
            task = asyncio.create_task(self._report_then_event(outcome))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        elif outcome.drifted:
            DRIFT_EVENTS.labels(outcome.model_name, outcome.severity).inc()
            return [await self.producer.send(EventType.DRIFT, outcome.drift_event())]
        return []

    def _wants_report(self, verdict: WindowVerdict) -> bool:
        if not self.settings.monitor_reports:
            return False
        if self._reports_waiting >= max(self.settings.monitor_report_backlog, 1):
            REPORTS.labels("skipped").inc()
            return False
        if verdict.drifted:
            return True
        now = time.monotonic()
        last = self._last_clean_report.get(verdict.model_name)
        if last is not None and now - last < CLEAN_REPORT_INTERVAL_S:
            return False
        self._last_clean_report[verdict.model_name] = now
        return True

    async def _report_then_event(self, verdict: WindowVerdict) -> None:
        reference = self.reference(verdict.model_name, verdict.model_version)
        assert reference is not None and reference.sketch is not None
        uri = None
        try:
            uri = await asyncio.get_running_loop().run_in_executor(
                self._report_thread,
                self.reports.write,
                verdict.window_id,
                verdict.window.rows,
                reference.sketch,
            )
            REPORTS.labels("written").inc()
            self._link(verdict.window_id)
        except Exception:  # a report is a convenience: the drift event goes out without it
            REPORTS.labels("failed").inc()
            log.exception("the window's report failed", extra={"window": verdict.window_id})
        finally:
            self._reports_waiting -= 1
        if verdict.drifted:
            DRIFT_EVENTS.labels(verdict.model_name, verdict.severity).inc()
            with contextlib.suppress(asyncio.CancelledError):
                await (await self.producer.send(EventType.DRIFT, verdict.drift_event(uri)))

    def _record(self, verdict: WindowVerdict) -> None:
        WINDOWS.labels(verdict.model_name, verdict.verdict).inc()
        line = verdict.summary() | {"report": None}
        self.recent.appendleft(line)
        if not verdict.has_verdict:
            NO_VERDICT.labels(verdict.model_name, verdict.reason_code or "").inc()
            return
        for test in verdict.tests:
            FEATURE_P.labels(verdict.model_name, test.feature).set(test.p_value)
            for statistic, score in test.scores.items():
                FEATURE_SCORE.labels(verdict.model_name, test.feature, statistic).set(score)

    def _link(self, window_id: str) -> None:
        for line in self.recent:
            if line["window_id"] == window_id:
                line["report"] = f"/reports/{window_id}.html"
                return

    def _publish_state(self) -> None:
        for name, policy in self.monitor.policies.items():
            EPISODE.labels(name).set(1 if policy.episode_open else 0)
        for (name, version), detector in self.monitor.detectors().items():
            for quantity, value in detector.state().items():
                DETECTOR.labels(name, version, quantity).set(value)
