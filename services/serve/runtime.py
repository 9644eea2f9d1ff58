"""A Keras model behind its fastest call path, chosen by measuring when the model loads.

The same model answers through very different amounts of machinery: ``model.predict`` builds
a dataset and a loop for every call (tens of milliseconds), an eager ``model(x)`` runs op by
op (milliseconds), a ``tf.function`` with a fixed input signature runs one traced graph
(a fraction of a millisecond), and a TFLite conversion of that graph runs in microseconds.
Not every model converts (string inputs through ``StringLookup`` need TF ops TFLite lacks, or
convert but give different numbers), so :func:`compile_model` builds each path, checks its
outputs against the eager call's on the same probe batch, and keeps the fastest that agrees.

Example:
    >>> runtime = compile_model(keras_model, card, max_batch_size=64)  # doctest: +SKIP
    >>> runtime.path, runtime.predict(batch.arrays(card)).shape  # doctest: +SKIP
    ('tflite', (1, 2))
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftloop.errors import ModelLoadFailed
from driftloop.model_card import ModelCard

log = logging.getLogger(__name__)

PATHS = ("tflite", "function", "call", "predict")
# float32 outputs of the same graph through different kernels (XNNPACK, oneDNN) differ in
# the last bits; a path that disagrees by more than this computes something else.
TOLERANCE = 1e-4
MEASURE_S = 0.2  # per path and batch size
SLOWER = 20  # a path this many times slower than the best so far on one call is not timed

Arrays = dict[str, np.ndarray]


@dataclass
class ModelRuntime:
    """A model's chosen call path: :meth:`predict` maps input arrays to a ``(rows, k)`` array.

    Parameters:
        path: which path was chosen (``tflite``, ``function``, ``call`` or ``predict``).
        call: the path itself.
        timings_ms: what each path measured (median ms at one row and at the max batch),
            or why it was left out.
    """

    path: str
    call: Callable[[Arrays], np.ndarray]
    timings_ms: dict[str, Any] = field(default_factory=dict)

    def predict(self, inputs: Arrays) -> np.ndarray:
        return self.call(inputs)


def _as_tensors(card: ModelCard) -> Callable[[Arrays], dict[str, Any]]:
    import tensorflow as tf

    categorical = {spec.name for spec in card.features if spec.kind == "categorical"}

    def convert(inputs: Arrays) -> dict[str, Any]:
        return {
            name: tf.constant(
                array.tolist() if name in categorical else array,
                dtype=tf.string if name in categorical else tf.float32,
            )
            for name, array in inputs.items()
        }

    return convert


def _keras_paths(
    model: Any, card: ModelCard
) -> dict[str, Callable[[], Callable[[Arrays], np.ndarray]]]:
    """Each path's builder (TFLite conversion takes a while and may fail: built on demand)."""
    import tensorflow as tf

    tensors = _as_tensors(card)
    signature = {
        spec.name: tf.TensorSpec(
            [None, 1], tf.float32 if spec.kind == "numeric" else tf.string, name=spec.name
        )
        for spec in card.features
    }
    graph = tf.function(lambda inputs: model(inputs, training=False), input_signature=[signature])
    return {
        "predict": lambda: lambda x: np.asarray(model.predict(tensors(x), verbose=0)),
        "call": lambda: lambda x: np.asarray(model(tensors(x), training=False)),
        "function": lambda: lambda x: graph(tensors(x)).numpy(),
        "tflite": lambda: _tflite(model, card),
    }


def _tflite(model: Any, card: ModelCard) -> Callable[[Arrays], np.ndarray]:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    try:
        blob = converter.convert()
    except Exception:  # string lookups need TF's own ops inside the TFLite graph
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]
        blob = converter.convert()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_content=blob, num_threads=1)
    runner = interpreter.get_signature_runner()
    indices = {name: detail["index"] for name, detail in runner.get_input_details().items()}
    (output,) = runner.get_output_details().values()
    categorical = {spec.name for spec in card.features if spec.kind == "categorical"}
    allocated_rows = -1

    # The interpreter directly rather than the signature runner, which resizes and
    # reallocates every input on every call: here only when the batch size changes.
    def call(inputs: Arrays) -> np.ndarray:
        nonlocal allocated_rows
        rows = len(next(iter(inputs.values())))
        if rows != allocated_rows:
            for index in indices.values():
                interpreter.resize_tensor_input(index, [rows, 1], strict=False)
            interpreter.allocate_tensors()
            allocated_rows = rows
        for name, index in indices.items():
            array = inputs[name]
            interpreter.set_tensor(index, array.astype(np.bytes_) if name in categorical else array)
        interpreter.invoke()
        return interpreter.get_tensor(output["index"])

    return call


