"""The held trigger: one refit per drift episode, once the new concept has enough examples.

The adaptation benchmark's finding: with a budget of one refit per drift, a fit on the few
hundred examples a fast alarm leaves is worse than one on a couple of thousand, and a gradual
drift's fit should wait until the blend has settled.
"""

from __future__ import annotations

import math
from typing import Any

from driftloop.events import EventType, epoch, is_recall
from driftloop.schemas import EventSchemas
from driftloop.services.monitor.monitor import (
    DriftMonitor,
    ModelReference,
    Outcome,
    TriggerDecision,
)
from driftloop.services.monitor.triggers import MAX_HOLD, TriggerPolicy
from driftloop.services.trainer.window import onset_of
from tests.unit.monitor.streams import START, examples, predictions, reference

REFERENCES = {("m", "1"): reference(seed=1), ("m", "2"): reference(seed=1)}
ONSET = 5_000
HOLD = 1_000


def lookup(name: str, version: str) -> ModelReference | None:
    return REFERENCES.get((name, version))


def make(**overrides: Any) -> DriftMonitor:
    options: dict[str, Any] = {"window_size": 500, "cooldown_s": 3600, "min_examples": HOLD}
    return DriftMonitor(lookup, **(options | overrides))


def fired(monitor: DriftMonitor, events: Any) -> list[tuple[int, TriggerDecision]]:
    outcomes: list[tuple[int, Outcome]] = [
        (i, o) for i, event in enumerate(events) for o in monitor.observe_example(event)
    ]
    return [(i, o) for i, o in outcomes if isinstance(o, TriggerDecision)]


def test_an_abrupt_change_triggers_once_when_enough_examples_follow_the_onset() -> None:
    stream = examples(12_000, error_rate=lambda i: 0.1 if i < ONSET else 0.4)
    (at, trigger), = fired(make(), stream)  # fmt: skip
    onset = onset_of(trigger.trigger_event())
    assert onset is not None
    # The window the trainer reads from the onset holds about HOLD examples, all after the
    # change: neither the few the alarm came after, nor the old concept.
    assert epoch(onset) - START >= ONSET - 150
    assert HOLD <= at - (epoch(onset) - START) + 1 <= HOLD + 300
    assert trigger.evidence["examples_since_onset"] >= HOLD
    EventSchemas().validate(EventType.TRIGGER, trigger.trigger_event())


def test_without_a_hold_the_trigger_goes_out_with_the_alarm() -> None:
    stream = examples(12_000, error_rate=lambda i: 0.1 if i < ONSET else 0.4)
    (at, _), = fired(make(min_examples=0), stream)  # fmt: skip
    assert ONSET <= at < ONSET + HOLD // 2


def test_a_gradual_change_triggers_after_the_error_settles_with_its_recent_window() -> None:
    # The error climbs from 0.1 to 0.45 over 4,000 examples, then stays.
    def error(i: int) -> float:
        return 0.1 + 0.35 / (1 + math.exp(-4 * (i - ONSET - 2_000) / 2_000))

    (at, trigger), = fired(make(), examples(14_000, error_rate=error))  # fmt: skip
    onset = epoch(trigger.evidence["onset"]) - START
    detected = epoch(trigger.evidence["detected_onset"]) - START
    assert at > ONSET + 2_500, "not in the middle of the blend"
    assert detected < onset and at - onset + 1 == HOLD, "the window is the last HOLD examples"


def test_a_hold_never_lasts_past_its_cap() -> None:
    policy = TriggerPolicy(cooldown_s=0, min_examples=100)
    assert not policy.concept_alarm(0.0)
    # An error that keeps rising: never settled, so the cap decides.
    fires = [i for i in range(1_000) if policy.labelled(1, i / 1_000, float(i))
             or policy.held(float(i))]  # fmt: skip
    assert fires == [MAX_HOLD * 100 - 1]


def test_clean_data_windows_do_not_drop_a_held_concept_episode() -> None:
    policy = TriggerPolicy(open_after=1, close_after=1, cooldown_s=0, min_examples=10)
    assert not policy.concept_alarm(0.0, since_onset=2)
    assert not policy.window(False, 1.0) and policy.episode_open
    assert [i for i in range(10) if policy.labelled() or policy.held(2.0 + i)] == [7]
    assert not policy.held(20.0), "one trigger per episode"


