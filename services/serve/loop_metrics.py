"""Counters and histograms for the request path: plain numbers, read when Prometheus scrapes.

``prometheus_client``'s metrics take a lock per update (a histogram's observe takes two), about a
microsecond each, and labelled ones need a child looked up: several per request, on a path
where a whole request costs tens of microseconds. These are updated from the event loop only,
without locks (one thread writes; a scrape reads numbers, at worst one update old), and are
exposed as ordinary Prometheus counters and histograms by registering them as collectors.

Example:
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> registry = CollectorRegistry()
    >>> rows = LoopHistogram("demo_rows", "Rows.", buckets=(1, 8), registry=registry)
    >>> rows.observe(3)
    >>> b'demo_rows_bucket{le="8.0"} 1.0' in generate_latest(registry)
    True
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector


class _LoopMetric(Collector):
    """What both kinds share: a name, help, label names, and the registry that exposes them."""

    suffix = ""  # what the exposition adds to the name (and a name given with it drops)

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.name = name.removesuffix(self.suffix) if self.suffix else name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.values: dict[tuple[str, ...], Any] = {}
        if registry is not None:
            registry.register(self)


class LoopCounter(_LoopMetric):
    """A counter by labels, without locks: :meth:`inc` from one thread only.

    Parameters:
        name: the metric's name (``_total`` is added when exposed, as Prometheus does).
        documentation: its help text.
        labelnames: its labels.
        registry: where it is exposed (None: nowhere, for tests).
    """

    suffix = "_total"
    values: dict[tuple[str, ...], float]

    def inc(self, labels: tuple[str, ...] = (), amount: float = 1) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + amount

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value)
        yield family


class LoopHistogram(_LoopMetric):
    """A histogram by labels, without locks: :meth:`observe` from one thread only.

    Parameters:
        name: the metric's name.
        documentation: its help text.
        labelnames: its labels.
        buckets: the buckets' upper bounds, increasing (``+Inf`` is added).
        registry: where it is exposed (None: nowhere, for tests).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self.bounds = [float(bound) for bound in buckets]
        super().__init__(name, documentation, labelnames, registry)
        # labels -> [count per bucket (the last one +Inf), sum]
        self.values: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        found = self.values.get(labels)
        if found is None:
            found = self.values[labels] = ([0] * (len(self.bounds) + 1), [0.0])
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le)
        found[0][bisect_left(self.bounds, value)] += 1
        found[1][0] += value

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        edges = [*(str(bound) for bound in self.bounds), "+Inf"]
        for labels, (counts, total) in list(self.values.items()):
            cumulative, running = [], 0
            for edge, count in zip(edges, list(counts), strict=True):
                running += count
                cumulative.append((edge, running))
            family.add_metric(list(labels), cumulative, sum_value=total[0])
        yield family
