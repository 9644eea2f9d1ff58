"""Fitting a model to convergence within a time bound, on the GPU when there is one.

- Seeds are fixed (weights, shuffling): the same window and settings give the same model.
- Early stopping on the validation slice restores the best epoch's weights; ``max_epochs`` is
  a cap, not the plan.
- Adam starts at a high learning rate (1e-2 by default) and the rate falls to 0.3 of itself
  each time the validation loss stalls for 4 epochs (``ReduceLROnPlateau``): big steps find
  the rule fast, small ones then sharpen its edges. Fitted on the 2,000 examples after each of
  the three concept switches of :mod:`bench.adaptation`'s abrupt stream, the models were 94.1%
  accurate on the rest of their concepts (two seeds), against 89.7-90.8% at a constant 1e-3
  (the earlier default) and 91.7-93.7% at a constant 1e-2 (three seeds each).
- The batch size, unless set, follows the window (:func:`batch_size_for`): about 50 steps an
  epoch, between 32 and 256 examples. A 2,000-example window in batches of 256 gets six steps
  an epoch and stops early before it has learnt what it could: batches of 32 were measured
  3-4 points more accurate there, while a 100,000-example window keeps the fast 256.
- :class:`TimeBound` stops training once ``max_seconds`` have passed (the best weights so far
  are kept) or as soon as the trainer is asked to stop (then :class:`FitInterrupted` is
  raised, so that nothing half-trained is judged).
- When TensorFlow sees a GPU the fit runs there with mixed precision (float16 compute,
  float32 weights and outputs); otherwise on the CPU. The code is the same.

Example:
    >>> config = FitConfig(max_epochs=50, patience=5, max_seconds=60)  # doctest: +SKIP
    >>> report = fit(model, card, window, config)  # doctest: +SKIP
    >>> report.epochs, report.stopped_by  # doctest: +SKIP
    (23, 'early_stopping')
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from driftloop.errors import FitInterrupted
from driftloop.model_card import ModelCard
from driftloop.services.trainer.schema import model_inputs, targets
from driftloop.services.trainer.window import TrainingWindow


@dataclass(frozen=True)
class FitConfig:
    """How long and how a fit runs.

    Parameters:
        max_epochs: epoch cap.
        patience: epochs without validation improvement before stopping.
        max_seconds: wall-clock bound.
        batch_size: examples per step; 0 picks it from the window (:func:`batch_size_for`).
        seed: seeds weights and shuffling.
        plateau_patience: epochs without validation improvement before the learning rate
            falls; 0 keeps it constant.
        plateau_factor: what the learning rate is multiplied by when it falls.
    """

    max_epochs: int = 200
    patience: int = 12
    max_seconds: float = 600.0
    batch_size: int = 0
    seed: int = 42
    plateau_patience: int = 4
    plateau_factor: float = 0.3

    @classmethod
    def from_settings(cls, settings: Any) -> FitConfig:
        return cls(
            max_epochs=settings.trainer_max_epochs,
            patience=settings.trainer_patience,
            max_seconds=settings.trainer_max_fit_s,
            batch_size=settings.trainer_batch_size,
            seed=settings.trainer_seed,
            plateau_patience=settings.trainer_plateau_patience,
            plateau_factor=settings.trainer_plateau_factor,
        )

    def batch_size_for(self, rows: int) -> int:
        """The batch size of a fit on ``rows`` training examples."""
        return self.batch_size or batch_size_for(rows)


def batch_size_for(rows: int, steps: int = 50, smallest: int = 32, largest: int = 256) -> int:
    """The power of two nearest ``rows / steps``, within ``[smallest, largest]``.

    Example:
        >>> batch_size_for(1_600), batch_size_for(8_000), batch_size_for(100_000)
        (32, 128, 256)
    """
    wanted = max(rows, 1) / steps
    return int(min(largest, max(smallest, 2 ** round(math.log2(wanted)))))


@dataclass(frozen=True)
class FitReport:
    """What a fit did.

    Parameters:
        epochs: epochs run.
        best_epoch: the epoch whose weights were kept (1-based).
        stopped_by: ``early_stopping``, ``time_bound`` or ``max_epochs``.
        seconds: wall-clock time of ``model.fit``.
        examples: training rows per epoch.
        best_val_loss: the validation loss of the kept weights.
    """

    epochs: int
    best_epoch: int
    stopped_by: str
    seconds: float
    examples: int
    best_val_loss: float

    @property
    def examples_per_second(self) -> float:
        return self.examples * self.epochs / self.seconds if self.seconds else 0.0


@functools.cache
def device() -> str:
    """``GPU:<name>`` when TensorFlow sees a GPU (and mixed precision is then on), else ``CPU``.

    Decided once per process, before the first model is built: the precision policy is global.
    """
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    keras.mixed_precision.set_global_policy("mixed_float16")
    details = tf.config.experimental.get_device_details(gpus[0])
    return f"GPU:{details.get('device_name', gpus[0].name)}"


class TimeBound:
    """A Keras callback ending training after ``max_seconds`` or when ``stop`` is set."""

    def __new__(cls, max_seconds: float, stop: threading.Event | None = None) -> Any:
        import keras

        class _TimeBound(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.started = time.monotonic()
                self.reason: str | None = None

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                if stop is not None and stop.is_set():
                    self.reason = "interrupted"
                    self.model.stop_training = True

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                if time.monotonic() - self.started > max_seconds:
                    self.reason = self.reason or "time_bound"
                    self.model.stop_training = True

        return _TimeBound()


def dataset(
    card: ModelCard,
    frame: pd.DataFrame,
    batch_size: int,
    weights: np.ndarray | None = None,
    with_targets: bool = True,
    shuffle_seed: int | None = None,
) -> Any:
    """A batched ``tf.data.Dataset`` of the model's inputs (and targets, weights) for ``frame``."""
    import tensorflow as tf

    inputs = {name: tf.constant(values) for name, values in model_inputs(card, frame).items()}
    parts: tuple[Any, ...] = (inputs,)
    if with_targets:
        parts += (targets(card, frame["label"]),)
        if weights is not None:
            parts += (weights.astype(np.float32),)
    data = tf.data.Dataset.from_tensor_slices(parts if len(parts) > 1 else inputs)
    if shuffle_seed is not None:
        data = data.shuffle(len(frame), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def predict(model: Any, card: ModelCard, frame: pd.DataFrame, batch_size: int = 4096) -> np.ndarray:
    """The model's outputs on ``frame``: ``(n, classes)`` probabilities or ``(n, 1)`` values."""
    if len(frame) == 0:
        return np.zeros((0, max(len(card.classes), 1)), dtype=np.float32)
    outputs = model.predict(dataset(card, frame, batch_size, with_targets=False), verbose=0)
    return np.asarray(outputs, dtype=np.float32)


def fit(
    model: Any,
    card: ModelCard,
    window: TrainingWindow,
    config: FitConfig,
    stop: threading.Event | None = None,
) -> FitReport:
    """Train ``model`` on ``window.train`` until the validation loss stops improving.

    Raises :class:`FitInterrupted` when ``stop`` is set during the fit.
    """
    import keras

    device()
    keras.utils.set_random_seed(config.seed)
    batch_size = config.batch_size_for(len(window.train))
    train = dataset(card, window.train, batch_size, window.weights, shuffle_seed=config.seed)
    validation = dataset(card, window.validation, batch_size)
    early = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.patience, restore_best_weights=True
    )
    bound = TimeBound(config.max_seconds, stop)
    callbacks = [early, bound]
    if config.plateau_patience:
        slower = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.plateau_factor, patience=config.plateau_patience
        )
        callbacks.append(slower)
    started = time.perf_counter()
    history = model.fit(
        train,
        validation_data=validation,
        epochs=config.max_epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset reshuffles itself, seeded, each epoch
        verbose=0,
    )
    seconds = time.perf_counter() - started
    if bound.reason == "interrupted":
        raise FitInterrupted("the trainer is stopping; the fit was abandoned")
    losses = [float(v) for v in history.history.get("val_loss", [np.nan])]
    epochs = len(history.history.get("loss", []))
    best = int(np.nanargmin(losses)) if np.any(np.isfinite(losses)) else epochs - 1
    # EarlyStopping restores the best epoch's weights at the end of training, however it ended.
    if bound.reason is not None:
        stopped_by = bound.reason
    else:
        stopped_by = "early_stopping" if early.stopped_epoch > 0 else "max_epochs"
    return FitReport(
        epochs=epochs,
        best_epoch=best + 1,
        stopped_by=stopped_by,
        seconds=seconds,
        examples=len(window.train),
        best_val_loss=losses[best] if losses else float("nan"),
    )
