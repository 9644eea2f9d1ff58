"""Lock-free request-path metrics expose what prometheus_client's own would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from driftloop.services.serve.loop_metrics import LoopCounter, LoopHistogram


def exposition(registry: CollectorRegistry) -> list[str]:
    """The exposition's lines, without the `_created` samples only prometheus_client adds."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_counts_and_buckets_match_prometheus_clients_metrics() -> None:
    mine, theirs = CollectorRegistry(), CollectorRegistry()
    latency = LoopHistogram("t_seconds", "T.", ["v"], buckets=(0.001, 0.01), registry=mine)
    requests = LoopCounter("t_requests_total", "R.", ["v", "s"], registry=mine)
    their_latency = Histogram("t_seconds", "T.", ["v"], buckets=(0.001, 0.01), registry=theirs)
    their_requests = Counter("t_requests_total", "R.", ["v", "s"], registry=theirs)
    for value, version in [(0.0005, "1"), (0.001, "1"), (0.005, "1"), (3.0, "1"), (0.002, "2")]:
        latency.observe(value, (version,))
        their_latency.labels(version).observe(value)
        requests.inc((version, "200"))
        their_requests.labels(version, "200").inc()
    requests.inc(("1", "422"), 2)
    their_requests.labels("1", "422").inc(2)
    assert exposition(mine) == exposition(theirs)
    assert 't_seconds_bucket{le="0.001",v="1"} 2.0' in exposition(mine)  # a bound is "le"
