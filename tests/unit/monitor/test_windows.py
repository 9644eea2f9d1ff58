from __future__ import annotations

import pytest

from driftloop.services.monitor.windows import DriftWindow


def feed(window: DriftWindow, times: list[float]) -> list[list[float]]:
    closed = []
    for t in times:
        closed += [[row["t"] for row in w.rows] for w in window.update({"t": t}, t)]
    return closed


def test_count_tumbling_windows_partition_the_stream() -> None:
    closed = feed(DriftWindow("count", 4), [float(i) for i in range(10)])
    assert closed == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_count_sliding_windows_overlap_by_size_minus_step() -> None:
    closed = feed(DriftWindow("count", 4, step=2), [float(i) for i in range(8)])
    assert closed == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]


def test_time_tumbling_windows_are_aligned_and_close_on_a_later_event() -> None:
    window = DriftWindow("time", 10)
    closed = feed(window, [3, 5, 9.9, 10, 12, 25])
    assert closed == [[3, 5, 9.9], [10, 12]]
    assert window.rows() == [{"t": 25}]


def test_time_sliding_windows() -> None:
    closed = feed(DriftWindow("time", 10, step=5), [1, 4, 6, 9, 11, 14, 16])
    assert closed == [[1, 4, 6, 9], [6, 9, 11, 14]]


def test_a_quiet_time_window_closes_when_time_advances() -> None:
    window = DriftWindow("time", 10)
    feed(window, [1, 2])
    closed = window.advance(10.5)
    assert [w.size for w in closed] == [2]
    assert (closed[0].start, closed[0].end) == (1, 2)
    assert window.advance(1000) == []  # a long silence gives no run of empty windows


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="step"):
        DriftWindow("count", 10, step=20)
    with pytest.raises(ValueError, match="positive"):
        DriftWindow("time", 0)
    with pytest.raises(ValueError, match="whole"):
        DriftWindow("count", 10.5)
