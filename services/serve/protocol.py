"""The wire formats serve speaks, checked against the model's card: pure, no I/O.

Two request shapes decode into one :class:`FeatureBatch` (one column per feature):

- the Open Inference Protocol v2 (``POST /v2/models/{name}/infer``): one named tensor per
  feature, ``shape`` ``[n]`` or ``[n, 1]``, ``datatype`` one of the protocol's (FP32, FP64,
  INT8..INT64, UINT8..UINT64, BOOL, BYTES), ``data`` flat or nested row-major;
- plain records (``POST /v1/predict``): one object keyed by feature name, a list of them, or
  ``{"records": [...], "request_id": "..."}``.

Anything that does not fit the card raises :class:`~driftloop.errors.InvalidInput` naming the
field: a missing or extra feature, a wrong type or datatype, NaN or infinity, a shape that does
not match the data, an empty batch. A ``(batch, k)`` array of model outputs encodes back into
the protocol's response, the records' response and one prediction event per row.

Example:
    >>> from driftloop.model_card import FeatureSpec, ModelCard
    >>> card = ModelCard(task="classification", classes=[0, 1],
    ...                  features=[FeatureSpec(name="age"),
    ...                            FeatureSpec(name="region", kind="categorical")])
    >>> batch, request_id = decode_records({"age": 31, "region": "north"}, card)
    >>> batch.rows, batch.columns["age"], request_id
    (1, [31], None)
    >>> decode_records({"age": "old", "region": "north"}, card)
    Traceback (most recent call last):
    ...
    driftloop.errors.InvalidInput: age is numeric: got the string 'old'
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.errors import InvalidInput, MalformedRequest
from driftloop.events import SCHEMA_VERSION, Scalar
from driftloop.model_card import ModelCard

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64"})
UINT_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64"})
DATATYPES = FLOAT_TYPES | INT_TYPES | UINT_TYPES | {"BOOL", "BYTES"}
NUMERIC_TYPES = FLOAT_TYPES | INT_TYPES | UINT_TYPES | {"BOOL"}

PACKED = "packed_numeric_features"  # a packed model's one input for all numeric features

# Keys of a single-record body that name the request rather than a feature.
ID_KEYS = ("request_id", "id")


class FeatureLayout:
    """What checking and converting a card's features needs, worked out once per card.

    Parameters:
        card: the model card.
    """

    __slots__ = ("card", "categorical", "kinds", "names", "numeric")

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.names = [spec.name for spec in card.features]
        self.kinds = {spec.name: spec.kind == "categorical" for spec in card.features}
        self.numeric = [name for name, categorical in self.kinds.items() if not categorical]
        self.categorical = [name for name, categorical in self.kinds.items() if categorical]


_LAYOUTS: dict[int, FeatureLayout] = {}


def layout(card: ModelCard) -> FeatureLayout:
    """The card's :class:`FeatureLayout` (cached: cards are made once per loaded version)."""
    found = _LAYOUTS.get(id(card))
    if found is None or found.card is not card:
        if len(_LAYOUTS) > 64:  # versions come and go; their layouts need not stay
            _LAYOUTS.clear()
        found = _LAYOUTS[id(card)] = FeatureLayout(card)
    return found


