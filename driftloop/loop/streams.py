"""Labelled streams with drift at known points, for the demo, the end-to-end test and the bench.

A :class:`DriftingStream` yields ``(features, label)`` pairs, river style, and knows where its
concept changes (:attr:`DriftingStream.drifts`), so that whoever replays it can measure how
long the loop took to notice and recover. Everything is generated in-process: river's
synthetic generators, and one real dataset that ships inside river's wheel (no download).

- :func:`abrupt`: Agrawal's generator switching classification function at each drift point
  (the concept changes from one event to the next; the features' distribution does not).
- :func:`gradual`: river's ``ConceptDriftStream``, the new concept's share growing along a
  sigmoid of ``width`` events around each point.
- :func:`recurring`: two Agrawal concepts alternating, so an old concept comes back.
- :func:`stationary`: the Statlog Shuttle data (49,097 real rows, bundled with river) in a
  random order, so nothing drifts: a loop that triggers there is raising false alarms.
- :func:`led`: the seven-segment LED digits (ten classes, 10% noise, 17 irrelevant bits),
  the relevant segments moved to other attributes at each drift point.
- :func:`rbf`: random radial basis functions (five classes, ten features), new centroids at
  each drift point: the inputs move with the concept.
- :func:`hyperplane`: a noisy hyperplane in twenty dimensions, another at each drift point.
- :func:`waveform_stationary`: Breiman's waveforms (three classes, forty features with noise),
  no drift: a second false-alarm check, with many features.

References:
    R. Agrawal, T. Imielinski, A. Swami (1993). Database mining: a performance perspective.
    IEEE TKDE 5(6). (the Agrawal generator and its ten classification functions)
    A. Bifet et al. (2009). New ensemble methods for evolving data streams. KDD.
    (the sigmoid mixture behind ``ConceptDriftStream``)
    L. Breiman et al. (1984). Classification and Regression Trees. Wadsworth. (the LED and
    waveform problems)
    G. Hulten, L. Spencer, P. Domingos (2001). Mining time-changing data streams. KDD.
    (the hyperplane generator)

Example:
    >>> stream = abrupt(n_events=6, drift_at=(3,), functions=(0, 2), seed=1)
    >>> [d.position for d in stream.drifts]
    [3]
    >>> len(list(stream))
    6
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from river.datasets import Shuttle, synth

Features = dict[str, Any]
DriftKind = Literal["abrupt", "gradual", "recurring"]

AGRAWAL_FEATURES = (
    "salary",
    "commission",
    "age",
    "elevel",
    "car",
    "zipcode",
    "hvalue",
    "hyears",
    "loan",
)


@dataclass(frozen=True, slots=True)
class DriftPoint:
    """Where a stream's concept changes.

    Parameters:
        position: index of the first event drawn (wholly or partly) from the new concept.
        kind: ``abrupt``, ``gradual`` or ``recurring`` (an earlier concept coming back).
        width: events over which the change happens (1 for an abrupt switch).
    """

    position: int
    kind: DriftKind
    width: int = 1


@dataclass(frozen=True)
class DriftingStream:
    """A finite labelled stream and the points where its concept changes.

    Parameters:
        name: short name for tables and reports.
        n_events: how many events iterating it yields.
        drifts: the drift points, in order.
        classes: the label values it can yield.
        features: feature names, in a stable order.
        seed: the seed every generator is built from; iterating twice yields the same events.
        description: one line for reports.
    """

    name: str
    n_events: int
    drifts: tuple[DriftPoint, ...]
    classes: tuple[Any, ...]
    features: tuple[str, ...]
    seed: int
    description: str
    _source: Any = field(repr=False, compare=False, default=None)

    def __iter__(self) -> Iterator[tuple[Features, Any]]:
        return itertools.islice(self._source(), self.n_events)

    def __len__(self) -> int:
        return self.n_events

    def concept_at(self, index: int) -> int:
        """How many drift points lie at or before ``index`` (0 before the first drift)."""
        return sum(1 for drift in self.drifts if drift.position <= index)


def _agrawal(function: int, seed: int) -> Iterator[tuple[Features, int]]:
    # Features are drawn the same way for every function: only the concept changes. Classes
    # are not balanced: river's balancing alternates the labels strictly, a pattern that a
    # no-change baseline would score 0 on and any sequence model would learn.
    for x, y in synth.Agrawal(classification_function=function, seed=seed):
        yield {name: _plain(x[name]) for name in AGRAWAL_FEATURES}, int(y)


def _plain(value: Any) -> float | int:
    # JSON-friendly Python numbers (river yields numpy scalars for some features).
    return int(value) if isinstance(value, int) else float(value)


def _switched(
    concepts: Sequence[Callable[[], Iterator[tuple[Features, Any]]]], bounds: Sequence[int]
) -> Iterator[tuple[Features, Any]]:
    """``concepts[i]()`` from ``bounds[i]`` to ``bounds[i + 1]``; the last runs on."""
    for i, concept in enumerate(concepts):
        source = concept()
        if i + 1 < len(concepts):
            yield from itertools.islice(source, bounds[i + 1] - bounds[i])
        else:
            yield from source


def _switching(
    name: str,
    concepts: Sequence[Callable[[], Iterator[tuple[Features, Any]]]],
    drift_at: Sequence[int],
    n_events: int,
    *,
    classes: tuple[Any, ...],
    features: tuple[str, ...],
    seed: int,
    description: str,
) -> DriftingStream:
    """A stream that switches abruptly from ``concepts[i]`` to ``concepts[i + 1]`` at
    ``drift_at[i]``."""
    _increasing(drift_at, n_events)
    return DriftingStream(
        name=name,
        n_events=n_events,
        drifts=tuple(DriftPoint(p, "abrupt") for p in drift_at),
        classes=classes,
        features=features,
        seed=seed,
        description=description,
        _source=lambda: _switched(concepts, [0, *drift_at]),
    )


def _segments(
    functions: Sequence[int], bounds: Sequence[int], seed: int
) -> Iterator[tuple[Features, int]]:
    """``functions[i]`` from ``bounds[i]`` to ``bounds[i + 1]``; the last runs on."""
    concepts = [functools.partial(_agrawal, f, seed + i) for i, f in enumerate(functions)]
    return _switched(concepts, bounds)


def abrupt(
    n_events: int = 60_000,
    drift_at: Sequence[int] = (15_000, 30_000, 45_000),
    functions: Sequence[int] = (0, 2, 5, 3),
    seed: int = 42,
) -> DriftingStream:
    """Agrawal with its classification function switched at each of ``drift_at``.

    Parameters:
        n_events: stream length.
        drift_at: the switch points, increasing.
        functions: Agrawal classification functions (0-9), one more than ``drift_at``.
        seed: generator seed.
    """
    if len(functions) != len(drift_at) + 1:
        raise ValueError("abrupt needs one more function than drift points")
    bounds = [0, *drift_at]
    return DriftingStream(
        name="agrawal-abrupt",
        n_events=n_events,
        drifts=tuple(DriftPoint(p, "abrupt") for p in drift_at),
        classes=(0, 1),
        features=AGRAWAL_FEATURES,
        seed=seed,
        description=f"Agrawal, functions {'→'.join(map(str, functions))} switched at "
        f"{', '.join(map(str, drift_at))}",
        _source=lambda: _segments(functions, bounds, seed),
    )


def recurring(
    n_events: int = 60_000,
    period: int = 15_000,
    functions: tuple[int, int] = (0, 2),
    seed: int = 43,
) -> DriftingStream:
    """Two Agrawal concepts alternating every ``period`` events (A, B, A, B, ...)."""
    bounds = list(range(0, n_events, period))
    sequence = [functions[i % 2] for i in range(len(bounds))]
    return DriftingStream(
        name="agrawal-recurring",
        n_events=n_events,
        drifts=tuple(DriftPoint(p, "recurring") for p in bounds[1:]),
        classes=(0, 1),
        features=AGRAWAL_FEATURES,
        seed=seed,
        description=f"Agrawal, functions {functions[0]} and {functions[1]} alternating "
        f"every {period} events",
        _source=lambda: _segments(sequence, bounds, seed),
    )


def gradual(
    n_events: int = 60_000,
    drift_at: Sequence[int] = (20_000, 40_000),
    functions: Sequence[int] = (0, 2, 5),
    width: int = 4_000,
    seed: int = 44,
) -> DriftingStream:
    """River's ``ConceptDriftStream`` nested: Agrawal concepts blending over ``width`` events.

    ``drift_at`` names the centre of each blend (half the new concept there); ``DriftPoint``
    records its start, ``centre - width``, where the new concept's share reaches 2% (river's
    sigmoid is ``1 / (1 + exp(-4 (t - centre) / width))``).
    """
    if len(functions) != len(drift_at) + 1:
        raise ValueError("gradual needs one more function than drift points")

    def build() -> Iterator[tuple[Features, int]]:
        def agrawal(function: int, offset: int) -> synth.Agrawal:
            return synth.Agrawal(classification_function=function, seed=seed + offset)

        # Innermost first: the last concept, then each earlier one drifting into it.
        stream: Any = agrawal(functions[-1], len(functions))
        for i in range(len(drift_at) - 1, -1, -1):
            previous = drift_at[i - 1] if i else 0
            stream = synth.ConceptDriftStream(
                stream=agrawal(functions[i], i),
                drift_stream=stream,
                position=drift_at[i] - previous,
                width=width,
                seed=seed + 100 + i,
            )
        for x, y in stream:
            yield {name: _plain(x[name]) for name in AGRAWAL_FEATURES}, int(y)

    return DriftingStream(
        name="agrawal-gradual",
        n_events=n_events,
        drifts=tuple(DriftPoint(max(0, p - width), "gradual", 2 * width) for p in drift_at),
        classes=(0, 1),
        features=AGRAWAL_FEATURES,
        seed=seed,
        description=f"Agrawal, functions {'→'.join(map(str, functions))} blending over "
        f"{width} events around {', '.join(map(str, drift_at))}",
        _source=build,
    )


SHUTTLE_FEATURES = tuple(f"f{i}" for i in range(1, 10))


def stationary(n_events: int | None = None, seed: int = 45) -> DriftingStream:
    """The Statlog Shuttle dataset (real, bundled with river) shuffled: no drift at all.

    Parameters:
        n_events: how many rows to use (all 49,097 when None; more repeats them reshuffled).
    """
    rows = [({k: float(v) for k, v in x.items()}, int(y)) for x, y in Shuttle()]
    total = n_events or len(rows)

    def shuffled() -> Iterator[tuple[Features, int]]:
        rng = random.Random(seed)
        while True:
            order = list(range(len(rows)))
            rng.shuffle(order)
            for i in order:
                yield rows[i]

    return DriftingStream(
        name="shuttle-stationary",
        n_events=total,
        drifts=(),
        classes=tuple(sorted({y for _, y in rows})),
        features=SHUTTLE_FEATURES,
        seed=seed,
        description="Statlog Shuttle (NASA, 49k real rows, bundled with river), shuffled",
        _source=shuffled,
    )


def _named(dataset: Any, names: Sequence[str]) -> Iterator[tuple[Features, int]]:
    # River's synthetic generators key their features 0, 1, ...: name them, make them plain.
    for x, y in dataset:
        yield {names[i]: _plain(v) for i, v in x.items()}, int(y)


def _increasing(drift_at: Sequence[int], n_events: int) -> None:
    if any(b <= a for a, b in itertools.pairwise([0, *drift_at, n_events])):
        raise ValueError("drift points must increase strictly, inside the stream")


LED_FEATURES = tuple(f"x{i}" for i in range(24))


def led(
    n_events: int = 60_000,
    drift_at: Sequence[int] = (15_000, 30_000, 45_000),
    drift_features: Sequence[int] = (0, 3, 5, 7),
    noise: float = 0.1,
    seed: int = 46,
) -> DriftingStream:
    """Ten LED digits whose relevant segments move to other attributes at each of ``drift_at``.

    River's ``LEDDrift``: each event is a digit (the label) shown on seven segments, each
    segment flipped with probability about ``noise``, beside 17 random bits. A concept swaps
    ``drift_features[i]`` segments with irrelevant bits (which ones depends on the segment's
    seed, ``seed + i``); the counts differ from one concept to the next, so every drift point
    moves some segment. The bits' distribution does not change, only what they mean.

    Parameters
    ----------
    n_events
        Stream length.
    drift_at
        The switch points, increasing.
    drift_features
        Segments swapped with irrelevant bits (0-7) in each concept, one more than
        ``drift_at``; neighbours must differ.
    noise
        River's ``noise_percentage``: the chance that a segment is flipped (less 1%).
    seed
        Seed of the first concept; concept ``i`` uses ``seed + i``.

    Returns
    -------
    DriftingStream
        Labels 0-9, features ``x0``-``x23`` (int 0 or 1).

    Examples
    --------
    >>> stream = led(n_events=6, drift_at=(3,), drift_features=(0, 4))
    >>> stream.classes, len(next(iter(stream))[0]), len(list(stream))
    ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), 24, 6)
    """
    if len(drift_features) != len(drift_at) + 1:
        raise ValueError("led needs one more drift_features count than drift points")
    if any(a == b for a, b in itertools.pairwise(drift_features)):
        raise ValueError("led needs neighbouring concepts to swap different counts")

    def concept(i: int, swapped: int) -> Iterator[tuple[Features, int]]:
        dataset = synth.LEDDrift(
            seed=seed + i,
            noise_percentage=noise,
            irrelevant_features=True,
            n_drift_features=swapped,
        )
        return _named(dataset, LED_FEATURES)

    concepts = [functools.partial(concept, i, n) for i, n in enumerate(drift_features)]
    return _switching(
        "led-abrupt",
        concepts,
        drift_at,
        n_events,
        classes=tuple(range(10)),
        features=LED_FEATURES,
        seed=seed,
        description=f"LED digits ({noise:.0%} noise, 17 irrelevant bits), "
        f"{'→'.join(map(str, drift_features))} segments moved, switched at "
        f"{', '.join(map(str, drift_at))}",
    )


RBF_FEATURES = tuple(f"x{i}" for i in range(10))


def rbf(
    n_events: int = 60_000,
    drift_at: Sequence[int] = (15_000, 30_000, 45_000),
    n_centroids: int = 50,
    seed: int = 47,
) -> DriftingStream:
    """Random radial basis functions, with new centroids at each of ``drift_at``.

    River's ``RandomRBF``: ``n_centroids`` Gaussian blobs in the unit cube, each with a class
    (of five), a spread and a weight. Concept ``i`` draws its centroids from
    ``seed_model = seed + i``, so at a drift point both where the inputs fall and which class
    each region holds change at once.

    Parameters
    ----------
    n_events
        Stream length.
    drift_at
        The switch points, increasing.
    n_centroids
        Blobs per concept.
    seed
        Seed of the first concept; concept ``i`` uses ``seed + i`` for its centroids and
        ``seed + 1000 + i`` for its samples.

    Returns
    -------
    DriftingStream
        Labels 0-4, features ``x0``-``x9`` (float).

    Examples
    --------
    >>> stream = rbf(n_events=6, drift_at=(3,))
    >>> stream.classes, len(next(iter(stream))[0]), len(list(stream))
    ((0, 1, 2, 3, 4), 10, 6)
    """

    def concept(i: int) -> Iterator[tuple[Features, int]]:
        dataset = synth.RandomRBF(
            seed_model=seed + i,
            seed_sample=seed + 1000 + i,
            n_classes=5,
            n_features=len(RBF_FEATURES),
            n_centroids=n_centroids,
        )
        return _named(dataset, RBF_FEATURES)

    concepts = [functools.partial(concept, i) for i in range(len(drift_at) + 1)]
    return _switching(
        "rbf-abrupt",
        concepts,
        drift_at,
        n_events,
        classes=tuple(range(5)),
        features=RBF_FEATURES,
        seed=seed,
        description=f"random RBF (5 classes, 10 features, {n_centroids} centroids), new "
        f"centroids at {', '.join(map(str, drift_at))}",
    )


HYPERPLANE_FEATURES = tuple(f"x{i}" for i in range(20))


def hyperplane(
    n_events: int = 60_000,
    drift_at: Sequence[int] = (15_000, 30_000, 45_000),
    noise: float = 0.05,
    seed: int = 48,
) -> DriftingStream:
    """A hyperplane in twenty dimensions, replaced by another at each of ``drift_at``.

    River's ``Hyperplane``: inputs uniform in the unit cube, label 1 where
    ``sum(w_i x_i) >= sum(w_i) / 2``, flipped with probability about ``noise``. River can
    rotate the plane a little at every event (incremental drift, with no point to measure
    from); here it stays still, and concept ``i`` draws its weights from ``seed + i``
    instead. River's weights are all positive, so two planes disagree on about a quarter of
    the inputs, not half: a real but moderate change.

    Parameters
    ----------
    n_events
        Stream length.
    drift_at
        The switch points, increasing.
    noise
        River's ``noise_percentage``: the chance that a label is flipped (less 1%).
    seed
        Seed of the first concept; concept ``i`` uses ``seed + i``.

    Returns
    -------
    DriftingStream
        Labels 0 and 1, features ``x0``-``x19`` (float).

    Examples
    --------
    >>> stream = hyperplane(n_events=6, drift_at=(3,))
    >>> stream.classes, len(next(iter(stream))[0]), len(list(stream))
    ((0, 1), 20, 6)
    """

    def concept(i: int) -> Iterator[tuple[Features, int]]:
        dataset = synth.Hyperplane(
            seed=seed + i,
            n_features=len(HYPERPLANE_FEATURES),
            n_drift_features=0,
            mag_change=0.0,
            noise_percentage=noise,
        )
        return _named(dataset, HYPERPLANE_FEATURES)

    concepts = [functools.partial(concept, i) for i in range(len(drift_at) + 1)]
    return _switching(
        "hyperplane-abrupt",
        concepts,
        drift_at,
        n_events,
        classes=(0, 1),
        features=HYPERPLANE_FEATURES,
        seed=seed,
        description=f"hyperplane (20 features, {noise:.0%} label noise), a new plane at "
        f"{', '.join(map(str, drift_at))}",
    )


WAVEFORM_FEATURES = tuple(f"x{i}" for i in range(40))


def waveform_stationary(n_events: int = 60_000, seed: int = 49) -> DriftingStream:
    """Breiman's three waveforms with noise: many features, and no drift at all.

    River's ``Waveform`` with ``has_noise``: each event mixes two of three base waves at 21
    points plus Gaussian noise, beside 19 features of pure noise; the label says which pair.

    Parameters
    ----------
    n_events
        Stream length.
    seed
        Generator seed.

    Returns
    -------
    DriftingStream
        Labels 0-2, features ``x0``-``x39`` (float), no drift points.

    Examples
    --------
    >>> stream = waveform_stationary(n_events=6)
    >>> stream.classes, len(next(iter(stream))[0]), stream.drifts
    ((0, 1, 2), 40, ())
    """
    return DriftingStream(
        name="waveform-stationary",
        n_events=n_events,
        drifts=(),
        classes=(0, 1, 2),
        features=WAVEFORM_FEATURES,
        seed=seed,
        description="Breiman's waveforms (3 classes, 21 features with noise + 19 of noise), "
        "no drift",
        _source=lambda: _named(synth.Waveform(seed=seed, has_noise=True), WAVEFORM_FEATURES),
    )


def demo(n_before: int = 3_000, n_after: int = 4_000, seed: int = 7) -> DriftingStream:
    """The demo's stream: one concept long enough to train on, then one abrupt switch."""
    stream = abrupt(n_events=n_before + n_after, drift_at=(n_before,), functions=(0, 2), seed=seed)
    return DriftingStream(
        name="demo",
        n_events=stream.n_events,
        drifts=stream.drifts,
        classes=stream.classes,
        features=stream.features,
        seed=seed,
        description=stream.description,
        _source=stream._source,
    )


STREAMS = {
    "abrupt": abrupt,
    "gradual": gradual,
    "recurring": recurring,
    "stationary": stationary,
    "led": led,
    "rbf": rbf,
    "hyperplane": hyperplane,
    "waveform": waveform_stationary,
}
