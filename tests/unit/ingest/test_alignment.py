"""behind_first: of each partition pair, the one behind in time, unless it has nothing more."""

from __future__ import annotations

import pytest

from driftloop.services.ingest.alignment import Progress, behind_first


def pair(
    prediction_time: int | None,
    label_time: int | None,
    *,
    number: int = 0,
    more: tuple[bool, bool] = (True, True),
) -> tuple[Progress, Progress]:
    return (
        Progress(f"predictions-{number}", prediction_time, more[0]),
        Progress(f"labels-{number}", label_time, more[1]),
    )


@pytest.mark.parametrize(
    ("progress", "read"),
    [
        (pair(2_000, 1_000), ["labels-0"]),
        (pair(1_000, 2_000), ["predictions-0"]),
        # nothing more behind: the one ahead is not held back
        (pair(2_000, 1_000, more=(True, False)), ["predictions-0", "labels-0"]),
        (pair(1_000, 1_000), ["predictions-0", "labels-0"]),  # level
        # not read yet: the furthest behind, if it has records
        (pair(5_000, None), ["labels-0"]),
        (pair(None, 5_000), ["predictions-0"]),
        (pair(5_000, None, more=(True, False)), ["predictions-0", "labels-0"]),
        (pair(None, None), ["predictions-0", "labels-0"]),
    ],
)
def test_one_pair(progress: tuple[Progress, Progress], read: list[str]) -> None:
    assert behind_first([progress]) == read


def test_each_pair_is_decided_on_its_own() -> None:
    pairs = [
        pair(2_000, 1_000, number=0),
        pair(1_000, 1_000, number=1),
        pair(1_000, 3_000, number=2),
    ]
    assert behind_first(pairs) == ["labels-0", "predictions-1", "labels-1", "predictions-2"]