@dataclass(slots=True)
class FeatureBatch:
    """Validated feature values, all ``rows`` long: as records, or one list per feature.

    Parameters:
        rows: how many rows.
        records: the rows as ``{feature: value}`` (what plain records decode to; what the
            prediction log carries).
        by_feature: feature name -> values (what OIP tensors decode to).
        numeric: the numeric features' values as a ``(rows, numeric features)`` float32
            table, in the card's order, when the decoder made one.
    """

    rows: int
    records: list[dict[str, Scalar]] | None = None
    by_feature: dict[str, list[Any]] | None = None
    numeric: np.ndarray | None = None

    @property
    def columns(self) -> dict[str, list[Any]]:
        """Feature name -> values (floats/ints for numeric, strings for categorical)."""
        if self.by_feature is None:
            records = self.records or []
            self.by_feature = {name: [r[name] for r in records] for name in records[0]}
        return self.by_feature

    def row_features(self) -> list[dict[str, Scalar]]:
        """One ``{feature: value}`` per row, as prediction events carry them."""
        if self.records is None:
            names = list(self.columns)
            self.records = [
                dict(zip(names, values, strict=True))
                for values in zip(*self.columns.values(), strict=True)
            ]
        return self.records

    def arrays(self, card: ModelCard, packed: bool = False) -> dict[str, np.ndarray]:
        """The model's inputs: a ``(rows, 1)`` float32 or object (str) array per feature.

        ``packed``: the numeric features side by side instead, one ``(rows, numeric
        features)`` float32 array under :data:`~services.serve.runtime.PACKED` (what a packed
        TFLite model takes: see :func:`services.serve.runtime.pack`).
        """
        features = layout(card)
        arrays: dict[str, np.ndarray] = {}
        if packed:
            if not features.numeric:
                pass  # categorical only: nothing to pack
            elif self.numeric is not None:
                arrays[PACKED] = self.numeric  # (rows, n) float32, C order
            elif self.by_feature is None and self.records is not None:
                arrays[PACKED] = np.array(
                    [[r[name] for name in features.numeric] for r in self.records],
                    dtype=np.float32,
                )
            else:
                columns = [self.columns[n] for n in features.numeric]
                arrays[PACKED] = np.array(columns, dtype=np.float32).T.copy()
            for name in features.categorical:
                column = [r[name] for r in self.records] if self.by_feature is None else None
                values = column if column is not None else self.columns[name]
                arrays[name] = np.array(values, dtype=object).reshape(-1, 1)
            return arrays
        if features.numeric:
            # one conversion for every numeric value, into a (features, rows, 1) table whose
            # slices are each feature's column, contiguous, as the interpreter wants it
            if self.numeric is not None:
                table = np.ascontiguousarray(self.numeric.T, dtype=np.float32)
            elif self.by_feature is None and self.records is not None:
                table = np.array(
                    [[r[name] for name in features.numeric] for r in self.records],
                    dtype=np.float32,
                ).T
                table = np.ascontiguousarray(table) if self.rows > 1 else table
            else:
                table = np.array([self.columns[n] for n in features.numeric], dtype=np.float32)
            arrays = dict(zip(features.numeric, table[:, :, None], strict=True))
            if not features.categorical:
                return arrays
        for name in features.categorical:
            values = [r[name] for r in self.records] if self.by_feature is None else None
            column = values if values is not None else self.columns[name]
            arrays[name] = np.array(column, dtype=object).reshape(-1, 1)
        return {name: arrays[name] for name in features.names}


# --- decoding -------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    return repr(value)


def _check_number(field: str, value: Any) -> None:
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise InvalidInput(field, f"{field} must be a finite number: got {value}")
    elif kind is not int:
        raise InvalidInput(field, f"{field} is numeric: got {_describe(value)}")
    elif abs(value) > 1 << 1000:  # past any float: it cannot reach the model as a number
        raise InvalidInput(field, f"{field} is too large a number")


def _check_value(field: str, value: Any, categorical: bool) -> None:
    if categorical:
        if type(value) is not str:
            raise InvalidInput(
                field, f"{field} is categorical: send a string, got {_describe(value)}"
            )
    else:
        _check_number(field, value)


def _unknown(field: str, name: str, card: ModelCard) -> InvalidInput:
    return InvalidInput(
        field,
        f"{field}: `{name}` is not a feature of this model; its features are "
        f"{', '.join(card.feature_names)}",
    )


def _missing(field: str, name: str) -> InvalidInput:
    return InvalidInput(field, f"{field}: the feature `{name}` is missing")


def _request_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise InvalidInput(field, f"{field} must be a string of 1 to 200 characters")
    return value


def decode_records(document: Any, card: ModelCard) -> tuple[FeatureBatch, str | None]:
    """Check plain records against ``card``; returns the batch and the body's request id."""
    features = layout(card)
    kinds = features.kinds
    # The commonest body, one record of numeric features and nothing else, checked first.
    if type(document) is dict and not features.categorical and document.keys() == kinds.keys():
        table = _finite_numbers([document[name] for name in features.numeric])
        if table is not None:
            return FeatureBatch(1, [document], numeric=table.reshape(1, -1)), None
    request_id = None
    single = False
    if isinstance(document, dict) and isinstance(document.get("records"), list):
        records = document["records"]
        request_id = _request_id(document.get("request_id", document.get("id")), "request_id")
    elif isinstance(document, dict):
        single = True
        record = document
        for key in ID_KEYS:
            if key in record and key not in kinds:
                record = {k: v for k, v in record.items() if k != key}
                request_id = _request_id(document[key], key)
                break
        records = [record]
    elif isinstance(document, list):
        records = document
    else:
        raise MalformedRequest(
            "the body must be a record (an object keyed by feature name), a list of records, "
            'or {"records": [...]}'
        )
    if not records:
        raise InvalidInput("records", "records: empty batch; send at least one record")
    names = kinds.keys()
    for index, record in enumerate(records):
        if not isinstance(record, dict) or record.keys() != names:
            _record_problem(record, index, single, kinds, card)
    # The common case, all valid, checked in bulk (type sets, one array); the row-by-row
    # check below runs only to name the field when the bulk check fails.
    table = None
    if features.numeric:
        values = [record[name] for record in records for name in features.numeric]
        table = _finite_numbers(values)
    if (features.numeric and table is None) or (
        features.categorical
        and not {type(record[name]) for record in records for name in features.categorical} <= {str}
    ):
        _value_problem(records, single, kinds)
    if table is not None:
        table = table.reshape(len(records), len(features.numeric))
    return FeatureBatch(len(records), records, numeric=table), request_id


