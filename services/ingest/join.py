"""LabelJoin: predictions and their later labels, matched by request_id, in either order.

Labels arrive after their prediction, sometimes long after, sometimes twice, sometimes never,
and sometimes before it (a producer's clock or a slow predictions partition). The join keeps one
entry per request_id, bounded in time (a TTL on event time) and in count, and reports one
outcome for every event it sees:

=========================  =========================================================
outcome                    meaning
=========================  =========================================================
``joined``                 a label met its waiting prediction: one labelled example
``label_before_prediction``  a prediction met its waiting label: one labelled example
``pending``                the event waits for its other half
``duplicate_label``        a second label for a request already joined: dropped
                           (the first label wins; a changed label is logged)
``duplicate_prediction``   a prediction for a request already seen: dropped
``late_label``             a label whose prediction expired before it came
``late_prediction``        a prediction whose label expired (as an orphan) before it came
``expired_prediction``     a prediction whose label did not come within the TTL
``orphan_label``           a label whose prediction did not come within the TTL
``evicted``                an entry dropped to stay under ``max_entries``
``ahead_of_clock``         an event timed past :attr:`LabelJoin.horizon`: refused, it
                           changes nothing (its consumer dead-letters it)
=========================  =========================================================

Time is event time: the join's clock (the watermark) is the latest ``event_time`` it has
seen, so replaying a stream gives the same outcomes as living through it. An entry expires
once the watermark is past its deadline (not at it), whatever order the events came in.
One event from a clock far ahead would move the watermark there and expire every request
waiting; the consumer sets a horizon (its own clock plus a tolerance) past which an event
is refused instead.

Example:
    >>> join = LabelJoin(ttl_s=3600)
    >>> prediction = {"event_id": "p", "event_time": "2026-11-22T10:00:00Z", "request_id": "r",
    ...               "model_name": "m", "model_version": "1", "features": {"x": 1.0},
    ...               "prediction": 0}
    >>> join.add_prediction(prediction).outcome
    'pending'
    >>> result = join.add_label({"event_id": "l", "event_time": "2026-11-22T10:05:00Z",
    ...                          "request_id": "r", "label": 1})
    >>> result.outcome, result.example["label"], result.example["prediction"]
    ('joined', 1, 0)
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from driftloop.events import SCHEMA_VERSION, epoch

log = logging.getLogger(__name__)

# Example ids derive from the request id, so a re-processed join yields the same event_id and
# the store and downstream consumers can drop the copy.
EXAMPLE_NAMESPACE = uuid.UUID("5b0e8f7e-3c1d-4a55-9a7e-6f1d2c3b4a59")

WAITING, JOINED, EXPIRED = "waiting", "joined", "expired"


_NAMESPACE = EXAMPLE_NAMESPACE.bytes
# The RFC 4122 variant: the top two bits of the 17th hex digit are 10.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def example_id(request_id: str) -> str:
    """``uuid.uuid5(EXAMPLE_NAMESPACE, request_id)``, written out: four times faster."""
    h = hashlib.sha1(_NAMESPACE + request_id.encode()).hexdigest()
    # The 13th hex digit is the version (5); the 17th carries the variant.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


@dataclass(slots=True)
class Entry:
    """What the join knows about one request_id."""

    partition: int
    deadline: float
    status: str = WAITING
    # The events as JSON, a third of a decoded dict's memory: a prediction as its record
    # carried it (bytes), or as packed here (text). "" is a marker that the half was there once
    # (its payload is no longer needed).
    prediction: bytes | str | None = None
    label: str | None = None

    def snapshot(self) -> dict[str, Any]:
        """The entry as the changelog stores it (a prediction's bytes as a nested object)."""
        prediction = self.prediction
        return {
            "partition": self.partition,
            "deadline": self.deadline,
            "status": self.status,
            "prediction": orjson.Fragment(prediction) if type(prediction) is bytes else prediction,
            "label": self.label,
        }


class JoinResult(NamedTuple):
    outcome: str
    example: dict[str, Any] | None = None


PENDING = JoinResult("pending")  # half of all results: made once
AHEAD_OF_CLOCK = JoinResult("ahead_of_clock")


class LabelJoin:
    """Match predictions with labels by ``request_id`` within ``ttl_s`` of event time.

    Parameters:
        ttl_s: how long, in event time, a prediction waits for its label (and a label for its
            prediction); a finished request is remembered as long again, to recognise
            duplicates and late labels.
        max_entries: most request_ids held at once; past it the oldest are evicted.

    The counts of every outcome so far are in :attr:`outcomes`. Changed entries since the last
    :meth:`drain_changes` are what a changelog needs to rebuild the state after a restart.
    """

    def __init__(self, ttl_s: float, max_entries: int = 1_000_000) -> None:
        if ttl_s <= 0 or max_entries <= 0:
            raise ValueError("ttl_s and max_entries must be positive")
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.watermark = float("-inf")
        # Events timed past this are refused (see the module's docstring); set by the consumer.
        self.horizon = float("inf")
        self.outcomes: Counter[str] = Counter()
        self._entries: dict[str, Entry] = {}  # least recently touched first: eviction order
        self._waiting = 0  # entries whose status is WAITING, kept as they change
        self._deadlines: list[tuple[float, str]] = []  # a heap; stale items are skipped
        self._changed: dict[str, int] = {}
        self._logged: set[str] = set()  # request ids with a live record in the changelog

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def waiting(self) -> int:
        """Requests with one half seen and the other still expected."""
        return self._waiting

    # --- the two inputs ------------------------------------------------------------------

    def add_prediction(
        self, prediction: dict[str, Any], partition: int = 0, value: bytes | None = None
    ) -> JoinResult:
        """Join a prediction; ``value``, its JSON as read (kept while it waits, else packed)."""
        request_id = prediction["request_id"]
        time = self._advance(prediction["event_time"])
        if time is None:
            return self._count(AHEAD_OF_CLOCK)
        entry = self._entries.get(request_id)
        if entry is None:
            held = value if value is not None else pack(prediction)
            self._insert(request_id, Entry(partition, time + self.ttl_s, prediction=held))
            return self._count(PENDING)
        if entry.status == EXPIRED and entry.label is not None:
            return self._count(JoinResult("late_prediction"))
        if entry.status != WAITING or entry.prediction is not None:
            return self._count(JoinResult("duplicate_prediction"))
        assert entry.label
        label = orjson.loads(entry.label)
        return self._count(
            JoinResult(
                "label_before_prediction", self._finish(request_id, entry, prediction, label)
            )
        )

    def add_label(self, label: dict[str, Any], partition: int = 0) -> JoinResult:
        request_id = label["request_id"]
        time = self._advance(label["event_time"])
        if time is None:
            return self._count(AHEAD_OF_CLOCK)
        entry = self._entries.get(request_id)
        if entry is None:
            self._insert(request_id, Entry(partition, time + self.ttl_s, label=pack(label)))
            return self._count(PENDING)
        if entry.status == EXPIRED and entry.prediction is not None:
            return self._count(JoinResult("late_label"))
        if entry.status != WAITING or entry.label is not None:
            first = orjson.loads(entry.label)["label"] if entry.label else label["label"]
            if first != label["label"]:
                log.warning(
                    "second label differs from the first; the first stands",
                    extra={"request_id": request_id, "first": first, "second": label["label"]},
                )
            return self._count(JoinResult("duplicate_label"))
        assert entry.prediction
        prediction = orjson.loads(entry.prediction)
        return self._count(JoinResult("joined", self._finish(request_id, entry, prediction, label)))

    # --- time and space ------------------------------------------------------------------

    def expire(self) -> Counter[str]:
        """Apply the TTL at the current watermark; returns what expired, by outcome."""
        expired: Counter[str] = Counter()
        while self._deadlines and self._deadlines[0][0] < self.watermark:
            deadline, request_id = heapq.heappop(self._deadlines)
            entry = self._entries.get(request_id)
            if entry is None or entry.deadline != deadline:
                continue  # replaced or forgotten since this deadline was set
            self._remove(request_id)
            if entry.status == WAITING:
                outcome = "expired_prediction" if entry.prediction is not None else "orphan_label"
                expired[outcome] += 1
                # Remember which half it had (not the payload), so that a late other half is
                # recognised as late rather than as new.
                had_prediction = entry.prediction is not None
                marker = Entry(
                    entry.partition,
                    self.watermark + self.ttl_s,
                    EXPIRED,
                    prediction="" if had_prediction else None,
                    label=None if had_prediction else "",
                )
                self._put(request_id, marker)
            else:
                self._changed[request_id] = entry.partition
        self.outcomes.update(expired)
        return expired

    def drain_changes(self) -> dict[str, tuple[int, dict[str, Any] | None]]:
        """What a changelog needs since the last call: ``{request_id: (partition, snapshot)}``.

        A snapshot of None is a tombstone. Only what a restart needs to lose no example is
        given: entries still waiting, and what became of entries given as waiting before. A
        request that arrived and finished between two calls leaves no trace, which halves the
        changelog's writes; the cost is that after a restart a duplicate label of such a
        request counts as an orphan instead of a duplicate.
        """
        changes: dict[str, tuple[int, dict[str, Any] | None]] = {}
        for request_id, partition in self._changed.items():
            entry = self._entries.get(request_id)
            if entry is not None and entry.status == WAITING:
                changes[request_id] = (partition, entry.snapshot())
                self._logged.add(request_id)
            elif request_id in self._logged:
                changes[request_id] = (partition, entry.snapshot() if entry else None)
                if entry is None:
                    self._logged.discard(request_id)
        self._changed.clear()
        return changes

    def restore(self, request_id: str, snapshot: dict[str, Any] | None) -> None:
        """Put back one entry read from the changelog (None forgets it)."""
        self._remove(request_id)
        self._logged.discard(request_id)
        if snapshot is not None:
            if isinstance(snapshot.get("prediction"), dict):  # bytes nested as an object: text
                snapshot = snapshot | {"prediction": pack(snapshot["prediction"])}
            entry = self._entries[request_id] = Entry(**snapshot)
            self._waiting += entry.status == WAITING
            self._logged.add(request_id)
            heapq.heappush(self._deadlines, (snapshot["deadline"], request_id))
            self.watermark = max(self.watermark, snapshot["deadline"] - self.ttl_s)

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget the entries of partitions this process no longer owns; returns how many."""
        gone = set(partitions)
        doomed = [rid for rid, entry in self._entries.items() if entry.partition in gone]
        for request_id in doomed:
            self._remove(request_id)
            self._changed.pop(request_id, None)
            self._logged.discard(request_id)
        return len(doomed)

    # --- internals -----------------------------------------------------------------------

    def _advance(self, event_time: str) -> float | None:
        """The event's time, moving the watermark to it if later; None past the horizon."""
        time = epoch(event_time)
        if time > self.watermark:
            if time > self.horizon:
                return None
            self.watermark = time
        return time

    def _put(self, request_id: str, entry: Entry) -> None:
        self._remove(request_id)  # re-inserting moves it to the back
        self._insert(request_id, entry)

    def _insert(self, request_id: str, entry: Entry) -> None:
        """Hold ``entry`` for a request not held now (at the back of the eviction order)."""
        self._entries[request_id] = entry
        self._waiting += entry.status == WAITING
        heapq.heappush(self._deadlines, (entry.deadline, request_id))
        self._changed[request_id] = entry.partition
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            evicted = self._remove(oldest)
            assert evicted is not None
            self._changed[oldest] = evicted.partition
            if evicted.status == WAITING:
                self.outcomes["evicted"] += 1

    def _remove(self, request_id: str) -> Entry | None:
        entry = self._entries.pop(request_id, None)
        if entry is not None and entry.status == WAITING:
            self._waiting -= 1
        return entry

    def _finish(
        self, request_id: str, entry: Entry, prediction: dict[str, Any], label: dict[str, Any]
    ) -> dict[str, Any]:
        # The waiting entry becomes a marker (with the label, to spot a conflicting duplicate)
        # until it expires: changed in place, moved to the back of the eviction order.
        del self._entries[request_id]
        self._waiting -= 1
        entry.status = JOINED
        entry.deadline = self.watermark + self.ttl_s
        entry.prediction = None
        entry.label = pack({"label": label["label"]})
        self._entries[request_id] = entry
        heapq.heappush(self._deadlines, (entry.deadline, request_id))
        if request_id in self._logged:
            self._changed[request_id] = entry.partition
        else:  # never in the changelog: nothing to tell it (see drain_changes)
            self._changed.pop(request_id, None)
        return labelled_example(prediction, label)

    def _count(self, result: JoinResult) -> JoinResult:
        self.outcomes[result.outcome] += 1
        return result


# A prediction's optional fields that its labelled example carries too.
LIVE_EVIDENCE = ("answered_by", "shadows")


def pack(event: dict[str, Any]) -> str:
    return orjson.dumps(event).decode()


def labelled_example(prediction: dict[str, Any], label: dict[str, Any]) -> dict[str, Any]:
    """The labelled-example event for one prediction and its label; who answered and the
    shadows' answers come along, the live evidence the trainer judges models by."""
    example = {
        "schema_version": SCHEMA_VERSION,
        "event_id": example_id(prediction["request_id"]),
        "event_time": later(prediction["event_time"], label["event_time"]),
        "request_id": prediction["request_id"],
        "model_name": prediction["model_name"],
        "model_version": prediction["model_version"],
        "features": prediction["features"],
        "prediction": prediction["prediction"],
        "label": label["label"],
        "prediction_time": prediction["event_time"],
        "label_time": label["event_time"],
    }
    for name in LIVE_EVIDENCE:
        if name in prediction:
            example[name] = prediction[name]
    return example


def later(first: str, second: str) -> str:
    """The later of two RFC 3339 times (``first`` on a tie)."""
    if len(first) == len(second) and first[-1] == second[-1] == "Z" and first[10] == second[10]:
        # Same layout in UTC: text order is time order, no parse needed.
        return second if second > first else first
    return second if epoch(second) > epoch(first) else first
