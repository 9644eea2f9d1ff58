"""tune_gc: what every service sets at start."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from driftloop.runtime import GC_THRESHOLDS, tune_gc


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the test process's collector as it was."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_rare_collections_and_startup_objects_frozen(collector: None) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 1000  # every module imported so far


def test_other_thresholds_can_be_given(collector: None) -> None:
    tune_gc((1000, 5, 5))
    assert gc.get_threshold() == (1000, 5, 5)