def test_a_rejected_fit_is_retried_on_fresh_evidence_only() -> None:
    policy = TriggerPolicy(cooldown_s=0, retry_s=5, min_examples=10)
    policy.concept_alarm(0.0)
    assert [i for i in range(20) if policy.labelled() or policy.held(float(i))] == [9]
    policy.rejected(10.0)
    assert not any(policy.labelled() or policy.held(11.0 + i) for i in range(100))
    assert policy.concept_alarm(20.0)


def test_a_promotion_drops_the_held_trigger() -> None:
    monitor = make()
    stream = list(examples(ONSET + 600, error_rate=lambda i: 0.1 if i < ONSET else 0.4))
    assert fired(monitor, stream) == []  # alarmed, held
    monitor.observe_model_update({"model_name": "m", "model_version": "2"})
    later = examples(3_000, error_rate=lambda i: 0.1, version="2", seed=9)
    assert fired(monitor, ({**e, "event_time": e["event_time"]} for e in later)) == []


def test_a_data_drift_episode_is_held_until_labels_arrive() -> None:
    monitor = make(open_after=1)
    shifted = predictions(3_000, shift=lambda i: 6.0 if i >= 1_000 else 0.0)
    triggers = [o for e in shifted for o in monitor.observe_prediction(e)
                if isinstance(o, TriggerDecision)]  # fmt: skip
    assert triggers == []
    labels = examples(HOLD + 300, error_rate=lambda i: 0.1)
    (_, trigger), = fired(monitor, labels)  # fmt: skip
    assert trigger.evidence["source"] == "data"
    assert trigger.evidence["onset"] == trigger.trigger_event()["evidence"]["onset"]


def test_a_retry_after_a_rejection_names_the_episodes_onset() -> None:
    monitor = make(retry_s=60)
    stream = list(examples(9_000, error_rate=lambda i: 0.1 if i < ONSET else 0.4))
    (_, first), = fired(monitor, stream[:8_000])  # fmt: skip
    monitor.observe_training_result({"model_name": "m", "outcome": "rejected",
                                     "champion_version": "1",
                                     "event_time": stream[7_999]["event_time"]})  # fmt: skip
    retried = fired(monitor, stream[8_000:])
    assert retried, "the degraded model is retried"
    assert retried[0][1].evidence["onset"] == first.evidence["onset"]
    assert retried[0][1].trigger_id != first.trigger_id


RECALL = 200


def test_a_held_episode_sends_one_early_recall_with_the_same_onset() -> None:
    stream = examples(12_000, error_rate=lambda i: 0.1 if i < ONSET else 0.4)
    triggers = fired(make(recall_examples=RECALL), stream)
    assert [t.evidence.get("action") for _, t in triggers] == ["recall", None]
    (recall_at, recall), (held_at, held) = triggers
    assert is_recall(recall.trigger_event()) and not is_recall(held.trigger_event())
    # the episode's onset; the held trigger may name a later one (where the error settled)
    onset = epoch(onset_of(recall.trigger_event()) or "") - START
    assert epoch(onset_of(held.trigger_event()) or "") - START >= onset
    assert recall.trigger_id != held.trigger_id
    assert RECALL - 10 <= recall_at - onset <= RECALL + 300 < held_at - onset
    assert recall.evidence["examples_since_onset"] >= RECALL
    EventSchemas().validate(EventType.TRIGGER, recall.trigger_event())


def test_a_recalled_version_ends_the_episode_before_its_held_trigger() -> None:
    monitor = make(recall_examples=RECALL)
    stream = examples(12_000, error_rate=lambda i: 0.1 if i < ONSET else 0.4)
    triggers = []
    for i, event in enumerate(stream):
        for outcome in monitor.observe_example(event):
            if isinstance(outcome, TriggerDecision):
                triggers.append(outcome)
                if is_recall(outcome.trigger_event()):  # the trainer recalls version 2
                    monitor.observe_model_update(
                        {"model_name": "m", "model_version": "2", "event_time": event["event_time"]}
                    )
        if triggers and i > ONSET + 3 * HOLD:
            break
    assert [is_recall(t.trigger_event()) for t in triggers] == [True]