NUMBER_TYPES = frozenset({int, float})


def _finite_numbers(values: list[Any]) -> np.ndarray | None:
    """``values`` as float32 (what the model takes) when each is a finite int or float (not a
    bool); else None."""
    if not set(map(type, values)) <= NUMBER_TYPES:
        return None
    try:
        total = sum(values)  # NaN or infinity anywhere makes the sum NaN or infinite
        if total - total != 0:  # (or finite values overflowed: the row-by-row check decides)
            return None
        return np.array(values, dtype=np.float32)
    except OverflowError:  # an int past float64: the row-by-row check decides
        return None


def _value_problem(records: list[dict[str, Any]], single: bool, kinds: dict[str, bool]) -> None:
    """Raise :class:`InvalidInput` naming the first value that does not fit its feature."""
    for index, record in enumerate(records):
        for name, categorical in kinds.items():
            value = record[name]
            _check_value(f"{'' if single else f'records[{index}].'}{name}", value, categorical)


def _record_problem(
    record: Any, index: int, single: bool, kinds: dict[str, bool], card: ModelCard
) -> None:
    prefix = "" if single else f"records[{index}]."
    if not isinstance(record, dict):
        raise InvalidInput(
            f"records[{index}]", f"records[{index}] is not an object keyed by feature name"
        )
    for name in record:
        if name not in kinds:
            raise _unknown(f"{prefix}{name}", name, card)
    for name in kinds:
        if name not in record:
            raise _missing(f"{prefix}{name}", name)


