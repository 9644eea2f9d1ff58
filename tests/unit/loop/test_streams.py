"""The drifting streams: drift points where they say, the concept changing there, repeatable."""

from __future__ import annotations

import pytest

from driftloop.loop import streams


def labels_by(stream: streams.DriftingStream, function: int) -> float:
    """Share of the stream's labels that Agrawal's ``function`` gives its features."""
    from river.datasets.synth import Agrawal

    rule = Agrawal(classification_function=function)._classification_functions[function]
    events = list(stream)
    return sum(rule(**x) == y for x, y in events) / len(events)


def test_abrupt_switches_concept_exactly_at_each_point() -> None:
    stream = streams.abrupt(n_events=900, drift_at=(300, 600), functions=(0, 2, 0), seed=3)
    events = list(stream)
    assert len(events) == 900
    assert [d.position for d in stream.drifts] == [300, 600]
    assert {d.kind for d in stream.drifts} == {"abrupt"}
    from river.datasets.synth import Agrawal

    f0 = Agrawal(classification_function=0)._classification_functions[0]
    f2 = Agrawal(classification_function=2)._classification_functions[2]
    assert all(f0(**x) == y for x, y in events[:300])
    assert all(f2(**x) == y for x, y in events[300:600])
    assert all(f0(**x) == y for x, y in events[600:])
    # The two concepts disagree often enough for a served model to notice.
    assert sum(f0(**x) != f2(**x) for x, _ in events) / 900 > 0.3


def test_streams_repeat_and_carry_plain_json_values() -> None:
    stream = streams.recurring(n_events=400, period=100, seed=5)
    first, second = list(stream), list(stream)
    assert first == second
    assert [d.position for d in stream.drifts] == [100, 200, 300]
    x, y = first[0]
    assert set(x) == set(streams.AGRAWAL_FEATURES)
    assert all(type(v) in (int, float) for v in x.values())
    assert y in stream.classes
    assert stream.concept_at(99) == 0 and stream.concept_at(100) == 1


def test_gradual_blends_the_new_concept_in_over_its_width() -> None:
    stream = streams.gradual(n_events=3000, drift_at=(1500,), functions=(0, 2), width=600)
    assert stream.drifts[0].position == 900 and stream.drifts[0].width == 1200
    from river.datasets.synth import Agrawal

    f0 = Agrawal(classification_function=0)._classification_functions[0]
    events = list(stream)
    # The sigmoid has tails: a few new-concept events come early, a few old ones late.
    old = sum(f0(**x) == y for x, y in events[:800]) / 800
    new = sum(f0(**x) == y for x, y in events[2200:]) / 800
    assert old > 0.98
    assert new < 0.7


def test_stationary_is_real_data_with_no_drift_points() -> None:
    stream = streams.stationary(n_events=2000)
    events = list(stream)
    assert len(events) == 2000 and stream.drifts == ()
    assert set(events[0][0]) == set(streams.SHUTTLE_FEATURES)
    assert {y for _, y in events} <= set(stream.classes)


def test_a_mismatched_function_list_is_refused() -> None:
    with pytest.raises(ValueError, match="one more function"):
        streams.abrupt(drift_at=(10,), functions=(0,))
