"""The wire formats serve speaks, checked against the model's contract: pure, no I/O.

Two request shapes decode into one :class:`FeatureBatch` (one column per feature):

- the Open Inference Protocol v2 (``POST /v2/models/{name}/infer``): one named tensor per
  feature, ``shape`` ``[n]`` or ``[n, 1]``, ``datatype`` one of the protocol's (FP16..FP64,
  INT8..INT64, UINT8..UINT64, BOOL, BYTES), ``data`` flat or nested row-major;
- plain records (``POST /v1/predict``): one object keyed by feature name, a list of them, or
  ``{"records": [...], "request_id": "..."}``.

Every verdict on a value is the contract's (:class:`~driftloop.contract.ContractCheck`, the one
check every door runs: ingest's too): a missing, unknown or null feature, a value of the wrong
JSON type (``36.5`` for an ``int`` feature, ``true`` for a number, ``1`` for a boolean), NaN
or infinity. The common valid body is accepted in bulk (type sets, one array) without asking
it value by value; whatever the bulk test does not accept goes to the contract, row by row,
and is refused with :class:`~driftloop.errors.InvalidInput` naming the field as serve names it
(``age``, ``records[3].age``, ``inputs.age``) or, when the contract accepts it (a null, a
boolean, ``36.0`` for an ``int``), decoded all the same. What serve checks itself is only what
the contract cannot see: the body's shape, a tensor's shape and datatype. A ``(batch, k)``
array of model outputs encodes back into the protocol's response, the records' response and
one prediction event per row, whose features are the values as sent (``true`` stays a
boolean, ``null`` stays null).

Example:
    >>> from driftloop.model_card import FeatureSpec, ModelCard
    >>> card = ModelCard(task="classification", classes=[0, 1],
    ...                  features=[FeatureSpec(name="age", type="int"),
    ...                            FeatureSpec(name="region", kind="categorical"),
    ...                            FeatureSpec(name="verified", kind="boolean", nullable=True)])
    >>> batch, request_id = decode_records({"age": 31, "region": "north", "verified": True}, card)
    >>> batch.rows, batch.columns["verified"], request_id
    (1, [True], None)
    >>> batch.arrays(card)["verified"].tolist()
    [[1.0]]
    >>> decode_records([{"age": 31, "region": "north"}], card)[0].row_features()
    [{'age': 31, 'region': 'north', 'verified': None}]
    >>> decode_records({"age": 36.5, "region": "north", "verified": False}, card)
    Traceback (most recent call last):
    ...
    driftloop.errors.InvalidInput: age is an integer: got 36.5 (rule: feature_type)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.contract import ContractCheck, describe
from driftloop.errors import InvalidInput, MalformedRequest, SchemaViolation
from driftloop.events import SCHEMA_VERSION, Scalar, format_time
from driftloop.model_card import ModelCard

FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64"})
UINT_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64"})
DATATYPES = FLOAT_TYPES | INT_TYPES | UINT_TYPES | {"BOOL", "BYTES"}
NUMERIC_TYPES = FLOAT_TYPES | INT_TYPES | UINT_TYPES

# The OIP datatypes a feature of each contract type takes (a boolean is not a number).
FEATURE_DATATYPES: dict[str, frozenset[str]] = {
    "float": NUMERIC_TYPES,
    "int": NUMERIC_TYPES,
    "bool": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
}
# The metadata's datatype of a feature of each contract type.
METADATA_DATATYPES = {"float": "FP64", "int": "INT64", "bool": "BOOL", "string": "BYTES"}
_DATATYPE_WORDS = {
    "float": "FP16, FP32, FP64, INT* or UINT*",
    "int": "FP16, FP32, FP64, INT* or UINT*",
    "bool": "BOOL",
    "string": "BYTES",
}
_KIND_WORDS = {"float": "a number", "int": "an integer", "bool": "a boolean", "string": "a string"}

PACKED = "packed_numeric_features"  # a packed model's one input for all numeric features

# Keys of a single-record body that name the request rather than a feature.
ID_KEYS = ("request_id", "id")

NUMBER_TYPES = frozenset({int, float})
_INTS = frozenset({int})
_STRINGS = frozenset({str})
_BOOLS = frozenset({bool})
# The largest float32: a number past it reaches the model as infinity.
FLOAT32_MAX = float(np.finfo(np.float32).max)


# --- the bulk tests: True only when every value surely fits (the contract decides the rest) ---
#
# They test types; the numbers' magnitudes (finite, within float32, within int64) are tested
# on the way to the model's table (_number_table).


def _floats_fit(values: list[Any]) -> bool:
    return set(map(type, values)) <= NUMBER_TYPES  # not booleans


def _ints_fit(values: list[Any]) -> bool:
    return set(map(type, values)) <= _INTS  # not floats (36.0 is the contract's to accept)


def _strings_fit(values: list[Any]) -> bool:
    return set(map(type, values)) <= _STRINGS


def _bools_fit(values: list[Any]) -> bool:
    return set(map(type, values)) <= _BOOLS


_BULK_TESTS: dict[str, Callable[[list[Any]], bool]] = {
    "float": _floats_fit,
    "int": _ints_fit,
    "string": _strings_fit,
    "bool": _bools_fit,
}
# Past this many values, numpy tests their magnitudes faster than Python does.
_FEW = 32


def _number_table(values: list[Any], bound: float) -> np.ndarray | None:
    """Numbers and booleans (their types tested) as the model's float32 values; None unless
    each is surely within ``bound`` (NaN and infinities are not)."""
    if len(values) <= _FEW:
        try:
            if not sum(map(abs, values)) <= bound:
                return None
        except OverflowError:  # an int past any float
            return None
        return np.array(values, dtype=np.float32)
    try:
        table = np.array(values, dtype=np.float64)
    except OverflowError:
        return None
    if not np.abs(table).max() <= bound:
        return None
    return table.astype(np.float32)


class FeatureLayout:
    """What checking and converting a card's features needs, worked out once per card.

    Parameters:
        card: the model card (its contract).
    """

    __slots__ = (
        "bound",
        "card",
        "categorical",
        "check",
        "groups",
        "names",
        "nullable",
        "numeric",
        "plain",
        "plain_types",
        "types",
    )

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.check = ContractCheck(card)
        self.names = card.feature_names
        self.types = {spec.name: spec.type or "float" for spec in card.features}
        # The model's float32 inputs: numeric features, and boolean ones as 1.0/0.0.
        self.numeric = [spec.name for spec in card.features if spec.kind != "categorical"]
        self.categorical = [spec.name for spec in card.features if spec.kind == "categorical"]
        self.nullable = frozenset(spec.name for spec in card.features if spec.nullable)
        by_type: dict[str, list[str]] = {}
        for name, value_type in self.types.items():
            by_type.setdefault(value_type, []).append(name)
        # (names, bulk test) per JSON type; a group of every numeric input, in the card's
        # order, *is* `numeric`, so its values make the model's table as they are.
        self.groups = [
            (self.numeric if names == self.numeric else names, _BULK_TESTS[value_type])
            for value_type, names in by_type.items()
        ]
        # What the bulk test takes for surely fitting: finite, within float32 (what the model
        # takes), and, where an int feature is, within int64 (with room for float64 rounding)
        self.bound = float(1 << 62) if "int" in by_type else FLOAT32_MAX
        # Numbers only: the commonest card, whose one-record body has a path of its own, for
        # values of a type every feature takes (ints, where an int feature is).
        self.plain = set(by_type) <= {"float", "int"}
        self.plain_types = _INTS if "int" in by_type else NUMBER_TYPES


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
    """Checked feature values, all ``rows`` long: as records, or one list per feature.

    Parameters:
        rows: how many rows.
        records: the rows as ``{feature: value}`` (what plain records decode to; what the
            prediction log carries), every feature present (null for one left out).
        by_feature: feature name -> values (what OIP tensors decode to).
        numeric: the numeric and boolean features' values as a ``(rows, numeric features)``
            C-ordered float32 table, in the card's order, as the model takes them (booleans
            1.0/0.0, null 0.0); the decoders make it.
    """

    rows: int
    records: list[dict[str, Scalar]] | None = None
    by_feature: dict[str, list[Any]] | None = None
    numeric: np.ndarray | None = None

    @property
    def columns(self) -> dict[str, list[Any]]:
        """Feature name -> values, as sent: numbers, strings, booleans, nulls."""
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

        Numeric and boolean features are float32 (a boolean 1.0 or 0.0), categorical ones
        strings; a null is 0.0 or ``""`` (the out-of-vocabulary bucket), as the trainer feeds
        a missing value (:func:`driftloop.services.trainer.schema.model_inputs`).

        ``packed``: the numeric and boolean features side by side instead, one ``(rows,
        numeric features)`` float32 array under :data:`PACKED` (what a packed TFLite model
        takes: see :func:`driftloop.services.serve.runtime.pack`).
        """
        features = layout(card)
        arrays: dict[str, np.ndarray] = {}
        if features.numeric and self.numeric is None:  # a batch no decoder made
            self.numeric = _model_table(
                [[row[name] for name in features.numeric] for row in self.row_features()]
            )
        numeric = self.numeric
        if packed:
            if features.numeric and numeric is not None:
                arrays[PACKED] = numeric  # (rows, n) float32, C order
        elif features.numeric and numeric is not None:
            # one conversion for every numeric value, into a (features, rows, 1) table whose
            # slices are each feature's column, contiguous, as the interpreter wants it
            table = np.ascontiguousarray(numeric.T)
            arrays = dict(zip(features.numeric, table[:, :, None], strict=True))
            if not features.categorical:
                return arrays
        for name in features.categorical:
            records = self.records
            values = [r[name] for r in records] if self.by_feature is None and records else None
            column = values if values is not None else self.columns[name]
            if name in features.nullable:
                column = ["" if value is None else value for value in column]
            arrays[name] = np.array(column, dtype=object).reshape(-1, 1)
        return arrays if packed else {name: arrays[name] for name in features.names}


