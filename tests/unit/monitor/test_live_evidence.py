"""The monitor watches the champion whoever answers, and a rollback ends its episode."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from driftloop.services.monitor.monitor import DriftMonitor, TriggerDecision
from driftloop.services.monitor.triggers import TriggerPolicy
from tests.unit.monitor.streams import examples, predictions, reference

REFERENCES = {("m", "1"): reference(seed=1)}


def make(**overrides: Any) -> DriftMonitor:
    options: dict[str, Any] = {"window_size": 500, "cooldown_s": 0}
    return DriftMonitor(lambda n, v: REFERENCES.get((n, v)), **(options | overrides))


def answered_online(events: Iterable[dict[str, Any]], shadow: bool = True) -> Iterator[dict]:
    """The same requests answered by the online model (always right: the label), with the
    champion's answer in shadow, or without it (serve skipped the shadow)."""
    for number, event in enumerate(events):
        online = dict(event, model_version=f"online.{number}", answered_by="online")
        online["prediction"] = event.get("label", event["prediction"])
        if shadow:
            online["shadows"] = [
                {"role": "champion", "model_version": "1", "prediction": event["prediction"]}
            ]
        yield online


def triggers(monitor: DriftMonitor, events: Iterable[dict], kind: str) -> list[TriggerDecision]:
    observe = monitor.observe_prediction if kind == "prediction" else monitor.observe_example
    return [o for e in events for o in observe(e) if isinstance(o, TriggerDecision)]


def test_the_champions_errors_count_while_the_online_model_answers() -> None:
    # The online model answers every request correctly; the champion, in shadow, is wrong
    # 30% of the time after the change: that is what the error stream must see.
    onset = 5_000
    stream = examples(15_000, error_rate=lambda i: 0.1 if i < onset else 0.3)
    monitor = make()
    monitor.observe_model_update({"model_name": "m", "model_version": "1"})
    fired = triggers(monitor, answered_online(stream), "example")
    assert [t.evidence["source"] for t in fired] == ["concept"]
    assert all(t.model_version == "1" for t in fired)


def test_online_answers_open_no_window_of_their_own() -> None:
    monitor = make()
    monitor.observe_model_update({"model_name": "m", "model_version": "1"})
    verdicts = [
        o
        for e in answered_online(predictions(1_000))
        for o in monitor.observe_prediction(e)
        if hasattr(o, "drifted")
    ]
    assert [v.model_version for v in verdicts] == ["1", "1"]
    assert all(v.has_verdict and not v.drifted for v in verdicts)


def test_an_unscored_champion_counts_for_inputs_and_arrival_not_for_errors() -> None:
    monitor = make(data_arrival_examples=1_000)
    monitor.observe_model_update({"model_name": "m", "model_version": "1"})
    stream = examples(1_000, error_rate=lambda i: 0.9)  # would alarm if its errors counted
    fired = triggers(monitor, answered_online(stream, shadow=False), "example")
    assert [t.reason for t in fired] == ["data_arrival"]


def test_without_a_known_champion_an_unscored_online_answer_is_ignored() -> None:
    monitor = make(data_arrival_examples=10)
    stream = examples(50, error_rate=lambda i: 0.5)
    assert triggers(monitor, answered_online(stream, shadow=False), "example") == []
    assert monitor.events["examples"] == 50


def test_a_challengers_alias_is_not_a_promotion() -> None:
    monitor = make()
    monitor.observe_model_update({"model_name": "m", "model_version": "1"})
    monitor.observe_model_update({"model_name": "m", "model_version": "2", "alias": "challenger"})
    assert monitor.champions["m"] == "1"
    assert monitor.events["promotions"] == 1


def test_after_a_rollback_the_same_drift_does_not_trigger_again() -> None:
    shifted = list(predictions(3_000, shift=lambda i: 8.0))
    monitor = make()
    monitor.observe_model_update({"model_name": "m", "model_version": "1"})
    assert len(triggers(monitor, shifted[:1_500], "prediction")) == 1
    rollback = {"model_name": "m", "model_version": "1", "reason": "rollback"}
    monitor.observe_model_update(rollback)
    assert triggers(monitor, shifted[1_500:], "prediction") == []
    # A plain promotion back to the same version would have fired again on the same data.
    again = make()
    again.observe_model_update({"model_name": "m", "model_version": "1"})
    triggers(again, shifted[:1_500], "prediction")
    again.observe_model_update({"model_name": "m", "model_version": "1"})
    assert len(triggers(again, shifted[1_500:], "prediction")) == 1


def test_a_rollback_mutes_windows_until_they_are_clean() -> None:
    policy = TriggerPolicy(open_after=1, close_after=2, cooldown_s=10)
    policy.rolled_back(100.0)
    assert not policy.window(True, 101.0) and not policy.episode_open
    assert not policy.window(False, 102.0) and not policy.window(False, 103.0)
    assert not policy.muted
    # drifted again, but within the cooldown that the rollback started: held
    assert not policy.window(True, 104.0) and policy.episode_open
    assert policy.window(True, 111.0)
    # the error stream is not muted
    other = TriggerPolicy(cooldown_s=0)
    other.rolled_back(0.0)
    assert other.concept_alarm(1.0)
