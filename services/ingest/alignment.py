"""Reading predictions and labels in step: of each partition pair, the one behind in time first.

A prediction and its label sit on the same partition number of two topics. Read as fast as
each topic's fetches arrive, one topic runs ahead of the other, most of all when ingest
catches up on a backlog: predictions of the last hour are read before any label of that hour,
each waits in the join, and each is written to the changelog twice (once waiting, once
resolved). Read in step, a label comes soon after its prediction, and most requests are
joined between two checkpoints, which leaves no changelog record and little join state.

So, like Kafka Streams choosing the record with the lowest timestamp across a task's
partitions, each poll reads, of every pair, only the partition whose last record read is the
older, as long as that partition has more to read; when it has nothing more (caught up, or
when both are as far), both are read, so neither topic ever waits for the other. A partition
not read yet counts as the furthest behind.

Example:
    >>> a, b = Progress("predictions-0", 2_000, True), Progress("labels-0", 1_000, True)
    >>> behind_first([(a, b)])
    ['labels-0']
    >>> behind_first([(a, Progress("labels-0", 1_000, more=False))])
    ['predictions-0', 'labels-0']

References:
    Kafka Streams, flow control with timestamps:
    https://kafka.apache.org/documentation/streams/core-concepts#streams_out_of_ordering
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    """How far one partition has been read.

    Parameters:
        partition: which one.
        time: the timestamp (ms) of its last record read; None before the first.
        more: whether records past that one are known to be there.
    """

    partition: Hashable
    time: int | None
    more: bool


def behind_first(pairs: Iterable[tuple[Progress, Progress]]) -> list[Hashable]:
    """The partitions to read next: of each pair, the one behind in time if it has more to
    read, else both."""
    chosen: list[Hashable] = []
    for first, second in pairs:
        # A partition not read yet is the furthest behind: its first records may be old.
        one, other = _time(first), _time(second)
        if one < other and first.more:
            chosen.append(first.partition)
        elif other < one and second.more:
            chosen.append(second.partition)
        else:
            chosen += [first.partition, second.partition]
    return chosen


def _time(progress: Progress) -> float:
    return float("-inf") if progress.time is None else progress.time