# --- decoding -------------------------------------------------------------------------------


def _model_table(rows: list[list[Any]]) -> np.ndarray:
    """Values the contract accepted as the model's float32 table: a boolean 1.0 or 0.0, and
    0.0 for null or a number past float32, as the trainer feeds them (``model_inputs``)."""
    rows = [[0.0 if value is None else value for value in row] for row in rows]
    with np.errstate(over="ignore"):
        table = np.array(rows, dtype=np.float32)
    return np.nan_to_num(table, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def _invalid(violation: SchemaViolation, prefix: str, where: str = "") -> InvalidInput:
    """The contract's verdict as serve answers it: its ``features.x`` named ``prefix + x``."""
    field = prefix + violation.field.removeprefix("features.")
    message = violation.message
    if message.startswith(violation.field):
        message = field + message[len(violation.field) :]
    return InvalidInput(field, f"{message} ({where}rule: {violation.rule})", violation.rule)


def _request_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise InvalidInput(field, f"{field} must be a string of 1 to 200 characters")
    return value


def _bulk_table(
    records: list[dict[str, Any]], features: FeatureLayout
) -> tuple[bool, np.ndarray | None]:
    """Whether every value of ``records`` (each keyed by exactly the card's features) surely
    fits, by type sets per JSON type; and if so, the model's table of them."""
    numbers = None
    for names, test in features.groups:
        values = [record[name] for record in records for name in names]
        if not test(values):
            return False, None
        if names is features.numeric:
            numbers = values
    if not features.numeric:
        return True, None
    if numbers is None:
        numbers = [record[name] for record in records for name in features.numeric]
    table = _number_table(numbers, features.bound)
    if table is None:
        return False, None
    return True, table.reshape(len(records), len(features.numeric))


def _contract_records(
    records: list[Any], single: bool, features: FeatureLayout
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """The contract's verdict on each record, in order: raises on the first it refuses;
    returns the records (every feature present) and the model's table."""
    checked = []
    count = len(features.names)
    for index, record in enumerate(records):
        prefix = "" if single else f"records[{index}]."
        if not isinstance(record, dict):
            raise InvalidInput(
                f"records[{index}]", f"records[{index}] is not an object keyed by feature name"
            )
        violation = features.check.features(record)
        if violation is not None:
            raise _invalid(violation, prefix)
        if len(record) != count:  # a nullable feature left out: null, in the event too
            record = {name: record.get(name) for name in features.names}
        checked.append(record)
    table = None
    if features.numeric:
        table = _model_table([[r[name] for name in features.numeric] for r in checked])
    return checked, table


def decode_records(document: Any, card: ModelCard) -> tuple[FeatureBatch, str | None]:
    """Check plain records against ``card``'s contract; returns the batch and the body's
    request id."""
    features = layout(card)
    names = features.types.keys()
    # The commonest body, one record keyed by exactly the features, checked first.
    if type(document) is dict and document.keys() == names:
        if features.plain:
            values = [document[name] for name in features.numeric]
            if set(map(type, values)) <= features.plain_types:
                table = _number_table(values, features.bound)
                if table is not None:
                    return FeatureBatch(1, [document], numeric=table[None]), None
        else:
            valid, table = _bulk_table([document], features)
            if valid:
                return FeatureBatch(1, [document], numeric=table), None
    request_id = None
    single = False
    if isinstance(document, dict) and isinstance(document.get("records"), list):
        records = document["records"]
        request_id = _request_id(document.get("request_id", document.get("id")), "request_id")
    elif isinstance(document, dict):
        single = True
        record = document
        for key in ID_KEYS:
            if key in record and key not in names:
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
    # The common case, all valid, tested in bulk (type sets, one array); what that does not
    # accept, the contract checks record by record (it names the field, or accepts).
    if all(type(record) is dict and record.keys() == names for record in records):
        valid, table = _bulk_table(records, features)
        if valid:
            return FeatureBatch(len(records), records, numeric=table), request_id
    checked, table = _contract_records(records, single, features)
    return FeatureBatch(len(checked), checked, numeric=table), request_id


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


# The JSON values each datatype's data holds; null too: the contract says where it may be.
_DATA_TYPES: dict[str, frozenset[type]] = {
    **dict.fromkeys(FLOAT_TYPES, frozenset({int, float, type(None)})),
    **dict.fromkeys(INT_TYPES | UINT_TYPES, frozenset({int, type(None)})),
    "BOOL": frozenset({bool, type(None)}),
    "BYTES": frozenset({str, type(None)}),
}


def _check_tensor_values(field: str, datatype: str, data: list[Any]) -> None:
    """A tensor's values must be its datatype's (a number in FP32, an integer in INT64...)."""
    allowed = _DATA_TYPES[datatype]
    unsigned = datatype in UINT_TYPES
    if set(map(type, data)) <= allowed and not (
        unsigned and any(value is not None and value < 0 for value in data)
    ):
        return
    for value in data:
        if type(value) not in allowed or (unsigned and value is not None and value < 0):
            raise InvalidInput(field, f"{field} is {datatype}: got {describe(value)}")


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
    """Check an OIP v2 inference request against ``card``'s contract; returns the batch and
    its ``id``."""
    if not isinstance(document, dict):
        raise MalformedRequest("the body must be an inference request object with `inputs`")
    tensors = document.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput(
            "inputs", "inputs must be a non-empty list of named tensors, one per feature"
        )
    features = layout(card)
    types = features.types
    columns: dict[str, list[Any]] = {}
    rows = -1
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidInput(
                f"inputs[{index}]", f"inputs[{index}] must be a tensor object with a `name`"
            )
        name = tensor["name"]
        field = f"inputs.{name}"
        if name not in types:  # the contract's word on a name it lacks
            raise _invalid(features.check.features({name: None}), "inputs.")  # type: ignore[arg-type]
        if name in columns:
            raise InvalidInput(field, f"{field} is given twice")
        datatype = tensor.get("datatype")
        if datatype not in DATATYPES:
            raise InvalidInput(
                field,
                f"{field}.datatype must be one of "
                f"{', '.join(sorted(DATATYPES))}; got {describe(datatype)}",
            )
        value_type = types[name]
        if datatype not in FEATURE_DATATYPES[value_type]:
            kind = card.feature(name).kind
            raise InvalidInput(
                field,
                f"{field} is a {kind} feature ({_KIND_WORDS[value_type]}): its datatype is "
                f"{_DATATYPE_WORDS[value_type]}, not {datatype}",
            )
        data = _flatten(field, tensor.get("data"))
        size = _rows_of(field, tensor.get("shape"), len(data))
        if rows >= 0 and size != rows:
            raise InvalidInput(field, f"{field} has {size} rows, other inputs have {rows}")
        rows = size
        _check_tensor_values(field, datatype, data)
        columns[name] = data
    # Every tensor there and every value surely fitting, tested in bulk; else the contract
    # checks row by row (it names the tensor, or accepts: a null, a nullable one left out).
    table = None
    valid = len(columns) == len(types) and all(
        test([value for name in names for value in columns[name]])
        if len(names) > 1
        else test(columns[names[0]])
        for names, test in features.groups
    )
    if valid and features.numeric:
        numbers = [value for name in features.numeric for value in columns[name]]
        table = _number_table(numbers, features.bound)
        valid = table is not None
        if table is not None:  # (features, rows) to (rows, features), C order
            table = np.ascontiguousarray(table.reshape(len(features.numeric), rows).T)
    if not valid:
        present = list(columns)
        for row, values in enumerate(zip(*columns.values(), strict=True)):
            violation = features.check.features(dict(zip(present, values, strict=True)))
            if violation is not None:
                raise _invalid(violation, "inputs.", f"row {row}, ")
        for name in features.names:
            columns.setdefault(name, [None] * rows)  # a nullable feature left out
        if features.numeric:
            numbers = [columns[name] for name in features.numeric]
            table = np.ascontiguousarray(_model_table(numbers).T)
    request_id = _request_id(document.get("id"), "id")
    by_feature = {name: columns[name] for name in features.names}
    return FeatureBatch(rows, None, by_feature, table), request_id


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
    tensors: list[dict[str, Any]] = []
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
    rows: list[dict[str, Any]]
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


# The roles of models in a prediction event (schemas/prediction.schema.json): who answered
# (``answered_by``: the champion, or the online model) and who was scored in shadow (the
# champion while the online model answers, the champion before the last promotion, a
# challenger awaiting live evidence).
CHAMPION, ONLINE, PREVIOUS, CHALLENGER = "champion", "online", "previous", "challenger"
# A model scored in shadow on one row: (role, model version, its prediction).
ShadowScore = tuple[str, str, Scalar]
# What a request leaves for the prediction log: the event's fields without its ``event_id``
# and without the dict around them: time, request id, model, version, features, prediction,
# latency, scores, who answered (None: the champion) and the shadows' scores (None: none). The
# request builds this tuple (cheap); the outbox turns it into the event
# (:func:`prediction_event`) in its own time, in batches.
PredictionRow = tuple[
    float,
    str,
    str,
    str,
    dict[str, Scalar],
    Scalar,
    float,
    Any,
    str | None,
    list[ShadowScore] | None,
]


def prediction_rows(
    name: str,
    version: str,
    ids: list[str],
    batch: FeatureBatch,
    predictions: Predictions,
    latency_ms: float,
    answered_by: str | None = None,
) -> list[PredictionRow]:
    """One :data:`PredictionRow` per row of the batch, for :func:`prediction_event`.

    ``answered_by``: ``online`` when the online model answered (None: the champion did).
    """
    event_time = time.time()  # formatted by prediction_event, off the request's path
    scores = predictions.scores_by_class()
    return [
        (
            event_time,
            ids[index],
            name,
            version,
            features,
            value,
            latency_ms,
            score,
            answered_by,
            None,
        )
        for index, (features, value, score) in enumerate(
            zip(
                batch.row_features(),
                predictions.values,
                scores if scores is not None else (None,) * batch.rows,
                strict=True,
            )
        )
    ]


def prediction_event(row: PredictionRow) -> dict[str, Any]:
    """The prediction event (schemas/prediction.schema.json) of one row, with a new event id."""
    seconds, request_id, name, version, features, value, latency_ms, scores, by, shadows = row
    event = {
        "schema_version": SCHEMA_VERSION,
        "event_id": os.urandom(16).hex(),
        "event_time": format_time(seconds),
        "request_id": request_id,
        "model_name": name,
        "model_version": version,
        "features": features,
        "prediction": value,
        "latency_ms": latency_ms,
    }
    if scores is not None:
        event["scores"] = scores
    if by is not None:
        event["answered_by"] = by
    if shadows:
        event["shadows"] = [
            {"role": role, "model_version": shadow_version, "prediction": prediction}
            for role, shadow_version, prediction in shadows
        ]
    return event


def with_shadows(row: PredictionRow, shadows: list[ShadowScore]) -> PredictionRow:
    """``row`` with the scores of the models in shadow on it."""
    return (*row[:-1], shadows)


def model_metadata(name: str, version: str, card: ModelCard) -> dict[str, Any]:
    """The OIP model metadata response for the version being served: each input's datatype is
    its contract type's (FP64, INT64, BOOL, BYTES), and the contract is in its parameters."""
    inputs = [
        {"name": spec.name, "datatype": METADATA_DATATYPES[spec.type or "float"], "shape": [-1, 1]}
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
        "parameters": {
            "task": card.task,
            "classes": card.classes,
            "target": card.target,
            # the contract requests are checked against: what a client may send
            "contract": {
                "version": card.version,
                "source": card.source,
                "label_type": card.label_type,
                "features": [
                    {"name": s.name, "kind": s.kind, "type": s.type, "nullable": s.nullable}
                    for s in card.features
                ],
            },
        },
    }