def test_no_recall_without_a_hold_or_when_turned_off() -> None:
    def stream() -> Any:
        return examples(12_000, error_rate=lambda i: 0.1 if i < ONSET else 0.4)

    assert [t.evidence.get("action") for _, t in fired(make(), stream())] == [None]
    no_hold = fired(make(min_examples=0, recall_examples=RECALL), stream())
    assert [t.evidence.get("action") for _, t in no_hold] == [None]


# --- held for data quality ------------------------------------------------------------------


def triggers_of(outcomes: Any) -> list[TriggerDecision]:
    return [o for o in outcomes if isinstance(o, TriggerDecision)]


def test_a_held_drift_trigger_fires_when_the_hold_ends() -> None:
    policy = TriggerPolicy(open_after=1, cooldown_s=0)
    policy.suspend()
    assert not policy.window(True, 0.0) and not policy.window(True, 1.0)
    assert policy.withheld == {"drift"}
    policy.resume()
    assert policy.withheld == set()
    assert policy.held(2.0), "released"
    assert not policy.held(3.0) and not policy.window(True, 4.0), "one trigger per episode"


def test_data_arrival_counts_on_through_a_hold_and_fires_after_it() -> None:
    policy = TriggerPolicy(data_arrival_examples=100)
    policy.suspend()
    assert not any(policy.labelled() for _ in range(250))
    assert policy.withheld == {"data_arrival"}
    policy.resume()
    assert policy.arrival() and not policy.arrival()
    assert [i for i in range(150) if policy.labelled()] == [99], "the count starts afresh"


def test_a_recall_waits_for_the_end_of_a_hold() -> None:
    policy = TriggerPolicy(cooldown_s=0, min_examples=100, recall_examples=10)
    policy.suspend()
    policy.concept_alarm(0.0)
    assert not any(policy.labelled() or policy.recall() for _ in range(20))
    policy.resume()
    assert policy.recall()


def test_a_data_drift_episode_during_a_hold_is_triggered_on_release() -> None:
    monitor = make(open_after=1, min_examples=0)
    monitor.hold("m")
    shifted = predictions(3_000, shift=lambda i: 6.0 if i >= 1_000 else 0.0)
    assert triggers_of(o for e in shifted for o in monitor.observe_prediction(e)) == []
    (trigger,) = triggers_of(monitor.release("m"))
    assert trigger.reason == "drift" and trigger.evidence["source"] == "data"
    assert epoch(trigger.evidence["onset"]) == START + 1_000, "the episode's own onset"
    assert monitor.release("m") == []
    EventSchemas().validate(EventType.TRIGGER, trigger.trigger_event())


def test_an_episode_that_ended_during_a_hold_is_not_triggered_and_not_reused() -> None:
    monitor = make(open_after=1, min_examples=0)
    monitor.hold("m")
    burst = predictions(4_500, shift=lambda i: 6.0 if 1_000 <= i < 2_000 else 0.0)
    assert triggers_of(o for e in burst for o in monitor.observe_prediction(e)) == []
    assert monitor.release("m") == []
    later = predictions(1_000, shift=lambda i: 6.0, first=4_500)
    (trigger,) = triggers_of(o for e in later for o in monitor.observe_prediction(e))
    assert epoch(trigger.evidence["onset"]) == START + 4_500, "the new episode's onset"


def test_a_concept_alarm_held_past_its_examples_fires_on_release() -> None:
    monitor = make()
    monitor.hold("m")
    stream = examples(12_000, error_rate=lambda i: 0.1 if i < ONSET else 0.4)
    assert fired(monitor, stream) == []
    (trigger,) = triggers_of(monitor.release("m"))
    assert trigger.evidence["source"] == "concept"
    assert trigger.evidence["examples_since_onset"] >= HOLD


def test_data_arrival_reached_during_a_hold_fires_on_release() -> None:
    monitor = make(data_arrival_examples=300)
    monitor.hold("m")
    assert fired(monitor, examples(700, error_rate=lambda i: 0.1)) == []
    (trigger,) = triggers_of(monitor.release("m"))
    assert trigger.reason == "data_arrival" and trigger.model_version == "1"
    assert [i for i, _ in fired(monitor, examples(400, error_rate=lambda i: 0.1))] == [299]