def _flatten(field: str, data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidInput(field, f"{field}.data must be a list")
    if data and isinstance(data[0], list):
        flat = []
        for row in data:
            if not isinstance(row, list):
                raise InvalidInput(field, f"{field}.data mixes lists and values")
            flat.extend(row)
        return flat
    return data


def _check_tensor_values(field: str, datatype: str, data: list[Any]) -> None:
    if datatype in FLOAT_TYPES:
        for value in data:
            _check_number(field, value)
    elif datatype in INT_TYPES or datatype in UINT_TYPES:
        for value in data:
            if type(value) is not int:
                raise InvalidInput(field, f"{field} is {datatype}: got {_describe(value)}")
            if value < 0 and datatype in UINT_TYPES:
                raise InvalidInput(field, f"{field} is {datatype}: got {value}")
    elif datatype == "BOOL":
        for value in data:
            if type(value) is not bool:
                raise InvalidInput(field, f"{field} is BOOL: got {_describe(value)}")
    else:
        for value in data:
            if type(value) is not str:
                raise InvalidInput(field, f"{field} is BYTES: got {_describe(value)}")


def _rows_of(field: str, shape: Any, size: int) -> int:
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 2
        or any(type(dim) is not int or dim < 0 for dim in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise InvalidInput(
            field,
            f"{field}.shape must be [rows] or [rows, 1] (one feature per tensor), got {shape}",
        )
    if shape[0] != size:
        raise InvalidInput(field, f"{field}.shape {shape} does not match its {size} values")
    if size == 0:
        raise InvalidInput(field, f"{field}: empty batch; send at least one row")
    return size


def decode_infer(document: Any, card: ModelCard) -> tuple[FeatureBatch, str | None]:
    """Check an OIP v2 inference request against ``card``; returns the batch and its ``id``."""
    if not isinstance(document, dict):
        raise MalformedRequest("the body must be an inference request object with `inputs`")
    tensors = document.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput(
            "inputs", "inputs must be a non-empty list of named tensors, one per feature"
        )
    kinds = layout(card).kinds
    columns: dict[str, list[Any]] = {}
    rows = -1
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidInput(
                f"inputs[{index}]", f"inputs[{index}] must be a tensor object with a `name`"
            )
        name = tensor["name"]
        field = f"inputs.{name}"
        if name not in kinds:
            raise _unknown(field, name, card)
        if name in columns:
            raise InvalidInput(field, f"{field} is given twice")
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInput(
                field,
                f"{field}.datatype must be one of "
                f"{', '.join(sorted(DATATYPES))}; got {_describe(datatype)}",
            )
        if kinds[name] and datatype != "BYTES":
            raise InvalidInput(
                field, f"{field} is categorical: its datatype is BYTES, not {datatype}"
            )
        if not kinds[name] and datatype not in NUMERIC_TYPES:
            raise InvalidInput(
                field,
                f"{field} is numeric: its datatype is FP32, FP64, INT* or BOOL, not {datatype}",
            )
        data = _flatten(field, tensor.get("data"))
        size = _rows_of(field, tensor.get("shape"), len(data))
        if rows >= 0 and size != rows:
            raise InvalidInput(field, f"{field} has {size} rows, other inputs have {rows}")
        rows = size
        _check_tensor_values(field, datatype, data)
        columns[name] = [float(v) for v in data] if datatype == "BOOL" else data
    for name in kinds:
        if name not in columns:
            raise _missing(f"inputs.{name}", name)
    request_id = _request_id(document.get("id"), "id")
    return FeatureBatch(rows, None, {name: columns[name] for name in kinds}), request_id


def requested_outputs(document: dict[str, Any], available: tuple[str, ...]) -> set[str]:
    """The output names an OIP request asks for (all when it names none)."""
    wanted = document.get("outputs")
    if not wanted:
        return set(available)
    names = set()
    for index, output in enumerate(wanted if isinstance(wanted, list) else [None]):
        name = output.get("name") if isinstance(output, dict) else None
        if name not in available:
            raise InvalidInput(
                f"outputs[{index}]",
                f"outputs[{index}]: this model's outputs are {', '.join(available)}",
            )
        names.add(name)
    return names


# --- encoding -------------------------------------------------------------------------------


_ID_PREFIX = os.urandom(8).hex()  # this process's, random: ids differ across replicas
_ID_COUNT = itertools.count()


def new_request_id() -> str:
    """A new id, 32 hex digits: this process's random prefix and a count (unique without a
    system call per request, which a random id costs)."""
    return f"{_ID_PREFIX}{next(_ID_COUNT):016x}"


def row_ids(request_id: str, rows: int) -> list[str]:
    """The id each row's prediction is logged under: the request's own for one row,
    ``<request_id>-<i>`` for a batch; a later label refers to it."""
    if rows == 1:
        return [request_id]
    return [f"{request_id}-{index}" for index in range(rows)]


@dataclass(slots=True)
class Predictions:
    """A batch's outputs, decoded: a label or value per row, and class scores per row.

    Parameters:
        values: the predicted class (classification) or value (regression), per row.
        scores: ``(rows, classes)`` probabilities, or None for regression.
        classes: the class of each score column.
    """

    values: list[Scalar]
    scores: np.ndarray | None
    classes: list[Scalar]
    by_class: list[dict[str, float]] | None = None  # scores_by_class, once computed

    @classmethod
    def decode(cls, card: ModelCard, outputs: np.ndarray) -> Predictions:
        if card.task == "regression":
            return cls(outputs[:, 0].astype(float).tolist(), None, [])
        classes = card.classes
        if len(outputs) <= 8:  # a few rows: Python on the lists beats numpy's per-call cost
            rows = outputs.tolist()
            predictions = cls([classes[row.index(max(row))] for row in rows], outputs, classes)
            predictions.by_class = _by_class(classes, rows)
            return predictions
        picked = outputs.argmax(axis=1).tolist()
        return cls([classes[i] for i in picked], outputs, classes)

    def scores_by_class(self) -> list[dict[str, float]] | None:
        """``{class: score}`` per row (computed once: the response and the log share it)."""
        if self.scores is None:
            return None
        if self.by_class is None:
            self.by_class = _by_class(self.classes, self.scores.tolist())
        return self.by_class


def _by_class(classes: list[Scalar], rows: list[list[float]]) -> list[dict[str, float]]:
    keys = [str(c) for c in classes]
    return [dict(zip(keys, row, strict=False)) for row in rows]


def label_datatype(classes: list[Scalar]) -> str:
    """The OIP datatype of a classifier's labels."""
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        return "FP64"
    return "BYTES"


OUTPUTS = ("predict", "scores")


def infer_response(
    name: str,
    version: str,
    request_id: str,
    ids: list[str],
    predictions: Predictions,
    outputs: set[str] | None = None,
) -> dict[str, Any]:
    """An OIP v2 inference response: ``predict`` (labels or values) and ``scores``."""
    rows = len(predictions.values)
    tensors = []
    if outputs is None or "predict" in outputs:
        datatype = "FP64" if predictions.scores is None else label_datatype(predictions.classes)
        tensors.append(
            {"name": "predict", "datatype": datatype, "shape": [rows], "data": predictions.values}
        )
    if predictions.scores is not None and (outputs is None or "scores" in outputs):
        tensors.append(
            {
                "name": "scores",
                "datatype": "FP32",
                "shape": [rows, len(predictions.classes)],
                "data": predictions.scores.ravel().tolist(),
                "parameters": {"classes": predictions.classes},
            }
        )
    return {
        "model_name": name,
        "model_version": version,
        "id": request_id,
        "parameters": {"request_ids": ids},
        "outputs": tensors,
    }


def records_response(
    name: str, version: str, request_id: str, ids: list[str], predictions: Predictions
) -> dict[str, Any]:
    """The plain endpoint's response: one ``{request_id, prediction[, scores]}`` per record."""
    scores = predictions.scores_by_class()
    if scores is None:
        rows = [
            {"request_id": i, "prediction": v} for i, v in zip(ids, predictions.values, strict=True)
        ]
    else:
        rows = [
            {"request_id": i, "prediction": v, "scores": s}
            for i, v, s in zip(ids, predictions.values, scores, strict=True)
        ]
    return {
        "model_name": name,
        "model_version": version,
        "request_id": request_id,
        "predictions": rows,
    }


# What a request leaves for the prediction log: the event's fields without its ``event_id``
# and without the dict around them. The request builds this tuple (cheap); the outbox turns it
# into the event (:func:`prediction_event`) in its own time, in batches.
PredictionRow = tuple[float, str, str, str, dict[str, Scalar], Scalar, float, Any]


def prediction_rows(
    name: str,
    version: str,
    ids: list[str],
    batch: FeatureBatch,
    predictions: Predictions,
    latency_ms: float,
) -> list[PredictionRow]:
    """One :data:`PredictionRow` per row of the batch, for :func:`prediction_event`."""
    event_time = time.time()  # formatted by prediction_event, off the request's path
    scores = predictions.scores_by_class()
    return [
        (event_time, ids[index], name, version, features, value, latency_ms, score)
        for index, (features, value, score) in enumerate(
            zip(
                batch.row_features(),
                predictions.values,
                scores if scores is not None else (None,) * batch.rows,
                strict=True,
            )
        )
    ]


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _event_time(seconds: float) -> str:
    """``seconds`` since the epoch as :func:`driftloop.events.now` writes times (RFC 3339,
    microseconds, UTC), with the part down to the second formatted once a second."""
    whole = int(seconds)
    return f"{_second(whole)}.{int((seconds - whole) * 1e6):06d}Z"


def prediction_event(row: PredictionRow) -> dict[str, Any]:
    """The prediction event (schemas/prediction.schema.json) of one row, with a new event id."""
    seconds, request_id, name, version, features, value, latency_ms, scores = row
    event = {
        "schema_version": SCHEMA_VERSION,
        "event_id": os.urandom(16).hex(),
        "event_time": _event_time(seconds),
        "request_id": request_id,
        "model_name": name,
        "model_version": version,
        "features": features,
        "prediction": value,
        "latency_ms": latency_ms,
    }
    if scores is not None:
        event["scores"] = scores
    return event


def model_metadata(name: str, version: str, card: ModelCard) -> dict[str, Any]:
    """The OIP model metadata response for the version being served."""
    inputs = [
        {
            "name": spec.name,
            "datatype": "FP32" if spec.kind == "numeric" else "BYTES",
            "shape": [-1, 1],
        }
        for spec in card.features
    ]
    if card.task == "regression":
        outputs = [{"name": "predict", "datatype": "FP64", "shape": [-1]}]
    else:
        outputs = [
            {"name": "predict", "datatype": label_datatype(card.classes), "shape": [-1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, len(card.classes)]},
        ]
    return {
        "name": name,
        "versions": [version],
        "platform": "tensorflow",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"task": card.task, "classes": card.classes, "target": card.target},
    }
