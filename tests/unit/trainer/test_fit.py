from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop.services.trainer.fit import FitConfig, fit
from driftloop.services.trainer.schema import infer_card
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.window import TrainingWindow, WindowPolicy


def noise_window(rows: int = 400) -> TrainingWindow:
    """Labels unrelated to the feature: the validation loss cannot keep improving."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "feature.x": rng.normal(size=rows),
        "label": rng.integers(0, 2, size=rows),
        "event_time": pd.date_range("2026-01-01", periods=rows, freq="s", tz="UTC"),
        "event_id": [f"e{i}" for i in range(rows)],
    })  # fmt: skip
    return TrainingWindow.split(frame, WindowPolicy(kind="last_n", size=rows, min_examples=10))


def learning_rate_after(config: FitConfig) -> float:
    from driftloop.services.trainer.builder import build_model

    window = noise_window()
    card = infer_card(window.everything)
    model = build_model(card, window.train, hidden=(8,), learning_rate=0.01)
    fit(model, card, window, config)
    return float(np.asarray(model.optimizer.learning_rate))


def test_the_learning_rate_falls_while_the_validation_loss_stalls() -> None:
    config = FitConfig(max_epochs=15, patience=100, plateau_patience=2, plateau_factor=0.5)
    assert learning_rate_after(config) < 0.01 * 0.5 + 1e-9


def test_a_plateau_patience_of_zero_keeps_the_learning_rate() -> None:
    config = FitConfig(max_epochs=15, patience=100, plateau_patience=0)
    assert learning_rate_after(config) == pytest.approx(0.01)


def test_the_fit_follows_the_trainers_settings() -> None:
    settings = TrainerSettings(
        trainer_patience=3, trainer_plateau_patience=2, trainer_plateau_factor=0.5,
        trainer_max_epochs=7, trainer_batch_size=16,
    )  # fmt: skip
    config = FitConfig.from_settings(settings)
    assert (config.patience, config.plateau_patience, config.plateau_factor) == (3, 2, 0.5)
    assert (config.max_epochs, config.batch_size_for(10_000)) == (7, 16)
