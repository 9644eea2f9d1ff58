from __future__ import annotations

from driftloop.services.trainer.fit import FitConfig, batch_size_for


def test_the_batch_follows_the_window_between_32_and_256() -> None:
    assert batch_size_for(100) == 32  # a small window still gets many steps an epoch
    assert batch_size_for(1_600) == 32
    assert batch_size_for(4_000) == 64
    assert batch_size_for(8_000) == 128
    assert batch_size_for(100_000) == 256  # a large one keeps the fast batches
    assert batch_size_for(0) == 32


def test_a_set_batch_size_wins() -> None:
    assert FitConfig(batch_size=4).batch_size_for(100_000) == 4
    assert FitConfig().batch_size_for(1_600) == 32