def probe_inputs(card: ModelCard, rows: int) -> Arrays:
    """A batch the card accepts, for warm-up and for comparing paths: varied, deterministic."""
    rng = np.random.default_rng(0)
    arrays: Arrays = {}
    for spec in card.features:
        if spec.kind == "numeric":
            arrays[spec.name] = rng.normal(0, 1, (rows, 1)).astype(np.float32)
        else:
            choices = [*spec.categories, "(unseen)"]
            picked = [choices[i % len(choices)] for i in range(rows)]
            arrays[spec.name] = np.array(picked, dtype=object).reshape(-1, 1)
    return arrays


def check_outputs(card: ModelCard, outputs: np.ndarray, rows: int) -> None:
    """Raise :class:`ModelLoadFailed` unless ``outputs`` fit the card: shape, finite values."""
    width = len(card.classes) if card.task == "classification" else 1
    if outputs.shape != (rows, width):
        raise ModelLoadFailed(
            f"the model answers with shape {outputs.shape} where its card needs "
            f"({rows}, {width}) ({card.task})"
        )
    if not np.isfinite(outputs).all():
        raise ModelLoadFailed("the model answers NaN or infinity on the warm-up batch")


def _once_ms(call: Callable[[Arrays], np.ndarray], inputs: Arrays) -> float:
    start = time.perf_counter()
    call(inputs)
    return (time.perf_counter() - start) * 1e3


def _median_ms(call: Callable[[Arrays], np.ndarray], inputs: Arrays) -> float:
    times = []
    deadline = time.perf_counter() + MEASURE_S
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 200):
        start = time.perf_counter()
        call(inputs)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def compile_model(
    model: Any, card: ModelCard, max_batch_size: int, path: str = "auto"
) -> ModelRuntime:
    """Build, check, warm up and time the model's call paths; return the fastest that agrees.

    Parameters:
        model: a Keras model per the card's contract (see :mod:`driftloop.model_card`).
        card: its features and task.
        max_batch_size: the largest batch it will be called with (timed too).
        path: ``auto``, or one path to use without measuring (it is still checked).

    Raises :class:`ModelLoadFailed` when the eager call itself fails or answers outputs that
    do not fit the card (wrong shape, NaN): such a version must never serve.
    """
    paths = _keras_paths(model, card)
    small, large = probe_inputs(card, 1), probe_inputs(card, max(max_batch_size, 2))
    try:
        eager = paths["call"]()
        expected_small, expected_large = eager(small), eager(large)
    except Exception as error:
        raise ModelLoadFailed(f"the model fails on a warm-up batch: {error}") from error
    check_outputs(card, expected_small, 1)
    check_outputs(card, expected_large, len(next(iter(large.values()))))

    candidates = PATHS if path == "auto" else (path,)
    timings: dict[str, Any] = {}
    chosen: tuple[float, str, Callable[[Arrays], np.ndarray]] | None = None
    for name in candidates:
        try:
            call = paths[name]()
            agree = np.allclose(call(small), expected_small, atol=TOLERANCE) and np.allclose(
                call(large), expected_large, atol=TOLERANCE
            )
        except Exception as error:  # a path that cannot be built is just not a candidate
            timings[name] = f"unavailable: {type(error).__name__}: {str(error)[:200]}"
            continue
        if not agree:
            timings[name] = "outputs differ from the eager call"
            continue
        if chosen is not None and _once_ms(call, small) > SLOWER * chosen[0]:
            timings[name] = f"over {SLOWER}x slower than {chosen[1]}: not timed further"
            continue
        one, batch = _median_ms(call, small), _median_ms(call, large)
        timings[name] = {"1": round(one, 4), str(max_batch_size): round(batch, 4)}
        if chosen is None or one + batch < chosen[0]:
            chosen = (one + batch, name, call)
    if chosen is None:
        raise ModelLoadFailed(f"no call path gives the model's outputs: {timings}")
    return ModelRuntime(chosen[1], chosen[2], timings)
