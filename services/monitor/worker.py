"""MonitorWorker: the monitor's Kafka and registry edges around the pure DriftMonitor.

One consumer group reads predictions, labelled examples, model updates, training results
(a rejected fit re-arms the drift episode) and dead letters; each batch is
handed to :class:`~driftloop.services.monitor.monitor.DriftMonitor` in order, after the references
of any version it has not met are loaded from the registry (in a thread, cached per version;
a version whose load failed is retried after ``REFERENCE_RETRY_S``). Predictions, examples
and the dead letters that name a model go to
:class:`~driftloop.services.monitor.quality.DataQuality` first: when a model's data becomes
degraded, a data-quality event goes out and the model's triggers are held (drift, recall, data
arrival, schedule; a person's manual trigger still goes out) until it recovers, when another goes
out and the triggers due by then are sent. What the core returns goes out as:

- trigger events, at once (``acks=all``; offsets commit after they are stored);
- for each judged window, an Evidently report built in a thread (skipped while more than
  ``monitor_report_backlog`` wait, and for clean windows at most one per model each
  ``CLEAN_REPORT_INTERVAL_S``), then, for a window that raises an alert (its tests reject at
  the drift events' own level, :class:`~driftloop.services.monitor.budget.AlertBudget`), its drift
  event linking to it;
- metrics, and a line in :attr:`MonitorWorker.recent` for the HTTP page.

The monitor's state (windows, detectors, episodes, data quality) lives in memory: a restart
begins new windows from the committed offsets, which costs at most a window's worth of
detection delay (a hold ends with a restart; data still degraded is held again once its window
refills).
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
from driftloop.events import EventType, ahead_of_clock, epoch
from driftloop.model_card import ModelCard
from driftloop.registry import ModelRegistry
from driftloop.services.monitor.budget import AlertBudget, FalseAlarmBudget
from driftloop.services.monitor.monitor import (
    ConceptDrift,
    DriftMonitor,
    ModelReference,
    TriggerDecision,
    WindowVerdict,
    is_drift_event,
)
from driftloop.services.monitor.quality import DataQuality, QualityChange
from driftloop.services.monitor.report import WindowReports
from driftloop.services.monitor.settings import MonitorSettings

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
WINDOW_LEVEL = Gauge(
    "driftloop_monitor_window_level",
    "The family-wise level of the last judged window's tests: trigger (a drifted window, "
    "towards an episode) and alert (a drift event).",
    ["model", "level"],
)
TRAFFIC = Gauge(
    "driftloop_monitor_traffic_events_per_second",
    "The model's observed traffic in events per second of event time, which sets the drift "
    "events' level (DRIFTLOOP_MONITOR_ALERT_ERT_S at this rate).",
    ["model"],
)
EPISODE = Gauge(
    "driftloop_monitor_drift_episode_open", "1 while a drift episode is open.", ["model"]
)
REPORTS = Counter("driftloop_monitor_reports_total", "Window reports, by outcome.", ["outcome"])
REFERENCES = Counter(
    "driftloop_monitor_reference_loads_total", "Reference loads from the registry.", ["outcome"]
)

QUALITY_SHARE = Gauge(
    "driftloop_monitor_data_quality_invalid_share",
    "Share of invalid (dead-lettered) events in the model's data-quality window, by stream "
    "(features: predictions; labels: labelled examples).",
    ["model", "stream"],
)
QUALITY_DEGRADED = Gauge(
    "driftloop_monitor_data_quality_degraded",
    "1 while the model's data is degraded and its triggers are held.",
    ["model"],
)
QUALITY_EVENTS = Counter(
    "driftloop_monitor_data_quality_events_total",
    "Data-quality events sent, by status (degraded, recovered).",
    ["model", "status"],
)
NULL_SHARE = Gauge(
    "driftloop_monitor_data_quality_null_share",
    "Share of the valid predictions in the data-quality window with the feature null.",
    ["model", "feature"],
)
UNKNOWN_SHARE = Gauge(
    "driftloop_monitor_data_quality_unknown_category_share",
    "Share of the valid predictions in the data-quality window with a category the card does "
    "not know.",
    ["model", "feature"],
)
LABEL_SHARE = Gauge(
    "driftloop_monitor_data_quality_label_share",
    "Share of each class among the labels in the data-quality window.",
    ["model", "label"],
)
TRIGGERS_HELD = Counter(
    "driftloop_monitor_triggers_held_total",
    "Triggers held while the model's data was degraded, by reason (once per hold).",
    ["model", "reason"],
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
        alert_budget=AlertBudget(
            settings.monitor_alert_ert_s, min_events=1 / settings.monitor_false_alarm_rate
        ),
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


def build_quality(settings: MonitorSettings, cards: Any) -> DataQuality:
    """The data-quality core, configured from ``settings``."""
    return DataQuality(
        cards,
        window=settings.monitor_quality_window,
        min_events=settings.monitor_quality_min_events,
        max_invalid_share=settings.monitor_quality_max_invalid_share,
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
        self.quality = build_quality(settings, self.card)
        self.recent: deque[dict[str, Any]] = deque(maxlen=settings.monitor_recent_windows)
        self._references: dict[tuple[str, str], ModelReference] = {}
        self._failed: dict[tuple[str, str], tuple[float, str]] = {}  # when, why
        self._registry_thread = ThreadPoolExecutor(1, thread_name_prefix="monitor-registry")
        self._report_thread = ThreadPoolExecutor(1, thread_name_prefix="monitor-report")
        self._reports_waiting = 0
        self._last_clean_report: dict[str, float] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._last_schedule = time.monotonic()
        self._schedule_held = False  # a schedule trigger came due while held
        self._withheld: dict[str, set[str]] = {}  # reasons counted in TRIGGERS_HELD, per model
        self._shown: dict[tuple[str, str], set[str]] = {}  # share gauges' labels, to zero
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
                EventType.DEAD_LETTER,
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

    def card(self, name: str, version: str) -> ModelCard | None:
        """The data-quality core's lookup: the version's card, None while not loaded."""
        reference = self._references.get((name, version))
        return reference.card if reference is not None else None

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
            if received.event_type not in (EventType.TRAINING_RESULT, EventType.DEAD_LETTER)
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
            # Data quality first: a hold must be in place before the event it came with
            # can fire a trigger.
            if received.event_type == EventType.PREDICTION:
                EVENTS.labels("prediction").inc()
                sent += await self._quality(self.quality.observe_prediction(event), event)
                broken = self.quality.breaks_card(event)  # corrupt data is not drift
                outcomes = [] if broken else self.monitor.observe_prediction(event)
            elif received.event_type == EventType.LABELLED_EXAMPLE:
                EVENTS.labels("example").inc()
                sent += await self._quality(self.quality.observe_example(event), event)
                outcomes = self.monitor.observe_example(event)
            elif received.event_type == EventType.DEAD_LETTER:
                EVENTS.labels("dead_letter").inc()
                sent += await self._quality(self.quality.observe_dead_letter(event), event)
                outcomes = []
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
            policy = self.monitor.policy(self.settings.model_name)
            if policy.suspended:  # sent when the hold ends
                self._schedule_held = True
                policy.withheld.add("schedule")
            else:
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

    # --- data quality ---------------------------------------------------------------------

    async def _quality(self, change: QualityChange | None, event: dict[str, Any]) -> list[Any]:
        """Send a data-quality change, and hold or release the model's triggers with it."""
        if change is None:
            return []
        name = change.model_name
        QUALITY_EVENTS.labels(name, change.status).inc()
        detail = {"model": name, "stream": change.stream, "invalid_share": change.invalid_share,
                  "invalid_by_rule": change.window["invalid_by_rule"]}  # fmt: skip
        sent = [await self.producer.send(EventType.DATA_QUALITY, change.event())]
        if change.holding:
            log.warning("data quality degraded: the model's triggers are held", extra=detail)
            self.monitor.hold(name)
            return sent
        log.info("data quality recovered: the model's triggers are released", extra=detail)
        self._count_withheld()  # the reasons held, before the release forgets them
        outcomes: list[Any] = self.monitor.release(name, epoch(event["event_time"]))
        if name == self.settings.model_name and self._schedule_held:
            self._schedule_held = False
            outcomes.append(self._scheduled())
        for outcome in outcomes:
            sent += await self._act(outcome)
        return sent

    def _count_withheld(self) -> None:
        for name, policy in self.monitor.policies.items():
            counted = self._withheld.setdefault(name, set())
            for reason in policy.withheld - counted:
                TRIGGERS_HELD.labels(name, reason).inc()
            if policy.withheld:
                counted |= policy.withheld
            else:
                counted.clear()  # the hold ended: the next one counts afresh

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
        elif is_drift_event(outcome):
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
        if is_drift_event(verdict):
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
        WINDOW_LEVEL.labels(verdict.model_name, "trigger").set(verdict.alpha)
        WINDOW_LEVEL.labels(verdict.model_name, "alert").set(verdict.alert_alpha)
        TRAFFIC.labels(verdict.model_name).set(self.monitor.traffic(verdict.model_name))
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
        self._count_withheld()
        for name in self.quality.models:
            QUALITY_DEGRADED.labels(name).set(1 if self.quality.degraded(name) else 0)
            for stream, share in self.quality.shares(name).items():
                QUALITY_SHARE.labels(name, stream).set(share)
            window = self.quality.window(name)
            self._show(NULL_SHARE, name, "null_share", window["null_share"])
            self._show(UNKNOWN_SHARE, name, "unknown", window["unknown_category_share"])
            self._show(LABEL_SHARE, name, "label", window["label_balance"])

    def _show(self, gauge: Gauge, name: str, kind: str, shares: dict[str, float]) -> None:
        """Set a share gauge per key; keys shown before and gone now (a class no label has
        any more) go to 0."""
        shown = self._shown.setdefault((name, kind), set())
        for key in shown - shares.keys():
            gauge.labels(name, key).set(0)
        for key, share in shares.items():
            gauge.labels(name, key).set(share)
        shown |= shares.keys()
