"""DriftMonitor: predictions, labelled examples and promotions in; verdicts and triggers out.

The pure core of the monitor service, with no I/O: the worker feeds it events and turns what
it returns into drift and trigger events, reports and metrics. Per model version it keeps a
:class:`~driftloop.services.monitor.windows.DriftWindow` of predictions and an
:class:`~driftloop.services.monitor.concept.ErrorStreamDetector` of labelled examples; per model a
:class:`~driftloop.services.monitor.triggers.TriggerPolicy`.

Each closed window is compared with the reference of the version that made its predictions
(``references(model_name, version)``, which the worker fills from the registry). A version
with no reference gets no verdict: the window is returned with the reason, and counts for
nothing in the trigger policy. When serve swaps, predictions carry the new version, so they
land in the new version's window and meet the new reference.

While a model's data is degraded (:mod:`driftloop.services.monitor.quality`) the worker holds its
triggers (:meth:`DriftMonitor.hold`) and releases them when it recovers
(:meth:`DriftMonitor.release`, which returns those due by then).

Example:
    >>> from driftloop.model_card import FeatureSpec, ModelCard
    >>> card = ModelCard(task="regression", features=[FeatureSpec(name="x")])
    >>> sketch = ReferenceSketch.build(card, [{"x": i / 1000} for i in range(1000)])
    >>> monitor = DriftMonitor(lambda name, version: ModelReference(card, sketch),
    ...                        window_size=200, open_after=1)
    >>> def prediction(x, t):
    ...     return {"model_name": "m", "model_version": "1", "features": {"x": x},
    ...             "prediction": 0.0, "event_time": f"2026-01-01T00:00:{t % 60:02d}Z"}
    >>> outcomes = [o for i in range(400) for o in monitor.observe_prediction(
    ...     prediction(5.0 if i >= 200 else i * 0.618034 % 1, i))]
    >>> [type(o).__name__ for o in outcomes]
    ['WindowVerdict', 'WindowVerdict', 'TriggerDecision']
    >>> outcomes[0].drifted, outcomes[1].drifted
    (False, True)
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from driftloop.events import RECALL, epoch, format_time, new_event, scored_by
from driftloop.model_card import ModelCard
from driftloop.reference import ReferenceSketch
from driftloop.services.monitor.budget import AlertBudget, FalseAlarmBudget
from driftloop.services.monitor.concept import (
    ConceptAlarm,
    DetectorName,
    ErrorStreamDetector,
    is_error,
)
from driftloop.services.monitor.statistics import (
    PREDICTION,
    Correction,
    FeatureTest,
    compare_window,
)
from driftloop.services.monitor.triggers import TriggerPolicy
from driftloop.services.monitor.windows import ClosedWindow, DriftWindow, WindowKind

Severity = Literal["none", "low", "medium", "high"]
MAX_VERSIONS = 4  # versions kept per model: during a swap two serve side by side
# The champion's prediction on a request answered by the online model whose shadow scoring
# serve skipped: the request's inputs count, its error does not.
UNSCORED: Any = object()
TRAFFIC_WEIGHT = 0.1  # of a new window in the traffic rate's moving average


@dataclass(frozen=True)
class ModelReference:
    """What the registry holds for one version: its card and its reference sketch.

    ``sketch`` is None when the version has none (``reason`` says why, e.g. the registry
    could not be read, or the trainer saved no reference).
    """

    card: ModelCard | None
    sketch: ReferenceSketch | None
    reason: str = ""


ReferenceLookup = Callable[[str, str], ModelReference | None]


@dataclass
class WindowVerdict:
    """A closed window and what the monitor concluded about it.

    Parameters:
        window_id: unique id, also the report's file name.
        model_name, model_version: the version whose predictions filled the window.
        window: the rows and bounds.
        predictions: the model's outputs for the rows.
        tests: one test per feature (and the prediction), empty when there is no verdict.
        alpha: the family-wise level the window was tested at (its trigger level).
        alert_alpha: the family-wise level at which it raises a drift event (see
            :class:`~driftloop.services.monitor.budget.AlertBudget`).
        reason: why there is no verdict (no reference, too few events), else None.
        reason_code: the same as a metric label: ``not_loaded``, ``no_reference``,
            ``too_few_events``.
    """

    window_id: str
    model_name: str
    model_version: str
    window: ClosedWindow
    predictions: list[Any] = field(repr=False)
    tests: list[FeatureTest] = field(default_factory=list)
    alpha: float = 0.0
    alert_alpha: float = 0.0
    reason: str | None = None
    reason_code: str | None = None
    drift_event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def has_verdict(self) -> bool:
        return self.reason is None

    @property
    def drifted(self) -> bool:
        return any(test.drifted for test in self.tests)

    @property
    def alert(self) -> bool:
        """Whether the window raises a drift event: its tests reject at ``alert_alpha`` under
        Holm's or Bonferroni's correction, whose first step is the smallest p-value against
        ``alert_alpha`` over the number of tests."""
        if not self.tests:
            return False
        return min(test.p_value for test in self.tests) <= self.alert_alpha / len(self.tests)

    @property
    def verdict(self) -> str:
        if not self.has_verdict:
            return "no_verdict"
        return "drift" if self.drifted else "clean"

    @property
    def severity(self) -> Severity:
        """How much moved: the share of tests that drifted and the size of the largest move."""
        drifted = [test for test in self.tests if test.drifted]
        if not drifted:
            return "none"
        share = len(drifted) / len(self.tests)
        effect = max(t.scores.get("ks", t.scores.get("js", 0.0)) for t in drifted)
        if share >= 0.5 or effect >= 0.3:
            return "high"
        if share >= 0.25 or effect >= 0.1:
            return "medium"
        return "low"

    def top_features(self, count: int = 3) -> list[FeatureTest]:
        return sorted(self.tests, key=lambda t: (not t.drifted, t.p_value))[:count]

    def window_field(self) -> dict[str, Any]:
        return window_field(self.window)

    def drift_event(self, report_uri: str | None = None) -> dict[str, Any]:
        """The drift event of this window (schemas/drift.schema.json)."""
        event = new_event(
            event_id=self.drift_event_id,
            model_name=self.model_name,
            model_version=self.model_version,
            window=self.window_field(),
            features=[test.as_event() for test in self.tests],
            severity=self.severity,
        )
        if report_uri:
            event["report_uri"] = report_uri
        return event

    def summary(self) -> dict[str, Any]:
        """A JSON-ready line for the HTTP page."""
        return {
            "window_id": self.window_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "window": self.window_field(),
            "verdict": self.verdict,
            "reason": self.reason,
            "severity": self.severity,
            "alert": self.alert,
            "alpha": self.alpha,
            "alert_alpha": self.alert_alpha,
            "top_features": [test.as_event() | test.scores for test in self.top_features()],
        }


@dataclass(frozen=True)
class TriggerDecision:
    """A trigger to send (schemas/trigger.schema.json)."""

    model_name: str
    model_version: str | None
    reason: Literal["drift", "data_arrival", "schedule", "manual"]
    evidence: dict[str, Any]
    window: ClosedWindow | None = None
    drift_event_id: str | None = None
    trigger_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def trigger_event(self) -> dict[str, Any]:
        event = new_event(
            trigger_id=self.trigger_id,
            model_name=self.model_name,
            model_version=self.model_version,
            reason=self.reason,
            evidence=self.evidence,
        )
        if self.window is not None:
            event["window"] = window_field(self.window)
        if self.drift_event_id is not None:
            event["drift_event_id"] = self.drift_event_id
        return event


@dataclass
class ConceptDrift:
    """A concept alarm as a drift event, for alerting consumers (schemas/drift.schema.json).

    Its window runs from the estimated onset to the alarm; its one "feature" is the error
    rate (``error_rate``), with the detector as the statistic, the error measured after the
    change as the score and the error before it (or the CUSUM's in-control error) as the
    threshold.

    Parameters:
        model_name, model_version: the version whose error stream alarmed.
        alarm: what the detector said.
        time: event time of the example that raised the alarm.
    """

    model_name: str
    model_version: str
    alarm: ConceptAlarm
    time: float
    drift_event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def error_before(self) -> float:
        evidence = self.alarm.evidence
        return float(evidence.get("error_rate_before", evidence.get("in_control_error", 0.0)))

    @property
    def error_after(self) -> float:
        evidence = self.alarm.evidence
        return float(evidence.get("error_rate_after", evidence.get("detected_error", 0.0)))

    @property
    def severity(self) -> Severity:
        rise = self.error_after - self.error_before
        return "high" if rise >= 0.2 else "medium" if rise >= 0.1 else "low"

    def window_field(self) -> dict[str, Any]:
        start = self.alarm.onset if self.alarm.onset is not None else self.time
        return {
            "kind": "count",
            "start": format_time(min(start, self.time)),
            "end": format_time(self.time),
            "size": self.alarm.onset_examples or 1,
        }

    def drift_event(self) -> dict[str, Any]:
        """The drift event of this alarm (schemas/drift.schema.json)."""
        feature = {
            "feature": "error_rate",
            "statistic": self.alarm.source,
            "score": round(self.error_after, 6),
            "threshold": round(self.error_before, 6),
            "p_value": None,
            "drifted": True,
        }
        return new_event(
            event_id=self.drift_event_id,
            model_name=self.model_name,
            model_version=self.model_version,
            window=self.window_field(),
            features=[feature],
            severity=self.severity,
        )


Outcome = WindowVerdict | TriggerDecision | ConceptDrift


def is_drift_event(outcome: Outcome) -> bool:
    """Whether ``outcome`` goes out on the drift topic: a concept-drift alarm, or a window
    whose tests reject at the drift events' own level (:attr:`WindowVerdict.alert`)."""
    return isinstance(outcome, ConceptDrift) or (
        isinstance(outcome, WindowVerdict) and outcome.alert
    )


def window_field(window: ClosedWindow) -> dict[str, Any]:
    return {
        "kind": window.kind,
        "start": format_time(window.start),
        "end": format_time(window.end),
        "size": window.size,
    }


class _Version:
    """One model version's live state."""

    def __init__(self, window: DriftWindow, detector: ErrorStreamDetector | None) -> None:
        self.window = window
        self.detector = detector
        self.predictions: dict[int, Any] = {}  # id(row) -> prediction, for the window's rows
        self.drift_start: float | None = None  # start of the first drifted window in a row


class DriftMonitor:
    """Windows, tests, concept detectors and trigger policy for every model it sees.

    Parameters:
        references: ``(model_name, version) -> ModelReference``, or None while not loaded.
        window_kind, window_size, window_step: see :class:`DriftWindow` (step None: tumbling).
        min_window_events: fewer events than this in a closed window give no verdict.
        budget: the false-alarm budget the test levels and detector settings come from.
        alert_budget: the drift events' own budget (default: a week between false alerts,
            and never more often than ``budget`` allows false triggers).
        correction: ``holm`` or ``bonferroni`` over a window's features.
        open_after, close_after, cooldown_s, data_arrival_examples, retry_s, min_examples:
            see :class:`TriggerPolicy` (``min_examples``: labelled examples since an
            episode's onset before its trigger goes out; the trigger then carries the
            evidence of the alarm or window that opened the episode).
        recall_examples: labelled examples since the onset before a held trigger's early
            recall goes out: the same trigger, a fresh id, ``evidence.action`` ``recall``
            (the trainer then tries earlier champions on the new concept; fits nothing).
        detector: ``adwin``, ``page_hinkley`` or ``kswin`` on the error stream.
        holdout_metric: the ModelCard metric (an accuracy) the holdout CUSUM starts from.
        holdout_examples: the holdout's size, when the card's metrics do not say
            (``holdout_examples`` or ``holdout_rows`` there win).
        min_error_rise: the smallest rise of the error rate the holdout CUSUM is tuned to.
    """

    def __init__(
        self,
        references: ReferenceLookup,
        *,
        window_kind: WindowKind = "count",
        window_size: float = 500,
        window_step: float | None = None,
        min_window_events: int = 30,
        budget: FalseAlarmBudget | None = None,
        alert_budget: AlertBudget | None = None,
        correction: Correction = "holm",
        open_after: int = 2,
        close_after: int = 3,
        cooldown_s: float = 600.0,
        data_arrival_examples: int = 0,
        retry_s: float = 60.0,
        min_examples: int = 0,
        recall_examples: int = 0,
        detector: DetectorName = "adwin",
        holdout_metric: str = "accuracy",
        holdout_examples: int = 1000,
        min_error_rise: float = 0.05,
    ) -> None:
        self.references = references
        self.window_kind: WindowKind = window_kind
        self.window_size = window_size
        self.window_step = window_step or window_size
        self.min_window_events = min_window_events
        self.budget = budget or FalseAlarmBudget()
        self.alert_budget = alert_budget or AlertBudget(min_events=1 / self.budget.rate)
        self._traffic: dict[str, float] = {}  # per model: events per second of event time
        self.correction: Correction = correction
        self.open_after = open_after
        self.close_after = close_after
        self.cooldown_s = cooldown_s
        self.data_arrival_examples = data_arrival_examples
        self.retry_s = retry_s
        self.min_examples = min_examples
        self.recall_examples = recall_examples
        self.detector = detector
        self.holdout_metric = holdout_metric
        self.holdout_examples = holdout_examples
        self.min_error_rise = min_error_rise
        self.policies: dict[str, TriggerPolicy] = {}
        self.champions: dict[str, str] = {}
        self._versions: dict[str, OrderedDict[str, _Version]] = {}
        self._last_verdict: dict[str, WindowVerdict] = {}
        self._latest: dict[str, float] = {}  # newest event time seen per model
        # Per model, the trigger of the open episode as it would have gone out when the
        # episode opened, for when enough examples have arrived (see `min_examples`).
        self._held: dict[str, TriggerDecision] = {}
        self.events = {"predictions": 0, "examples": 0, "promotions": 0, "training_results": 0}

    # --- inputs ---------------------------------------------------------------------------

    def observe_prediction(self, event: Mapping[str, Any]) -> list[Outcome]:
        """One prediction event; returns the windows it closed and any trigger."""
        self.events["predictions"] += 1
        name = event["model_name"]
        champion = self._champion_answer(name, event)
        if champion is None:
            return []
        version, prediction = champion
        state = self._version(name, version)
        row = event["features"]
        if prediction is not UNSCORED:
            state.predictions[id(row)] = prediction
        time = epoch(event["event_time"])
        self._latest[name] = max(self._latest.get(name, time), time)
        closed = state.window.update(row, time)
        return self._judge(name, version, state, closed)

    def observe_example(self, event: Mapping[str, Any]) -> list[Outcome]:
        """One labelled example; returns any trigger (concept drift or data arrival), and the
        drift event of a concept alarm that opened an episode or fired."""
        self.events["examples"] += 1
        name = event["model_name"]
        champion_answer = self._champion_answer(name, event)
        if champion_answer is None:
            return []
        version, prediction = champion_answer
        state = self._version(name, version)
        policy = self.policy(name)
        time = epoch(event["event_time"])
        self._latest[name] = max(self._latest.get(name, time), time)
        outcomes: list[Outcome] = []
        error: float | None = None
        if state.detector is not None and prediction is not UNSCORED:
            task = self._card_task(name, version)
            error = is_error(prediction, event["label"], task)
            alarm = state.detector.update(error, time)
            # Only the champion's errors count: a replaced version's late examples say nothing
            # about the model that serves now.
            if alarm is not None and self._is_champion(name, version):
                opened = not policy.episode_open
                redated = policy.episode_open and not policy.by_concept  # see concept_alarm
                fired = policy.concept_alarm(time, alarm.onset_examples or 0)
                redated = redated and policy.by_concept
                if opened:
                    self._held.pop(name, None)  # an earlier episode's: this one has its own
                drift = ConceptDrift(name, version, alarm, time)
                if opened or fired:  # one drift event per episode opened or trigger sent
                    outcomes.append(drift)
                trigger = self._concept_trigger(name, version, alarm, drift)
                if fired:
                    # A retry after a rejected fit names the episode's onset, not this alarm's.
                    held = name in self._held and not redated
                    outcomes.append(self._release(name, policy) if held else trigger)
                elif (self.min_examples or policy.suspended) and (
                    opened or redated or name not in self._held
                ):
                    self._held[name] = trigger
        champion = self._is_champion(name, version)
        labelled = policy.labelled(1, error if champion else None, time, new=champion)
        if name in self._held and policy.held(time):
            outcomes.append(self._release(name, policy))
        elif name in self._held and policy.recall():
            outcomes.append(self._recall(name, policy))
        if labelled:
            outcomes.append(self._arrival_trigger(name, version))
        return outcomes

    def _champion_answer(self, name: str, event: Mapping[str, Any]) -> tuple[str, Any] | None:
        """The champion's version on ``event`` and its prediction (:data:`UNSCORED` when it
        was not scored), or None when not even its version is known.

        The monitor watches the champion whoever answered: while the online model answers,
        serve scores the champion in shadow; a request whose shadow was skipped (serve was
        too busy) still counts for the inputs and for data arrival, not for the error stream.
        """
        scored = scored_by(event, "champion")
        if scored is not None:
            return scored
        champion = self.champions.get(name)
        return None if champion is None else (champion, UNSCORED)

    def hold(self, name: str) -> None:
        """Hold every trigger of ``name`` (its data is degraded: see
        :mod:`driftloop.services.monitor.quality`) until :meth:`release`; windows, detectors,
        episodes and counts go on meanwhile."""
        self.policy(name).suspend()

    def release(self, name: str, time: float | None = None) -> list[Outcome]:
        """End ``name``'s hold; returns the triggers due now (the open episode's, its recall,
        a data-arrival count reached while held). What is not yet due fires later, as usual.

        ``time``: the event time of the release, when the monitor has seen none of the
        model's events (else the newest it has seen)."""
        policy = self.policy(name)
        policy.resume()
        latest = self._latest.get(name, time)
        outcomes: list[Outcome] = []
        if name in self._held and latest is not None and policy.held(latest):
            outcomes.append(self._release(name, policy))
        elif name in self._held and policy.recall():
            outcomes.append(self._recall(name, policy))
        if policy.arrival():
            # No champion known: the version last seen, as a data-arrival trigger names it.
            seen = next(reversed(self._versions.get(name, {})), None)
            outcomes.append(self._arrival_trigger(name, seen))
        return outcomes

    def observe_model_update(self, event: Mapping[str, Any]) -> None:
        """A promotion: the new champion's data-arrival count and episode start afresh.

        From now on only the new champion's predictions and examples can raise an alarm: the
        replaced version's stragglers (requests it answered before serve swapped) would
        otherwise fire a trigger for a model that no longer serves. The new version's
        windows and detector start fresh. A rollback does the same for the restored version
        and ends the episode for good (:meth:`TriggerPolicy.rolled_back`); a challenger's
        alias moving changes nothing here: the champion still serves.
        """
        if event.get("alias", "champion") != "champion":
            return
        self.events["promotions"] += 1
        name, version = event["model_name"], str(event["model_version"])
        self.champions[name] = version
        latest = self._latest.get(name)
        if event.get("reason") == "rollback":
            self.policy(name).rolled_back(latest)
        else:
            self.policy(name).promoted(latest)
        self._held.pop(name, None)
        self._versions.get(name, OrderedDict()).pop(version, None)

    def observe_training_result(self, event: Mapping[str, Any]) -> None:
        """A fit's outcome: a ``rejected`` or ``failed`` fit for the current champion re-arms
        the open drift episode (see :meth:`TriggerPolicy.rejected`), so that a model that
        stays degraded is retried after ``retry_s`` rather than after the episode closes.

        The backoff counts from the newest event time the monitor has seen for the model,
        not the result's own time: the trainer's clock need not be the data's.
        """
        self.events["training_results"] += 1
        if event.get("outcome") not in ("rejected", "failed"):
            return
        name = event["model_name"]
        champion = event.get("champion_version")
        if champion is not None and str(champion) != self.champions.get(name, str(champion)):
            return  # about a version that no longer serves
        latest = self._latest.get(name)
        if latest is None:
            latest = epoch(event["event_time"])
        self.policy(name).rejected(latest)

    def advance(self, time: float) -> list[Outcome]:
        """Close the time windows that ended by ``time`` (a quiet stream's last windows)."""
        outcomes: list[Outcome] = []
        for name, versions in self._versions.items():
            for version, state in list(versions.items()):
                outcomes += self._judge(name, version, state, state.window.advance(time))
        return outcomes

    # --- state ----------------------------------------------------------------------------

    def policy(self, name: str) -> TriggerPolicy:
        if name not in self.policies:
            self.policies[name] = TriggerPolicy(
                self.open_after,
                self.close_after,
                self.cooldown_s,
                self.data_arrival_examples,
                self.retry_s,
                self.min_examples,
                self.recall_examples,
            )
        return self.policies[name]

    def detectors(self) -> dict[tuple[str, str], ErrorStreamDetector]:
        """Every version's error-stream detector (for /metrics)."""
        return {
            (name, version): state.detector
            for name, versions in self._versions.items()
            for version, state in versions.items()
            if state.detector is not None
        }

    def _is_champion(self, name: str, version: str) -> bool:
        """True when ``version`` serves as the champion (or no champion is known yet)."""
        champion = self.champions.get(name)
        return champion is None or champion == version

    def _version(self, name: str, version: str) -> _Version:
        versions = self._versions.setdefault(name, OrderedDict())
        state = versions.get(version)
        if state is None:
            reference = self.references(name, version)
            detector = None
            if reference is not None:
                detector = self._error_detector(reference.card)
            state = _Version(
                DriftWindow(self.window_kind, self.window_size, self.window_step), detector
            )
            versions[version] = state
            while len(versions) > MAX_VERSIONS:
                versions.popitem(last=False)
        elif state.detector is None and (reference := self.references(name, version)):
            state.detector = self._error_detector(reference.card)
        versions.move_to_end(version)
        return state

    def _error_detector(self, card: ModelCard | None) -> ErrorStreamDetector:
        holdout, examples = None, self.holdout_examples
        if card is not None and card.task == "classification":
            holdout = card.metrics.get(self.holdout_metric)
            for key in ("holdout_examples", "holdout_rows"):
                if key in card.metrics:
                    examples = int(card.metrics[key])
                    break
        return ErrorStreamDetector(
            self.detector,
            delta=self.budget.detector_delta,
            holdout_accuracy=holdout,
            holdout_examples=examples,
            min_rise=self.min_error_rise,
        )

    def _card_task(self, name: str, version: str) -> str:
        reference = self.references(name, version)
        if reference is not None and reference.card is not None:
            return reference.card.task
        return "classification"

    # --- verdicts -------------------------------------------------------------------------

    def _judge(
        self, name: str, version: str, state: _Version, closed: list[ClosedWindow]
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for window in closed:
            predictions = [state.predictions.get(id(row)) for row in window.rows]
            verdict = self._verdict(name, version, window, predictions)
            outcomes.append(verdict)
            if verdict.has_verdict:
                self._last_verdict[name] = verdict
                if verdict.drifted:
                    if state.drift_start is None:
                        state.drift_start = window.start
                else:
                    state.drift_start = None
                if not self._is_champion(name, version):
                    continue  # a replaced version's windows are reported, not acted on
                policy = self.policy(name)
                was_open = policy.episode_open
                fired = policy.window(verdict.drifted, window.end)
                if policy.episode_open and not was_open:
                    self._held.pop(name, None)  # an earlier episode's: this one has its own
                if fired:
                    outcomes.append(
                        self._release(name, policy)
                        if name in self._held
                        else self._drift_trigger(verdict, policy, state.drift_start)
                    )
                elif (
                    (self.min_examples or policy.suspended)
                    and policy.episode_open
                    and name not in self._held
                ):
                    # The trigger as it would have gone out now, for when it is released.
                    self._held[name] = self._drift_trigger(verdict, policy, state.drift_start)
        if closed:
            # Forget predictions of rows no open window holds any more.
            kept = {id(row) for row in state.window.rows()}
            state.predictions = {k: v for k, v in state.predictions.items() if k in kept}
        return outcomes

    def _verdict(
        self, name: str, version: str, window: ClosedWindow, predictions: list[Any]
    ) -> WindowVerdict:
        window_id = f"{name}-v{version}-{window.kind}-{int(window.start)}-{window.index}"
        verdict = WindowVerdict(window_id, name, version, window, predictions)
        reference = self.references(name, version)
        if reference is None:
            verdict.reason_code = "not_loaded"
            verdict.reason = "the version's reference is not loaded yet"
        elif reference.sketch is None:
            verdict.reason_code = "no_reference"
            verdict.reason = reference.reason or "the version has no reference sketch"
        elif window.size < self.min_window_events:
            verdict.reason_code = "too_few_events"
            verdict.reason = f"{window.size} events, fewer than {self.min_window_events}"
        if verdict.reason is not None:
            return verdict
        assert reference is not None and reference.sketch is not None
        # For time windows the events per step are only known now: take this window's.
        step = window.size * self.window_step / self.window_size
        verdict.alpha = self.budget.window_alpha(step, window.size, self.open_after)
        verdict.alert_alpha = self.alert_budget.window_alpha(
            step, self._observe_traffic(name, window)
        )
        verdict.tests = compare_window(
            reference.sketch, window.rows, predictions, verdict.alpha, self.correction
        )
        return verdict

    def traffic(self, name: str) -> float:
        """``name``'s observed traffic, events per second of event time (0 while unknown):
        what its drift events' level is set from."""
        return self._traffic.get(name, 0.0)

    def _observe_traffic(self, name: str, window: ClosedWindow) -> float:
        """``name``'s traffic in events per second of event time, a moving average over its
        windows (0 until a window spans some time)."""
        span = window.end - window.start
        if span <= 0:
            return self._traffic.get(name, 0.0)
        rate = window.size / span
        before = self._traffic.get(name)
        self._traffic[name] = rate if before is None else before + TRAFFIC_WEIGHT * (rate - before)
        return self._traffic[name]

    def _release(self, name: str, policy: TriggerPolicy) -> TriggerDecision:
        """The held trigger of ``name``'s open episode, now that enough examples arrived:
        a fresh id (a retry is a new trigger), the opening evidence plus the count."""
        held = self._held[name]
        evidence = held.evidence | {"examples_since_onset": policy.since_onset}
        if policy.onset is not None and "detected_onset" not in evidence:
            # Held while a gradual change went on: the window starts where the error settled.
            evidence["detected_onset"] = evidence.get("onset")
            evidence["onset"] = format_time(policy.onset)
        # Kept: a retry after a rejected fit names the same onset (its window has grown).
        self._held[name] = replace(held, evidence=evidence)
        return replace(held, evidence=evidence, trigger_id=str(uuid.uuid4()))

    def _recall(self, name: str, policy: TriggerPolicy) -> TriggerDecision:
        """The early recall of ``name``'s held trigger: its evidence, the count, the action."""
        held = self._held[name]
        evidence = held.evidence | {
            "examples_since_onset": policy.since_onset,
            "action": RECALL,
        }
        return replace(held, evidence=evidence, trigger_id=str(uuid.uuid4()))

    def _arrival_trigger(self, name: str, version: str | None) -> TriggerDecision:
        return TriggerDecision(
            name,
            self.champions.get(name, version),
            "data_arrival",
            {"new_examples": self.data_arrival_examples},
        )

    def _drift_trigger(
        self, verdict: WindowVerdict, policy: TriggerPolicy, onset: float | None
    ) -> TriggerDecision:
        drifted = [test for test in verdict.tests if test.drifted]
        evidence = {
            "source": "data",
            # The data moved from the first drifted window of the run: the trainer's
            # since_drift window starts there.
            "onset": format_time(onset if onset is not None else verdict.window.start),
            "drifted_features": [test.feature for test in drifted if test.feature != PREDICTION],
            "prediction_drift": any(test.feature == PREDICTION for test in drifted),
            "statistics": [test.as_event() | {"scores": test.scores} for test in drifted],
            "consecutive_windows": self.open_after,
            "window_alpha": verdict.alpha,
            "severity": verdict.severity,
            "episode": policy.episodes,
        }
        return TriggerDecision(
            verdict.model_name,
            self.champions.get(verdict.model_name, verdict.model_version),
            "drift",
            evidence,
            verdict.window,
            verdict.drift_event_id,
        )

    def _concept_trigger(
        self, name: str, version: str, alarm: ConceptAlarm, drift: ConceptDrift
    ) -> TriggerDecision:
        evidence = {
            "source": "concept",
            "detector": alarm.source,
            "model_version": version,
            "examples": alarm.examples,
            **alarm.evidence,
            "episode": self.policy(name).episodes,
        }
        if alarm.onset is not None:
            # The trainer's since_drift window starts at the change point, not at the alarm.
            evidence["onset"] = format_time(alarm.onset)
            evidence["onset_examples"] = alarm.onset_examples
        return TriggerDecision(
            name,
            self.champions.get(name, version),
            "drift",
            evidence,
            drift_event_id=drift.drift_event_id,
        )
