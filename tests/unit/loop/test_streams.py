"""The drifting streams: drift points where they say, the concept changing there, repeatable."""

from __future__ import annotations

import itertools
import json

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


# --- the streams other than Agrawal ---------------------------------------------------------

NEW_STREAMS = {
    "led": lambda: streams.led(n_events=2400, drift_at=(800, 1600), drift_features=(0, 4, 6)),
    "rbf": lambda: streams.rbf(n_events=2400, drift_at=(800, 1600)),
    "hyperplane": lambda: streams.hyperplane(n_events=2400, drift_at=(800, 1600)),
    "waveform": lambda: streams.waveform_stationary(n_events=2400),
}
SHAPES = {"led": (10, 24), "rbf": (5, 10), "hyperplane": (2, 20), "waveform": (3, 40)}


def matrix(events: list[tuple[dict, int]], names: tuple[str, ...]) -> tuple:
    import numpy as np

    features = np.array([[x[name] for name in names] for x, _ in events], dtype=float)
    return features, np.array([y for _, y in events])


def nearest_centroid_accuracy(train: list, test: list, names: tuple[str, ...]) -> float:
    """Accuracy on ``test`` of each class's mean feature vector, fitted on ``train``."""
    import numpy as np

    x, y = matrix(train, names)
    classes = np.unique(y)
    centres = np.array([x[y == c].mean(axis=0) for c in classes])
    tx, ty = matrix(test, names)
    guess = classes[((tx[:, None, :] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)]
    return float((guess == ty).mean())


def nearest_neighbour_accuracy(train: list, test: list, names: tuple[str, ...]) -> float:
    """Accuracy on ``test`` of the label of the nearest event in ``train``."""
    x, y = matrix(train, names)
    tx, ty = matrix(test, names)
    nearest = ((tx[:, None, :] - x[None]) ** 2).sum(axis=-1).argmin(axis=1)
    return float((y[nearest] == ty).mean())


@pytest.mark.parametrize("name", sorted(NEW_STREAMS))
def test_each_new_stream_repeats_itself_event_for_event(name: str) -> None:
    stream = NEW_STREAMS[name]()
    first = list(itertools.islice(stream, 200))
    assert first == list(itertools.islice(stream, 200))
    assert len(first) == 200


@pytest.mark.parametrize("name", sorted(NEW_STREAMS))
def test_each_new_stream_yields_its_declared_classes_and_named_plain_features(name: str) -> None:
    stream = NEW_STREAMS[name]()
    events = list(stream)
    n_classes, n_features = SHAPES[name]
    assert len(events) == len(stream) == 2400
    assert len(stream.classes) == n_classes and len(stream.features) == n_features
    assert {y for _, y in events} == set(stream.classes)
    assert all(type(y) is int for _, y in events)
    for x, _ in events[:300]:
        assert tuple(x) == stream.features
        assert all(type(v) in (int, float, str) for v in x.values())
    json.dumps(events[:10])


def test_led_features_are_bits() -> None:
    events = list(itertools.islice(NEW_STREAMS["led"](), 300))
    assert {v for x, _ in events for v in x.values()} == {0, 1}
    assert all(type(v) is int for x, _ in events for v in x.values())


@pytest.mark.parametrize("name", ["led", "rbf", "hyperplane"])
def test_the_drifting_ones_switch_abruptly_where_they_say(name: str) -> None:
    stream = NEW_STREAMS[name]()
    assert [(d.position, d.kind, d.width) for d in stream.drifts] == [
        (800, "abrupt", 1),
        (1600, "abrupt", 1),
    ]
    assert stream.concept_at(799) == 0 and stream.concept_at(800) == 1


@pytest.mark.parametrize(
    ("name", "model"),
    [("led", nearest_centroid_accuracy), ("rbf", nearest_neighbour_accuracy)],
)
def test_a_model_fitted_before_a_drift_point_fails_after_it(name: str, model) -> None:
    stream = NEW_STREAMS[name]()
    events = list(stream)
    for point in (800, 1600):
        train, held_out = events[point - 800 : point - 300], events[point - 300 : point]
        after = events[point : point + 300]
        before = model(train, held_out, stream.features)
        assert before - model(train, after, stream.features) > 0.25, (point, before)


def test_rbf_inputs_move_with_the_concept() -> None:
    import numpy as np

    stream = NEW_STREAMS["rbf"]()
    x, _ = matrix(list(stream), stream.features)
    for point in (800, 1600):
        shift = np.abs(x[point - 800 : point].mean(axis=0) - x[point : point + 800].mean(axis=0))
        assert shift.max() > 0.05


def test_hyperplane_labels_follow_each_segments_plane() -> None:
    import random

    stream = NEW_STREAMS["hyperplane"]()
    events = list(stream)

    def plane(seed: int):
        # River's Hyperplane draws its weights first from Random(seed); label 1 on or above
        # the plane through the cube's centre.
        rng = random.Random(seed)
        weights = [rng.random() for _ in stream.features]
        half = sum(weights) / 2
        return lambda x: int(
            sum(w * x[n] for w, n in zip(weights, stream.features, strict=True)) >= half
        )

    def agreement(rule, part: list) -> float:
        return sum(rule(x) == y for x, y in part) / len(part)

    first, second = plane(stream.seed), plane(stream.seed + 1)
    # 5% noise (river flips a label with probability noise - 1%): about 96% agreement.
    assert agreement(first, events[:800]) > 0.92
    assert agreement(second, events[800:1600]) > 0.92
    assert agreement(first, events[800:1600]) < 0.85


def test_waveform_has_no_drift_and_a_model_keeps_its_accuracy() -> None:
    stream = NEW_STREAMS["waveform"]()
    events = list(stream)
    assert stream.drifts == () and stream.concept_at(2399) == 0
    early = nearest_centroid_accuracy(events[:500], events[500:800], stream.features)
    late = nearest_centroid_accuracy(events[:500], events[2100:], stream.features)
    assert early > 0.6 and abs(early - late) < 0.1


def test_new_streams_refuse_drift_points_out_of_order_or_past_the_end() -> None:
    with pytest.raises(ValueError, match="increase"):
        streams.rbf(n_events=100, drift_at=(50, 40))
    with pytest.raises(ValueError, match="increase"):
        streams.hyperplane(n_events=100, drift_at=(100,))
    with pytest.raises(ValueError, match="one more"):
        streams.led(drift_at=(10,), drift_features=(0,))
    with pytest.raises(ValueError, match="different"):
        streams.led(drift_at=(10,), drift_features=(3, 3))


def test_the_registry_names_every_stream() -> None:
    assert set(streams.STREAMS) >= {"led", "rbf", "hyperplane", "waveform"}
    assert streams.STREAMS["waveform"] is streams.waveform_stationary
