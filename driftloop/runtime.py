"""What a streaming service sets once, at start: when the garbage collector runs.

ingest, monitor and trainer (and ingest's benchmark replicas) call :func:`tune_gc`; serve
keeps CPython's default, since its garbage dies young and a walk of a large young generation
would be a spike in its latency.

CPython collects its youngest generation after every 700 net allocations of container objects
(dicts, lists, instances). A service on a stream allocates a few per event, so at that default it
collects every few hundred events, and each collection walks every young object still alive:
here, the batch of events in hand. ingest spent a third of its time there (its records checked
at 7.0 µs each, 4.5 µs with the collector off). Rare collections of a larger young generation do
the same work in far fewer walks; the memory they let wait is bounded by the threshold.

Example:
    >>> import gc
    >>> tune_gc()
    >>> gc.get_threshold()
    (50000, 20, 100)

References:
    The garbage collector's design: https://devguide.python.org/internals/garbage-collector/
"""

from __future__ import annotations

import gc

# A young collection per 50k net allocations (a few MB of garbage cycles at most), an older one
# per 20 of those, and a full one per 100 older ones (and only once the long-lived objects have
# grown by a quarter, which CPython checks itself).
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Set the collector for a long-running service; call once its modules are imported."""
    # What the imports made (modules, classes, a framework's registries) lives as long as the
    # process: out of every later collection.
    gc.freeze()
    gc.set_threshold(*thresholds)
