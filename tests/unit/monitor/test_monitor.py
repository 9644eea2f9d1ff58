"""The monitor's core on synthetic streams: the behaviours the issue asks for."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from driftloop.events import EventType, format_time
from driftloop.schemas import EventSchemas
from driftloop.services.monitor.budget import AlertBudget, FalseAlarmBudget
from driftloop.services.monitor.concept import HoldoutCusum, cusum_threshold
from driftloop.services.monitor.monitor import (
    DriftMonitor,
    ModelReference,
    Outcome,
    TriggerDecision,
    WindowVerdict,
)
from tests.unit.monitor.streams import START, examples, predictions, reference

REFERENCES = {("m", "1"): reference(seed=1), ("m", "2"): reference(seed=2, age_shift=8)}


def lookup(name: str, version: str) -> ModelReference | None:
    return REFERENCES.get((name, version))


def make(**overrides: Any) -> DriftMonitor:
    options: dict[str, Any] = {"window_size": 500, "cooldown_s": 3600}
    return DriftMonitor(lookup, **(options | overrides))


def feed(monitor: DriftMonitor, events: Any, kind: str = "prediction") -> list[tuple[int, Outcome]]:
    observe = monitor.observe_prediction if kind == "prediction" else monitor.observe_example
    return [(i, outcome) for i, event in enumerate(events) for outcome in observe(event)]


def triggers(outcomes: list[tuple[int, Outcome]]) -> list[tuple[int, TriggerDecision]]:
    return [(i, o) for i, o in outcomes if isinstance(o, TriggerDecision)]


def verdicts(outcomes: list[tuple[int, Outcome]]) -> list[WindowVerdict]:
    return [o for _, o in outcomes if isinstance(o, WindowVerdict)]


def test_a_stationary_stream_gives_no_trigger() -> None:
    # A budget of one false trigger per million events: 100k stationary events fire none.
    outcomes = feed(make(budget=FalseAlarmBudget(rate=1e-6)), predictions(100_000))
    assert len(verdicts(outcomes)) == 200
    assert triggers(outcomes) == []


def test_a_stationary_stream_stays_inside_the_default_budget() -> None:
    # Default budget (one per 100k, half of it for data drift): windows drift at about
    # their level, and 100k events fire at most one trigger.
    outcomes = feed(make(), predictions(100_000, seed=11))
    windows = verdicts(outcomes)
    alpha = windows[0].alpha
    assert sum(v.drifted for v in windows) <= 2 * alpha * len(windows)
    assert len(triggers(outcomes)) <= 1


def test_drift_events_on_a_stationary_stream_keep_to_their_budget_by_simulation() -> None:
    # A budget of one false alert per 10,000 s; at one event a second, 100k stationary events
    # may raise about 10 drift events (200 windows at 0.05 each), fewer as Holm's correction
    # and the tests' ties are conservative.
    budget = AlertBudget(ert_s=10_000, min_events=1)
    windows = verdicts(feed(make(alert_budget=budget), predictions(100_000, seed=11)))
    assert windows[-1].alert_alpha == pytest.approx(0.05, rel=0.01)  # the observed 1 event/s
    alerts = sum(v.alert for v in windows)
    assert alerts <= 10 + 3 * math.sqrt(10)  # three standard deviations over the expectation
    assert alerts <= sum(v.drifted for v in windows)


def test_by_default_a_stationary_stream_raises_no_drift_event_where_windows_drift() -> None:
    # Windows drift at the trigger level (0.05: about 10 in 200) but a drift event needs the
    # alert level: a week between false alerts at 1 event/s is 604,800 events.
    windows = verdicts(feed(make(), predictions(100_000, seed=11)))
    assert sum(v.drifted for v in windows) > 0
    assert [v.window_id for v in windows if v.alert] == []
    assert windows[-1].alert_alpha == pytest.approx(500 / 604_800, rel=0.01)


def test_the_alert_level_follows_the_observed_traffic() -> None:
    # The same stationary stream at 1 and at 10 events a second: ten times the events in the
    # week between false alerts, so a level ten times lower per window.
    slow, fast = make(), make()
    assert slow.traffic("m") == 0.0  # nothing seen: the floor's level until a window closes
    feed(slow, predictions(2_000, seed=11))
    at_ten = [dict(event) for event in predictions(2_000, seed=11)]
    for i, event in enumerate(at_ten):  # squeeze event time tenfold: 10 events a second
        event["event_time"] = format_time(START + i / 10)
    windows = verdicts(feed(fast, at_ten))
    assert slow.traffic("m") == pytest.approx(1.0, rel=0.01)
    assert fast.traffic("m") == pytest.approx(10.0, rel=0.01)
    assert windows[-1].alert_alpha == pytest.approx(500 / (10 * 604_800), rel=0.01)


def test_a_real_shift_still_raises_drift_events_at_the_alert_level() -> None:
    onset = 10_000
    shifted = predictions(20_000, shift=lambda i: 6.0 if i >= onset else 0.0)
    windows = verdicts(feed(make(), shifted))
    alerts = [v for v in windows if v.alert]
    assert alerts and all(v.window.start >= onset + START - 500 for v in alerts)
    assert alerts[0].window.start < START + onset + 1_000  # within two windows of the onset


def test_an_abrupt_shift_in_one_feature_triggers_within_two_windows() -> None:
    onset = 10_000
    outcomes = feed(make(), predictions(20_000, shift=lambda i: 6.0 if i >= onset else 0.0))
    fired = triggers(outcomes)
    assert len(fired) == 1
    at, trigger = fired[0]
    # Two drifted tumbling windows of 500 open the episode: at most 2 windows after onset.
    assert onset <= at < onset + 2 * 500
    assert trigger.reason == "drift"
    assert trigger.evidence["drifted_features"] == ["age"]
    assert trigger.drift_event_id is not None


def test_gradual_drift_triggers() -> None:
    onset, width = 5_000, 20_000

    def shift(i: int) -> float:
        return 8.0 * min(max((i - onset) / width, 0.0), 1.0)

    fired = triggers(feed(make(), predictions(30_000, shift=shift)))
    assert len(fired) == 1
    assert onset < fired[0][0] < onset + width


def test_repeated_drifted_windows_of_one_episode_give_one_trigger() -> None:
    outcomes = feed(make(cooldown_s=0), predictions(30_000, shift=lambda i: 6.0))
    assert sum(v.drifted for v in verdicts(outcomes)) == 60
    assert len(triggers(outcomes)) == 1


def test_a_label_only_change_is_caught_on_the_error_stream() -> None:
    onset = 5_000
    monitor = make()
    stream = examples(15_000, error_rate=lambda i: 0.1 if i < onset else 0.3)
    fired = triggers(feed(monitor, stream, kind="example"))
    assert len(fired) == 1
    at, trigger = fired[0]
    assert onset < at < onset + 1_000
    assert trigger.evidence["source"] == "concept"
    assert trigger.evidence["detector"] in {"adwin", "holdout_cusum"}


@pytest.mark.parametrize(("detector", "count"), [("adwin", 8_000), ("page_hinkley", 8_000),
                                                 ("kswin", 3_000)])  # fmt: skip
def test_every_detector_is_quiet_on_a_steady_error_and_sees_a_rise(
    detector: str, count: int
) -> None:
    monitor = make(detector=detector, holdout_metric="none")  # the detector alone
    quiet = feed(monitor, examples(count, error_rate=lambda i: 0.1), kind="example")
    assert triggers(quiet) == []
    onset = count // 2
    rising = feed(make(detector=detector, holdout_metric="none"),
                  examples(count, error_rate=lambda i: 0.1 if i < onset else 0.5),
                  kind="example")  # fmt: skip
    assert [i for i, _ in triggers(rising)] and triggers(rising)[0][0] > onset


def test_an_error_rate_that_falls_is_no_trigger() -> None:
    # The error stream's detector alone (the accuracy check would rightly say 0.3 error is
    # worse than the 0.9 holdout accuracy).
    stream = examples(20_000, error_rate=lambda i: 0.3 if i < 10_000 else 0.05)
    assert triggers(feed(make(holdout_metric="none"), stream, kind="example")) == []


def test_the_holdout_cusum_sees_a_model_below_its_holdout_accuracy() -> None:
    # 0.75 accuracy where the card says 0.9 from the start: ADWIN sees no change in the
    # stream, the CUSUM against the holdout does.
    stream = examples(3_000, error_rate=lambda i: 0.25)
    fired = triggers(feed(make(), stream, kind="example"))
    assert len(fired) == 1 and fired[0][0] < 1_000
    evidence = fired[0][1].evidence
    assert evidence["detector"] == "holdout_cusum" and evidence["holdout_accuracy"] == 0.9
    assert evidence["in_control_error"] > 0.1  # the holdout's bound, not its point estimate
    assert evidence["rolling_accuracy"] < 0.8


def test_the_holdout_cusum_tolerates_an_optimistic_small_holdout() -> None:
    # A holdout of 200 said 0.98; the model is really 0.96: no trigger.
    cusum = HoldoutCusum(0.98, holdout_examples=200, alpha=2.5e-6)
    errors = examples(100_000, error_rate=lambda i: 0.04)
    assert not any(cusum.update(float(e["prediction"] != e["label"])) for e in errors)


def errors_at(rate: float, count: int, seed: int) -> list[float]:
    return (np.random.default_rng(seed).random(count) < rate).astype(float).tolist()


def first_alarm(cusum: HoldoutCusum, errors: list[float]) -> int | None:
    return next((i for i, error in enumerate(errors) if cusum.update(error)), None)


def test_the_live_error_tightens_a_loose_holdout_baseline() -> None:
    # A holdout of 800 said 0.78 (bound ~0.26); live, the model errs 20% of the time: after
    # 16,000 live examples the baseline is the live bound, and a rise to 46% is seen in
    # fewer examples than against the holdout's bound alone.
    live = HoldoutCusum(0.78, holdout_examples=800, alpha=2.5e-6)
    assert first_alarm(live, errors_at(0.2, 16_000, seed=5)) is None
    assert 0.2 < live.p0 < 0.215 < live.holdout_p0
    drifted = errors_at(0.46, 2_000, seed=6)
    tightened = first_alarm(live, drifted)
    held = first_alarm(HoldoutCusum(0.78, holdout_examples=800, alpha=2.5e-6), drifted)
    assert tightened is not None and held is not None and tightened < held


def test_the_live_baseline_never_loosens_the_holdouts_and_restarts_after_an_alarm() -> None:
    cusum = HoldoutCusum(0.99, holdout_examples=5_000, alpha=2.5e-6)
    # Errors a little above the holdout's bound: the baseline stays the holdout's.
    assert first_alarm(cusum, errors_at(0.016, 8_000, seed=7)) is None
    assert cusum.p0 == cusum.holdout_p0 and cusum.live_examples == 8_000
    # Then far above it: an alarm, and the live baseline starts again from nothing.
    assert first_alarm(cusum, errors_at(0.3, 1_000, seed=8)) is not None
    assert cusum.p0 == cusum.holdout_p0 and cusum.live_examples == 0


def test_a_live_baseline_keeps_the_false_alarm_rate() -> None:
    # With the baseline learnt from the stream itself, a stationary stream still alarms at
    # most alpha per example (the run-length bound is loose: far fewer in practice).
    for rate, seed in ((0.01, 9), (0.2, 10)):
        cusum = HoldoutCusum(1 - rate, holdout_examples=800, alpha=1e-4)
        alarms = sum(cusum.update(error) for error in errors_at(rate, 200_000, seed))
        assert alarms <= 1e-4 * 200_000


def test_a_model_swap_switches_the_reference() -> None:
    # Version 2 was trained on older people: its own data is no drift against its reference,
    # though against version 1's it is.
    monitor = make()
    before = feed(monitor, predictions(2_000, version="1"))
    after = feed(monitor, predictions(3_000, version="2", shift=lambda i: 8.0, first=2_000))
    assert [v.model_version for v in verdicts(before)] == ["1"] * 4
    assert [v.model_version for v in verdicts(after)] == ["2"] * 6
    assert all(v.has_verdict for v in verdicts(before) + verdicts(after))
    assert triggers(before + after) == []
    assert sum(v.drifted for v in verdicts(after)) <= 1
    # The same data under version 1 is drift in every window.
    shifted = feed(make(), predictions(3_000, version="1", shift=lambda i: 8.0))
    assert all(v.drifted for v in verdicts(shifted))
    assert len(triggers(shifted)) == 1


def test_without_a_reference_there_is_no_verdict_and_a_reason() -> None:
    monitor = make()
    outcomes = feed(monitor, predictions(1_000, version="9", shift=lambda i: 20.0))
    assert [v.verdict for v in verdicts(outcomes)] == ["no_verdict", "no_verdict"]
    assert verdicts(outcomes)[0].reason_code == "not_loaded"
    assert triggers(outcomes) == []
    REFERENCES[("m", "8")] = ModelReference(None, None, "no reference artifact")
    try:
        later = verdicts(feed(make(), predictions(500, version="8")))
        assert later[0].reason == "no reference artifact"
    finally:
        del REFERENCES[("m", "8")]


def test_data_arrival_trigger_after_n_examples_and_restarts_on_promotion() -> None:
    monitor = make(data_arrival_examples=1_000)
    outcomes = feed(monitor, examples(1_500, error_rate=lambda i: 0.1), kind="example")
    assert [(i, t.reason) for i, t in triggers(outcomes)] == [(999, "data_arrival")]
    monitor.observe_model_update({"model_name": "m", "model_version": "2"})
    again = triggers(feed(monitor, examples(999, error_rate=lambda i: 0.1), kind="example"))
    assert again == []


def test_data_arrival_counts_only_the_champions_examples() -> None:
    """A first model's bootstrap examples, read after its promotion, are not new data."""
    monitor = make(data_arrival_examples=1_000)
    monitor.observe_model_update({"model_name": "m", "model_version": "2"})
    older = examples(1_500, error_rate=lambda i: 0.1)
    assert {e["model_version"] for e in older} != {"2"}
    assert triggers(feed(monitor, older, kind="example")) == []
    ours = [{**e, "model_version": "2"} for e in examples(1_000, error_rate=lambda i: 0.1)]
    assert [(i, t.reason) for i, t in triggers(feed(monitor, ours, kind="example"))] == [
        (999, "data_arrival")
    ]


