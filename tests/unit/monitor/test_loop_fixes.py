"""What the closed loop needs of the monitor: onsets, retries, promotions, concept events."""

from __future__ import annotations

from typing import Any

import numpy as np

from driftloop.events import EventType, epoch, format_time
from driftloop.schemas import EventSchemas
from driftloop.services.monitor.concept import ErrorStreamDetector, HoldoutCusum
from driftloop.services.monitor.monitor import (
    ConceptDrift,
    DriftMonitor,
    ModelReference,
    Outcome,
    TriggerDecision,
)
from driftloop.services.monitor.triggers import TriggerPolicy
from driftloop.services.trainer.window import onset_of
from tests.unit.monitor.streams import START, examples, predictions, reference

REFERENCES = {("m", "1"): reference(seed=1), ("m", "2"): reference(seed=1)}
ONSET = 5_000


def lookup(name: str, version: str) -> ModelReference | None:
    return REFERENCES.get((name, version))


def make(**overrides: Any) -> DriftMonitor:
    options: dict[str, Any] = {"window_size": 500, "cooldown_s": 3600, "retry_s": 60}
    return DriftMonitor(lookup, **(options | overrides))


def feed_examples(monitor: DriftMonitor, events: Any) -> list[tuple[int, Outcome]]:
    return [(i, o) for i, event in enumerate(events) for o in monitor.observe_example(event)]


def triggers(outcomes: list[tuple[int, Outcome]]) -> list[tuple[int, TriggerDecision]]:
    return [(i, o) for i, o in outcomes if isinstance(o, TriggerDecision)]


def concept_events(outcomes: list[tuple[int, Outcome]]) -> list[ConceptDrift]:
    return [o for _, o in outcomes if isinstance(o, ConceptDrift)]


def shifted(count: int = 15_000, version: str = "1") -> Any:
    return examples(count, error_rate=lambda i: 0.1 if i < ONSET else 0.4, version=version)


def result(outcome: str, champion: str | None = "1") -> dict[str, Any]:
    return {"model_name": "m", "outcome": outcome, "champion_version": champion,
            "event_time": format_time(START)}  # fmt: skip


# --- 1. the onset ---------------------------------------------------------------------------


def test_the_cusum_dates_its_alarm_back_to_the_change() -> None:
    cusum = HoldoutCusum(0.9, 5_000, alpha=1e-5)
    rng = np.random.default_rng(0)
    errors = [float(rng.random() < (0.1 if i < 2_000 else 0.5)) for i in range(3_000)]
    fired = next(i for i, e in enumerate(errors) if cusum.update(e))
    # 1-based example numbers: the rise began at example 2,001.
    assert cusum.onset is not None and 1_990 <= cusum.onset <= 2_010 < fired + 1


def test_adwin_dates_its_alarm_back_to_its_cut() -> None:
    # No holdout: ADWIN alone. Its cut keeps whole buckets, so it may keep a few hundred
    # examples from before the change: the onset is early rather than late.
    detector = ErrorStreamDetector("adwin", delta=1e-3, min_rise=0.02)
    rng = np.random.default_rng(1)
    alarms = []
    for i in range(8_000):
        error = float(rng.random() < (0.1 if i < ONSET else 0.5))
        alarm = detector.update(error, START + i)
        if alarm is not None:
            alarms.append((i, alarm))
    at, alarm = alarms[0]
    assert alarm.source == "adwin" and alarm.onset is not None
    assert ONSET - 500 <= alarm.onset - START <= at
    assert alarm.onset_examples == at - (alarm.onset - START) + 1


def test_a_concept_trigger_carries_the_onset_the_trainer_reads() -> None:
    fired = triggers(feed_examples(make(), shifted()))
    assert len(fired) == 1
    at, trigger = fired[0]
    onset = onset_of(trigger.trigger_event())
    assert onset is not None and trigger.evidence["onset"] == onset
    # Near the true change, well before the alarm: the window is the new concept.
    assert ONSET - 150 <= epoch(onset) - START <= at
    assert trigger.evidence["onset_examples"] == at - (epoch(onset) - START) + 1


def test_a_data_drift_trigger_starts_at_its_first_drifted_window() -> None:
    monitor = make()
    stream = predictions(6_000, shift=lambda i: 6.0 if i >= 2_000 else 0.0)
    fired = [o for e in stream for o in monitor.observe_prediction(e) if
             isinstance(o, TriggerDecision)]  # fmt: skip
    assert len(fired) == 1
    # Windows of 500: the first drifted one starts at event 2,000, the trigger at the second.
    assert fired[0].evidence["onset"] == format_time(START + 2_000)
    assert epoch(fired[0].trigger_event()["window"]["start"]) == START + 2_500


# --- 2. a rejected fit re-arms the episode --------------------------------------------------


