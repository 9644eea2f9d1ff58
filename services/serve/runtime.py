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
from driftloop.services.serve.protocol import PACKED, layout

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
        packed: whether ``call`` takes :func:`pack`-ed inputs (numeric features in one array).
        blob: the TFLite model, when that path was chosen (what a loader process hands back).
        expected: the eager call's outputs on the probe batches (one row, the max batch).
    """

    path: str
    call: Callable[[Arrays], np.ndarray]
    timings_ms: dict[str, Any] = field(default_factory=dict)
    packed: bool = False
    blob: bytes | None = None
    expected: tuple[np.ndarray, np.ndarray] | None = None  # eager outputs on the probes

    def predict(self, inputs: Arrays) -> np.ndarray:
        return self.call(inputs)


def _as_tensors(card: ModelCard) -> Callable[[Arrays], dict[str, Any]]:
    import tensorflow as tf

    categorical = set(layout(card).categorical)

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
    signature = {  # numeric and boolean features are float32, categorical ones strings
        spec.name: tf.TensorSpec(
            [None, 1], tf.string if spec.kind == "categorical" else tf.float32, name=spec.name
        )
        for spec in card.features
    }
    graph = tf.function(lambda inputs: model(inputs, training=False), input_signature=[signature])
    return {
        "predict": lambda: lambda x: np.asarray(model.predict(tensors(x), verbose=0)),
        "call": lambda: lambda x: np.asarray(model(tensors(x), training=False)),
        "function": lambda: lambda x: graph(tensors(x)).numpy(),
        "tflite": lambda: TFLiteCall(tflite_blob(model, card), card),
    }


def pack(inputs: Arrays, card: ModelCard) -> Arrays:
    """Per-feature inputs as a packed model takes them: the numeric and boolean features side
    by side in one ``(rows, numeric features)`` float32 array under :data:`PACKED`, categorical
    ones as they are."""
    features = layout(card)
    numeric = features.numeric
    packed = {name: inputs[name] for name in features.categorical}
    if numeric:
        columns = [np.asarray(inputs[name], dtype=np.float32).reshape(-1, 1) for name in numeric]
        packed[PACKED] = np.ascontiguousarray(np.concatenate(columns, axis=1))
    return packed


def tflite_blob(model: Any, card: ModelCard) -> bytes:
    """The model converted to TFLite, its numeric features packed into one input.

    One input tensor for all numeric features makes a call one ``set_tensor`` instead of one
    per feature (each costs the request a microsecond or two of Python). A model that does not
    convert packed is converted as it is (one input per feature).
    """
    import keras
    import tensorflow as tf

    def convert(keras_model: Any) -> bytes:
        try:
            return bytes(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())
        except Exception:  # string lookups need TF's own ops inside the TFLite graph
            converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS,
                tf.lite.OpsSet.SELECT_TF_OPS,
            ]
            return bytes(converter.convert())

    numeric = layout(card).numeric  # boolean features too: float32 inputs
    if numeric and PACKED not in card.feature_names:
        try:
            packed = keras.Input(shape=(len(numeric),), name=PACKED, dtype="float32")
            inputs = {PACKED: packed} | {
                name: keras.Input(shape=(1,), name=name, dtype="string")
                for name in layout(card).categorical
            }
            features = {name: packed[:, i : i + 1] for i, name in enumerate(numeric)}
            features |= {name: tensor for name, tensor in inputs.items() if name != PACKED}
            # a lone input as itself: Keras warns about a dict of one
            given = inputs if len(inputs) > 1 else packed
            return convert(keras.Model(given, model(features, training=False)))
        except Exception as error:
            log.info("the model does not convert packed", extra={"error": str(error)[:200]})
    return convert(model)


class TFLiteCall:
    """A TFLite model's call: the interpreter directly, one thread, reallocated only when the
    batch size changes (the signature runner resizes and reallocates every input on every
    call). Takes :func:`pack`-ed inputs when the model was converted packed.

    Parameters:
        blob: the converted model (:func:`tflite_blob`).
        card: its features.
    """

    def __init__(self, blob: bytes, card: ModelCard) -> None:
        import tensorflow as tf

        self.blob = blob
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            interpreter = tf.lite.Interpreter(model_content=blob, num_threads=1)
        runner = interpreter.get_signature_runner()
        self.indices = {name: d["index"] for name, d in runner.get_input_details().items()}
        (output,) = runner.get_output_details().values()
        self.output = output["index"]
        self.packed = PACKED in self.indices
        self.categorical = set(layout(card).categorical)
        self.interpreter = interpreter
        self._rows = -1

    def __call__(self, inputs: Arrays) -> np.ndarray:
        rows = len(next(iter(inputs.values())))
        # The wrapped interpreter, without the wrapper's checks. Those refuse to resize while
        # anything else holds the wrapped interpreter (counted by reference), to protect numpy
        # views of its tensors; this class makes none (SetTensor and GetTensor copy), and the
        # count failed a load now and then (a suite run in five) on references of no view.
        raw = self.interpreter._interpreter
        if rows != self._rows:
            for name, index in self.indices.items():
                width = inputs[name].shape[1] if name == PACKED else 1
                raw.ResizeInputTensor(index, np.array([rows, width], dtype=np.int32), False)
            raw.AllocateTensors()
            self._rows = rows
        for name, index in self.indices.items():
            array = inputs[name]
            raw.SetTensor(index, array.astype(np.bytes_) if name in self.categorical else array)
        raw.Invoke()
        return raw.GetTensor(self.output)


def probe_inputs(card: ModelCard, rows: int) -> Arrays:
    """A batch the card accepts, for warm-up and for comparing paths: varied, deterministic."""
    rng = np.random.default_rng(0)
    arrays: Arrays = {}
    for spec in card.features:
        if spec.kind == "numeric":
            arrays[spec.name] = rng.normal(0, 1, (rows, 1)).astype(np.float32)
        elif spec.kind == "boolean":  # as FeatureBatch.arrays feeds it: 1.0 or 0.0
            arrays[spec.name] = (np.arange(rows) % 2).astype(np.float32).reshape(-1, 1)
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
    times: list[float] = []
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
    built: dict[str, Any] = {}
    for name in candidates:
        try:
            call = built[name] = paths[name]()
            if getattr(built[name], "packed", False):
                call = _packing(built[name], card)
            agree = np.allclose(call(small), expected_small, atol=TOLERANCE)
            # a path far slower than the best so far is not called on the large batch at all
            slower = chosen is not None and _once_ms(call, small) > SLOWER * chosen[0]
            agree = agree and (slower or np.allclose(call(large), expected_large, atol=TOLERANCE))
        except Exception as error:  # a path that cannot be built is just not a candidate
            timings[name] = f"unavailable: {type(error).__name__}: {str(error)[:200]}"
            continue
        if not agree:
            timings[name] = "outputs differ from the eager call"
            continue
        if slower and chosen is not None:
            timings[name] = f"over {SLOWER}x slower than {chosen[1]}: not timed further"
            continue
        one, batch = _median_ms(call, small), _median_ms(call, large)
        timings[name] = {"1": round(one, 4), str(max_batch_size): round(batch, 4)}
        if chosen is None or one + batch < chosen[0]:
            chosen = (one + batch, name, call)
    if chosen is None:
        raise ModelLoadFailed(f"no call path gives the model's outputs: {timings}")
    raw = built[chosen[1]]
    packed = bool(getattr(raw, "packed", False))
    return ModelRuntime(
        chosen[1],
        raw if packed else chosen[2],
        timings,
        packed,
        getattr(raw, "blob", None),
        (expected_small, expected_large),
    )


def _packing(call: Callable[[Arrays], np.ndarray], card: ModelCard) -> Callable[[Arrays], Any]:
    return lambda inputs: call(pack(inputs, card))


def tflite_runtime(
    blob: bytes, card: ModelCard, max_batch_size: int, expected: tuple[np.ndarray, np.ndarray]
) -> ModelRuntime:
    """The TFLite path from a blob converted elsewhere, checked against the eager call's
    ``expected`` outputs on the probe batches of one row and of ``max_batch_size`` rows.

    Raises :class:`ModelLoadFailed` when its outputs differ or do not fit the card.
    """
    call = TFLiteCall(blob, card)
    probe = _packing(call, card) if call.packed else call
    for rows, wanted in zip((1, max(max_batch_size, 2)), expected, strict=True):
        outputs = probe(probe_inputs(card, rows))
        check_outputs(card, outputs, rows)
        if not np.allclose(outputs, wanted, atol=TOLERANCE):
            raise ModelLoadFailed("the converted model's outputs differ from the eager call's")
    return ModelRuntime("tflite", call, {}, call.packed, blob)