def test_events_match_their_schemas() -> None:
    schemas = EventSchemas()
    monitor = make(data_arrival_examples=100)
    outcomes = feed(monitor, predictions(2_000, shift=lambda i: 6.0))
    outcomes += feed(monitor, examples(100, error_rate=lambda i: 0.1), kind="example")
    drifted = [v for v in verdicts(outcomes) if v.drifted]
    assert drifted
    for verdict in drifted:
        schemas.validate(EventType.DRIFT, verdict.drift_event("file:///tmp/r.html"))
    fired = triggers(outcomes)
    assert {t.reason for _, t in fired} == {"drift", "data_arrival"}
    for _, trigger in fired:
        schemas.validate(EventType.TRIGGER, trigger.trigger_event())
    assert fired[0][1].trigger_event()["drift_event_id"] == drifted[1].drift_event_id


def test_budget_sets_the_window_level() -> None:
    monitor = make(budget=FalseAlarmBudget(rate=1e-5), open_after=2)
    outcomes = feed(monitor, predictions(500))
    assert verdicts(outcomes)[0].alpha == pytest.approx(0.05)


@pytest.mark.parametrize(("p0", "p1"), [(0.05, 0.1), (0.011, 0.061), (0.27, 0.32), (0.05, 0.25)])
def test_cusum_threshold_keeps_the_in_control_run_length(p0: float, p1: float) -> None:
    # 400 CUSUMs at the in-control rate for 20,000 examples each: the false alarms stay
    # within the run length asked for (1 per 1000 examples).
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    threshold = cusum_threshold(p0 * up + (1 - p0) * down, run_length=1000)
    rng = np.random.default_rng(0)
    statistic, alarms = np.zeros(400), 0
    for _ in range(20_000):
        statistic = np.maximum(0.0, statistic + np.where(rng.random(400) < p0, up, down))
        alarms += int((statistic > threshold).sum())
        statistic[statistic > threshold] = 0.0
    assert alarms / (400 * 20_000) <= 1 / 1000
    # ... and not by a wide margin: a threshold this low still detects quickly.
    assert alarms / (400 * 20_000) >= 1 / 3000