def after_result(outcome: str, champion: str | None) -> list[TriggerDecision]:
    """Triggers from 3,000 more degraded examples after a training result (cooldown 1 h)."""
    monitor = make()
    monitor.observe_model_update({"model_name": "m", "model_version": "1"})
    assert len(triggers(feed_examples(monitor, shifted(6_000)))) == 1
    monitor.observe_training_result(result(outcome, champion))
    later = examples(3_000, error_rate=lambda i: 0.4, seed=4)
    return [o for e in later  # event times go on from the first stream's last (5,999 s)
            for o in monitor.observe_example(e | {"event_time": format_time(epoch(
                e["event_time"]) + 6_000)}) if isinstance(o, TriggerDecision)]  # fmt: skip


def test_a_rejected_or_failed_fit_retries_after_the_backoff_despite_the_cooldown() -> None:
    for outcome in ("rejected", "failed"):
        retried = after_result(outcome, "1")
        assert len(retried) >= 1, outcome
        assert retried[0].evidence["source"] == "concept"
        assert epoch(retried[0].trigger_event()["evidence"]["onset"]) >= START


def test_a_promoted_skipped_or_stale_result_does_not_re_arm() -> None:
    for outcome, champion in [("promoted", "1"), ("skipped", "1"), ("rejected", "7")]:
        assert after_result(outcome, champion) == [], outcome


def test_the_policy_retries_only_an_open_episode_after_retry_s() -> None:
    policy = TriggerPolicy(open_after=1, close_after=1, cooldown_s=1_000, retry_s=10)
    assert policy.concept_alarm(0.0)
    policy.rejected(5.0)
    assert not policy.concept_alarm(14.0)  # inside the backoff
    assert policy.concept_alarm(15.0)  # the backoff, not the cooldown
    assert not policy.concept_alarm(16.0)  # one trigger per retry
    closed = TriggerPolicy(open_after=1, close_after=1, cooldown_s=1_000, retry_s=10)
    assert closed.window(True, 0.0)
    assert not closed.window(False, 1.0)  # the episode closed
    closed.rejected(2.0)
    assert not closed.window(True, 20.0)  # a new episode still waits for the cooldown


# --- 3. promotions ----------------------------------------------------------------------


def test_a_replaced_versions_late_examples_raise_no_trigger() -> None:
    monitor = make(cooldown_s=0)
    monitor.observe_model_update({"model_name": "m", "model_version": "2"})
    stale = feed_examples(monitor, shifted(version="1"))
    assert triggers(stale) == [] and concept_events(stale) == []
    # The champion's own errors still count.
    assert len(triggers(feed_examples(make(cooldown_s=0), shifted(version="1")))) == 1


def test_a_replaced_versions_drifted_windows_raise_no_trigger() -> None:
    monitor = make(cooldown_s=0)
    monitor.observe_model_update({"model_name": "m", "model_version": "2"})
    stream = predictions(4_000, version="1", shift=lambda i: 6.0)
    outcomes = [o for e in stream for o in monitor.observe_prediction(e)]
    assert not any(isinstance(o, TriggerDecision) for o in outcomes)
    assert any(getattr(o, "drifted", False) for o in outcomes)  # still judged and reported


def test_a_promotion_starts_the_new_versions_detector_afresh() -> None:
    monitor = make()
    feed_examples(monitor, examples(2_000, error_rate=lambda i: 0.3, version="2"))
    assert monitor.detectors()[("m", "2")].examples == 2_000
    monitor.observe_model_update({"model_name": "m", "model_version": "2"})
    assert ("m", "2") not in monitor.detectors()


def test_after_a_promotion_the_next_trigger_waits_only_the_retry() -> None:
    policy = TriggerPolicy(open_after=1, close_after=1, cooldown_s=1_000, retry_s=10)
    assert policy.concept_alarm(0.0)
    policy.promoted(100.0)
    assert not policy.concept_alarm(105.0)
    assert policy.concept_alarm(111.0)


# --- 4. concept alarms as drift events ------------------------------------------------------


def test_a_concept_alarm_is_a_drift_event_linked_from_its_trigger() -> None:
    outcomes = feed_examples(make(), shifted())
    events = concept_events(outcomes)
    (_, trigger), = triggers(outcomes)  # fmt: skip
    assert len(events) == 1  # one per episode, not one per alarm
    event = events[0].drift_event()
    EventSchemas().validate(EventType.DRIFT, event)
    EventSchemas().validate(EventType.TRIGGER, trigger.trigger_event())
    assert trigger.trigger_event()["drift_event_id"] == event["event_id"]
    (feature,) = event["features"]
    assert feature["feature"] == "error_rate" and feature["drifted"]
    assert feature["statistic"] == trigger.evidence["detector"]
    assert feature["score"] > feature["threshold"]
    assert event["window"]["start"] == trigger.evidence["onset"]
    assert event["severity"] in {"medium", "high"}
