"""The prediction log's bound: requests never wait, past the bound events are dropped, counted."""

from __future__ import annotations

from prometheus_client import REGISTRY

from driftloop.events import EventType
from driftloop.services.serve.outbox import EventOutbox
from driftloop.settings import Settings


def dropped() -> float:
    value = REGISTRY.get_sample_value(
        "driftloop_serve_log_dropped_total", {"event": EventType.PREDICTION.schema_name}
    )
    return value or 0.0


def test_put_keeps_what_fits_and_counts_the_rest_as_dropped() -> None:
    outbox = EventOutbox(Settings(), capacity=3)
    before = dropped()
    assert outbox.put(EventType.PREDICTION, ["a", "b"]) == 2
    assert outbox.put(EventType.PREDICTION, ["c", "d", "e"]) == 1  # no sender: nothing leaves
    assert outbox.put(EventType.PREDICTION, ["f"]) == 0
    assert len(outbox) == 3
    assert dropped() - before == 3
