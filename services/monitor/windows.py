"""DriftWindow: the live rows the monitor compares with a reference, by count or by time.

A window is *tumbling* when its step equals its size (each event lands in one window) and
*sliding* when the step is smaller (windows overlap, a verdict comes every ``step``). Count
windows are measured in events, time windows in seconds of event time; a time window closes
when an event at or past its end arrives, or when :meth:`DriftWindow.advance` is told that
time has passed (a quiet stream still gets its verdict); a time window with no event is
skipped.

Example:
    >>> window = DriftWindow(kind="count", size=3)
    >>> [len(w.rows) for t in range(7) for w in window.update({"x": t}, float(t))]
    [3, 3]
    >>> sliding = DriftWindow(kind="count", size=4, step=2)
    >>> [w.rows[0]["x"] for t in range(8) for w in sliding.update({"x": t}, float(t))]
    [0, 2, 4]
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

WindowKind = Literal["count", "time"]


@dataclass(frozen=True)
class ClosedWindow:
    """The rows of one window when it closed.

    Parameters:
        kind: ``count`` or ``time``.
        start, end: event times (epoch seconds) of the first and last row.
        rows: the rows, oldest first.
        index: the window's sequence number in its :class:`DriftWindow`, from 0.
    """

    kind: WindowKind
    start: float
    end: float
    rows: list[Mapping[str, Any]] = field(repr=False)
    index: int = 0

    @property
    def size(self) -> int:
        return len(self.rows)


class DriftWindow:
    """Collects rows and hands back each window as it closes.

    Parameters:
        kind: ``count`` (size and step in events) or ``time`` (in seconds of event time).
        size: the window's length.
        step: how far the next window starts after this one; ``None`` (or ``size``) means
            tumbling windows, a smaller step sliding ones.
    """

    def __init__(self, kind: WindowKind, size: float, step: float | None = None) -> None:
        if size <= 0:
            raise ValueError(f"a window's size must be positive, not {size}")
        step = size if step is None else step
        if not 0 < step <= size:
            raise ValueError(f"a window's step must be in (0, size], not {step}")
        if kind == "count" and (size != int(size) or step != int(step)):
            raise ValueError("a count window's size and step are whole numbers of events")
        self.kind: WindowKind = kind
        self.size = size
        self.step = step
        self._rows: deque[tuple[float, Mapping[str, Any]]] = deque()
        self._seen = 0  # count windows: events since the last close
        self._end: float | None = None  # time windows: end of the next window to close
        self._closed = 0

    @property
    def tumbling(self) -> bool:
        return self.step == self.size

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> list[Mapping[str, Any]]:
        """The rows held now: those of windows still open."""
        return [row for _, row in self._rows]

    def update(self, row: Mapping[str, Any], time: float) -> list[ClosedWindow]:
        """Add ``row`` seen at event time ``time``; returns the windows it closed (often none)."""
        if self.kind == "count":
            return self._update_count(row, time)
        closed = self.advance(time)
        if self._end is None:
            # Time windows are aligned on multiples of the step, so replicas agree on bounds.
            self._end = math.floor(time / self.step) * self.step + self.size
        if time >= self._end - self.size:
            self._rows.append((time, row))
        return closed

    def advance(self, time: float) -> list[ClosedWindow]:
        """Close the time windows that end at or before ``time``; count windows ignore it."""
        closed: list[ClosedWindow] = []
        if self.kind != "time" or self._end is None:
            return closed
        while time >= self._end:
            start = self._end - self.size
            rows = [row for t, row in self._rows if start <= t < self._end]
            times = [t for t, _ in self._rows if start <= t < self._end]
            if rows:  # an empty window has nothing to judge
                closed.append(ClosedWindow("time", min(times), max(times), rows, self._closed))
                self._closed += 1
            self._end += self.step
            while self._rows and self._rows[0][0] < self._end - self.size:
                self._rows.popleft()
            if not self._rows and time >= self._end:
                # Skip the empty windows of a long silence in one jump.
                gap = math.floor((time - self._end) / self.step) * self.step
                self._end += gap
        return closed

    def _update_count(self, row: Mapping[str, Any], time: float) -> list[ClosedWindow]:
        self._rows.append((time, row))
        if len(self._rows) > self.size:
            self._rows.popleft()
        self._seen += 1
        if len(self._rows) < self.size or self._seen < self.step:
            return []
        self._seen = 0
        window = ClosedWindow(
            "count", self._rows[0][0], self._rows[-1][0], [r for _, r in self._rows], self._closed
        )
        self._closed += 1
        if self.tumbling:
            self._rows.clear()
        return [window]
