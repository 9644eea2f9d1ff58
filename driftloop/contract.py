"""FeatureContract: what a model's data must look like, and the one check every door runs.

A contract names each feature (its kind, its JSON type, whether it may be null, and for a
categorical feature the categories known), and the label (the task, the label's type and, for
classification, its classes). Every door checks events against it with :class:`ContractCheck`:
serve's requests, ingest's predictions and labels, the store's files (one fixed Arrow schema),
the trainer's rows. What breaks it is refused with a :class:`~driftloop.errors.SchemaViolation`
whose ``rule`` says why (the dead-letter topic carries it):

=====================  ============================================================
rule                   meaning
=====================  ============================================================
``missing_feature``    a feature the contract names is absent (and not nullable)
``unknown_feature``    a feature the contract does not name
``feature_type``       a value of the wrong JSON type (``"12,000"`` for a float)
``not_finite``         NaN or an infinity, or a number past what its type holds
``null_feature``       null for a feature that is not nullable
``null_label``         a label that is null
``label_type``         a label of the wrong JSON type
``unknown_class``      a label that is none of the contract's classes
=====================  ============================================================

An unknown category is not an error (it is drift): :meth:`ContractCheck.unknown_categories`
counts it.

Types are JSON's: ``int`` (an integer; ``36.0`` is one, as in JSON Schema, ``36.5`` is not),
``float`` (any finite number), ``string``, ``bool`` (``true``/``false``, never ``1`` or
``"yes"``). They are what the app sends, what serve accepts, what the events carry, what the
store's columns hold (int64, float64, string, bool) and what the trainer reads.

A contract is declared by the user, or inferred from a model's first examples by
:class:`ContractInference` (robustly: a type, a class or a null seen in a small share of them
is not written into the contract, and the examples carrying it are refused), then frozen. A
change is a new ``version``, never a side effect of an event. Every model version's card *is*
its contract plus the fit's metrics (:class:`~driftloop.model_card.ModelCard`).

Example:
    >>> contract = FeatureContract(
    ...     model_name="loans", version=1, task="classification", classes=[0, 1],
    ...     features=[FeatureSpec(name="amount", type="float"),
    ...               FeatureSpec(name="grade", kind="categorical", categories=["A", "B"]),
    ...               FeatureSpec(name="verified", kind="boolean")])
    >>> check = ContractCheck(contract)
    >>> check.features({"amount": 12000.5, "grade": "A", "verified": True}) is None
    True
    >>> check.features({"amount": "12,000", "grade": "A", "verified": True}).rule
    'feature_type'
    >>> check.label(7).rule, check.label(None).rule, check.label(True).rule
    ('unknown_class', 'null_label', 'label_type')
    >>> check.unknown_categories({"amount": 1.0, "grade": "Z", "verified": False})
    ['grade']
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Self

import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

from driftloop.errors import SchemaViolation
from driftloop.events import Scalar

Task = Literal["classification", "regression"]
FeatureKind = Literal["numeric", "categorical", "boolean"]
ValueType = Literal["int", "float", "string", "bool"]
Source = Literal["declared", "inferred", "card"]

# Each kind's types; the first is the default.
KIND_TYPES: dict[str, tuple[ValueType, ...]] = {
    "numeric": ("float", "int"),
    "categorical": ("string",),
    "boolean": ("bool",),
}
ARROW_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "bool": pa.bool_(),
}
INT64_MAX = (1 << 63) - 1
# A categorical vocabulary keeps its most frequent values; the rest are unknown categories.
MAX_CATEGORIES = 1000


class FeatureSpec(BaseModel):
    """One input feature.

    Parameters:
        name: the feature's key in requests and events.
        kind: ``numeric``, ``categorical`` or ``boolean``: how the model takes it.
        type: the JSON type its values have: ``int`` or ``float`` (numeric), ``string``
            (categorical), ``bool`` (boolean); the kind's default when left out.
        nullable: whether null (or leaving the feature out) is a value; the model sees 0 or
            the out-of-vocabulary bucket for it.
        categories: for a categorical feature, the values known; others are mapped to an
            out-of-vocabulary bucket by the model, and count as drift in the monitor.
    """

    name: str = Field(min_length=1, max_length=256)
    kind: FeatureKind = "numeric"
    type: ValueType | None = None
    nullable: bool = False
    categories: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        allowed = KIND_TYPES[self.kind]
        if self.type is None:
            self.type = allowed[0]
        elif self.type not in allowed:
            raise ValueError(
                f"feature {self.name}: a {self.kind} feature's type is "
                f"{' or '.join(allowed)}, not {self.type}"
            )
        return self


class FeatureContract(BaseModel):
    """A model's features and label: what every door checks events against.

    Parameters:
        task: ``classification`` or ``regression``.
        features: the inputs, in the order the model is built with.
        classes: for classification, every class a label may be (a model has one output per
            class, in this order).
        label_type: the JSON type of labels (and predictions); derived from the classes, or
            ``float`` for regression, when left out.
        target: name of the label, for reports.
        model_name: the registered model the contract belongs to.
        version: the contract's version (1, 2, ...); 0 for a card written before contracts.
        source: ``declared`` by a user, ``inferred`` from the first examples, or ``card``
            (a version's card from before contracts).
    """

    task: Task
    features: list[FeatureSpec] = Field(min_length=1)
    classes: list[Scalar] = Field(default_factory=list)
    label_type: ValueType | None = None
    target: str = "label"
    model_name: str | None = None
    version: int = Field(0, ge=0)
    source: Source = "card"

    @model_validator(mode="after")
    def _check_contract(self) -> Self:
        names = self.feature_names
        if len(set(names)) != len(names):
            raise ValueError("feature names must be unique")
        if self.task == "classification":
            if len(self.classes) < 2:
                raise ValueError("a classification model needs at least two classes")
            if self.label_type is None:
                types = {value_type(c) or "float" for c in self.classes}
                self.label_type = "float" if types == {"int", "float"} else min(types)
            label_type = self.label_type
            if any(not fits(label_type, c) for c in self.classes):
                raise ValueError(f"every class must be of the label's type {self.label_type}")
        elif self.label_type is None:
            self.label_type = "float"
        return self

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    def feature(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)

    def contract(self) -> FeatureContract:
        """The contract alone (a model card without its fit's metrics)."""
        return FeatureContract.model_validate(self.model_dump(include=_CONTRACT_FIELDS))

    def same_terms(self, other: FeatureContract) -> bool:
        """Whether ``other`` asks the same of the data (versions and sources aside)."""
        keep = _CONTRACT_FIELDS - {"version", "source"}
        return self.model_dump(include=keep) == other.model_dump(include=keep)

    def arrow_schema(self) -> pa.Schema:
        """The example store's columns for this contract: one type per column, forever."""
        label = ARROW_TYPES[self.label_type or "float"]
        time = pa.timestamp("us", tz="UTC")
        fields = [
            pa.field("event_id", pa.string()),
            pa.field("request_id", pa.string()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("event_time", time),
            pa.field("prediction_time", time),
            pa.field("label_time", time),
            pa.field("prediction", label),
            pa.field("label", label),
        ]
        fields += [
            pa.field(f"feature.{spec.name}", ARROW_TYPES[spec.type or "float"])
            for spec in sorted(self.features, key=lambda spec: spec.name)
        ]
        return pa.schema(fields)


_CONTRACT_FIELDS = set(FeatureContract.model_fields)


def value_type(value: Any) -> ValueType | None:
    """The JSON type of a decoded value (None for null and for what JSON has no scalar of).

    Example:
        >>> [value_type(v) for v in (1, 1.5, "a", True, None)]
        ['int', 'float', 'string', 'bool', None]
    """
    kind = type(value)
    if kind is bool:
        return "bool"
    if kind is int:
        return "int"
    if kind is float:
        return "int" if value.is_integer() else "float"
    if kind is str:
        return "string"
    return None


def fits(value_kind: str, value: Any) -> bool:
    """Whether ``value`` (not null) is a value of the type ``value_kind``.

    Example:
        >>> fits("int", 36.0), fits("int", 36.5), fits("float", 3), fits("float", True)
        (True, False, True, False)
    """
    kind = type(value)
    if value_kind == "float":
        if kind is float:
            return math.isfinite(value)
        return kind is int and abs(value) < 1 << 1000
    if value_kind == "int":
        if kind is int:
            return abs(value) <= INT64_MAX
        return kind is float and value.is_integer() and abs(value) <= INT64_MAX
    if value_kind == "string":
        return kind is str
    return kind is bool


# What a value's Python type must be for each JSON type: the fast test, before `fits`.
_PYTHON_TYPES: dict[str, frozenset[type]] = {
    "int": frozenset({int, float}),
    "float": frozenset({int, float}),
    "string": frozenset({str}),
    "bool": frozenset({bool}),
}


class ContractCheck:
    """A contract compiled for checking events, one at a time, fast.

    Parameters:
        contract: the contract to check against.
    """

    __slots__ = ("_allowed", "_count", "_integers", "_labels", "_vocabulary", "contract")

    def __init__(self, contract: FeatureContract) -> None:
        self.contract = contract
        self._allowed: dict[str, frozenset[type]] = {}
        for spec in contract.features:
            types = _PYTHON_TYPES[spec.type or "float"]
            self._allowed[spec.name] = types | {type(None)} if spec.nullable else types
        self._integers = frozenset(s.name for s in contract.features if s.type == "int")
        self._count = len(contract.features)
        self._vocabulary = {
            spec.name: frozenset(spec.categories)
            for spec in contract.features
            if spec.kind == "categorical" and spec.categories
        }
        # Each class keyed by the Python type it may arrive as (True == 1 in Python, not in a
        # contract; 1.0 is the integer 1 in JSON): one lookup decides a valid label.
        self._labels: frozenset[tuple[type, Any]] = frozenset(
            (kind, c)
            for c in contract.classes
            for kind in ((int, float) if value_type(c) == "int" else (type(c),))
        )

    def features(self, features: Mapping[str, Any]) -> SchemaViolation | None:
        """Why ``features`` break the contract (the first problem found), or None."""
        allowed = self._allowed
        if len(features) == self._count:
            # The common case, every value valid, decided inline (ingest runs it per event);
            # anything else goes to _problem, which names it (or finds it valid after all).
            for name, value in features.items():
                kind = type(value)
                types = allowed.get(name)
                if types is None or kind not in types:
                    break
                if kind is float:
                    if value - value != 0.0:  # NaN or an infinity
                        break
                    if name in self._integers and not (
                        value.is_integer() and -INT64_MAX <= value <= INT64_MAX
                    ):
                        break
                elif kind is int and not -INT64_MAX <= value <= INT64_MAX:
                    break
            else:
                return None
        return self._problem(features)

    def _problem(self, features: Mapping[str, Any]) -> SchemaViolation | None:
        for name in features:
            if name not in self._allowed:
                known = ", ".join(self.contract.feature_names)
                return SchemaViolation(
                    f"features.{name}",
                    "unknown_feature",
                    f"features.{name} is not a feature of this model's contract; its features "
                    f"are {known}",
                )
        for spec in self.contract.features:
            field = f"features.{spec.name}"
            if spec.name not in features or features[spec.name] is None:
                if spec.nullable:
                    continue
                if spec.name not in features:
                    return SchemaViolation(
                        field, "missing_feature", f"{field} is missing (it is not nullable)"
                    )
                return SchemaViolation(field, "null_feature", f"{field} is null (not nullable)")
            value = features[spec.name]
            if type(value) not in _PYTHON_TYPES[spec.type or "float"]:
                return SchemaViolation(
                    field,
                    "feature_type",
                    f"{field} is {_article(spec.type)}: got {describe(value)}",
                )
            if not fits(spec.type or "float", value):
                integral = type(value) is int or (_finite(value) and float(value).is_integer())
                rule = "feature_type" if spec.type == "int" and not integral else "not_finite"
                return SchemaViolation(
                    field, rule, f"{field} is {_article(spec.type)}: got {describe(value)}"
                )
        return None

    def label(self, label: Any) -> SchemaViolation | None:
        """Why ``label`` breaks the contract, or None."""
        contract = self.contract
        if label is None:
            return SchemaViolation("label", "null_label", "label is null")
        if contract.task == "regression":
            if type(label) in (int, float) and fits("float", label):
                return None
            rule = "not_finite" if type(label) is float else "label_type"
            return SchemaViolation(
                "label", rule, f"label is a finite number (regression): got {describe(label)}"
            )
        if (type(label), label) in self._labels:
            return None
        if not fits(contract.label_type or "string", label):
            return SchemaViolation(
                "label",
                "label_type",
                f"label is {_article(contract.label_type)}: got {describe(label)}",
            )
        shown = ", ".join(map(_json, contract.classes[:20]))
        return SchemaViolation(
            "label", "unknown_class", f"label {_json(label)} is not a class of this model ({shown})"
        )

    @property
    def knows_categories(self) -> bool:
        """Whether the contract names categories (so that a value can be an unknown one)."""
        return bool(self._vocabulary)

    def unknown_categories(self, features: Mapping[str, Any]) -> list[str]:
        """The categorical features whose value is none of the known categories (drift)."""
        return [
            name
            for name, known in self._vocabulary.items()
            if features.get(name) is not None and features.get(name) not in known
        ]


def summary(contract: FeatureContract) -> list[str]:
    """The contract as lines for a terminal.

    Example:
        >>> for line in summary(FeatureContract(
        ...     model_name="loans", version=2, source="declared", task="classification",
        ...     classes=["no", "yes"], features=[FeatureSpec(name="income", nullable=True)])):
        ...     print(line)
        contract: loans v2 (declared), classification of label (string): no, yes
          income: numeric float, nullable
    """
    if contract.task == "classification":
        shown = ", ".join(map(str, contract.classes[:20]))
        more = f" (+{len(contract.classes) - 20})" if len(contract.classes) > 20 else ""
        label = f"classification of {contract.target} ({contract.label_type}): {shown}{more}"
    else:
        label = f"regression of {contract.target} ({contract.label_type})"
    lines = [f"contract: {contract.model_name} v{contract.version} ({contract.source}), {label}"]
    for spec in contract.features:
        detail = f"{spec.kind} {spec.type}" + (", nullable" if spec.nullable else "")
        if spec.categories:
            detail += f", {len(spec.categories)} categories"
        lines.append(f"  {spec.name}: {detail}")
    return lines


def _finite(value: Any) -> bool:
    return type(value) is not float or math.isfinite(value)


def _article(value_kind: str | None) -> str:
    return {"int": "an integer", "float": "a number", "string": "a string", "bool": "a boolean"}[
        value_kind or "float"
    ]


def _json(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def describe(value: Any) -> str:
    """A value as an error message names it.

    Example:
        >>> describe(True), describe("N/A"), describe(None), describe(36.5), describe(10**50)
        ('the boolean true', "the string 'N/A'", 'null', '36.5', 'a number of 51 digits')
    """
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if value is None:
        return "null"
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    text = repr(value)  # an integer may have thousands of digits: not for a message
    return text if len(text) <= 40 else f"a number of {len(text.lstrip('-'))} digits"


# --- inference ------------------------------------------------------------------------------


class ContractInference:
    """Infers a contract from a model's first labelled examples, robustly.

    Each feature's type is the one most of its values have; a type held by less than
    ``minority`` of its values is not written into the contract (the examples that carry it
    are refused once it is frozen). The same goes for nulls (a feature is nullable only when
    at least ``minority`` of the examples leave it null) and for features (one that fewer than
    ``minority`` of the examples carry is not a feature). Labels of the most common type decide
    the task: strings and booleans are classes, and so are integers with at most
    ``max_classes`` distinct values; a class needs at least ``min_class_share`` of the labels
    (and two of them). Other numbers mean regression.

    Parameters:
        model_name: the model the contract is for.
        sample: how many examples to infer from.
        minority: the share under which a type, a null or a feature is taken for bad data.
        min_class_share: the share of labels under which a value is not a class.
        max_classes: most distinct integer labels still taken as classes.

    Example:
        >>> inference = ContractInference("loans", sample=100)
        >>> for i in range(100):
        ...     inference.add({"term": 36 if i % 2 else 60, "home": "own"}, i % 2)
        >>> inference.add({"term": "36 months", "home": "own"}, 7)
        >>> contract = inference.freeze()
        >>> [(f.name, f.kind, f.type, f.nullable) for f in contract.features]
        [('home', 'categorical', 'string', False), ('term', 'numeric', 'int', False)]
        >>> contract.classes, contract.source
        ([0, 1], 'inferred')
    """

    def __init__(
        self,
        model_name: str,
        sample: int = 1000,
        minority: float = 0.02,
        min_class_share: float = 0.01,
        max_classes: int = 20,
    ) -> None:
        self.model_name = model_name
        self.sample = sample
        self.minority = minority
        self.min_class_share = min_class_share
        self.max_classes = max_classes
        self.examples = 0
        self._types: dict[str, Counter[str]] = {}  # feature -> JSON type -> count
        self._nulls: Counter[str] = Counter()
        self._strings: dict[str, Counter[str]] = {}
        self._labels: Counter[tuple[str, Any]] = Counter()

    def add(self, features: Mapping[str, Any], label: Any) -> None:
        """Count one labelled example."""
        self.examples += 1
        for name, value in features.items():
            kind = value_type(value)
            if kind is None:
                self._nulls[name] += value is None
                self._types.setdefault(name, Counter())
                continue
            self._types.setdefault(name, Counter())[kind] += 1
            if kind == "string":
                self._strings.setdefault(name, Counter())[value] += 1
        kind = value_type(label)
        if kind is not None:
            # 1.0 and 1 are one class; a class keeps its integer form.
            value = int(label) if kind == "int" and type(label) is float else label
            self._labels[(kind, value)] += 1

    @property
    def ready(self) -> bool:
        """Whether enough examples were counted, and they make a contract."""
        if self.examples < self.sample:
            return False
        try:
            self.freeze()
        except ValueError:
            return False
        return True

    def freeze(self) -> FeatureContract:
        """The contract the examples counted so far call for (version 1, ``inferred``).

        Raises ValueError when they make none: no feature, no label, a single class.
        """
        seen = max(self.examples, 1)
        specs = []
        for name in sorted(self._types):
            types = self._types[name]
            present = sum(types.values())
            if present < self.minority * seen:
                continue  # a feature in a few examples: bad data, not a feature
            specs.append(self._feature(name, types, present))
        if not specs:
            raise ValueError("the examples carry no feature")
        task, label_type, classes = self._label()
        return FeatureContract(
            task=task,
            features=specs,
            classes=classes,
            label_type=label_type,
            model_name=self.model_name,
            version=1,
            source="inferred",
        )

    def _feature(self, name: str, types: Counter[str], present: int) -> FeatureSpec:
        numbers = types["int"] + types["float"]
        groups = {"number": numbers, "string": types["string"], "bool": types["bool"]}
        group = max(groups, key=lambda g: (groups[g], g))
        nullable = self.examples - present >= self.minority * self.examples
        if group == "string":
            counts = self._strings.get(name, Counter())
            categories = sorted(v for v, _ in counts.most_common(MAX_CATEGORIES))
            return FeatureSpec(
                name=name, kind="categorical", nullable=nullable, categories=categories
            )
        if group == "bool":
            return FeatureSpec(name=name, kind="boolean", nullable=nullable)
        kind: ValueType = "float" if types["float"] >= self.minority * numbers else "int"
        return FeatureSpec(name=name, kind="numeric", type=kind, nullable=nullable)

    def _label(self) -> tuple[Task, ValueType, list[Scalar]]:
        total = sum(self._labels.values())
        if not total:
            raise ValueError("no example carries a label")
        by_type: Counter[str] = Counter()
        for (kind, _), count in self._labels.items():
            by_type["number" if kind in ("int", "float") else kind] += count
        group = max(by_type, key=lambda g: (by_type[g], g))
        if group == "number":
            floats = sum(n for (kind, _), n in self._labels.items() if kind == "float")
            numbers = by_type["number"]
            if floats >= self.minority * numbers:
                return "regression", "float", []
            # Many distinct integers are values, not classes (rare ones included: a count).
            if sum(kind == "int" for kind, _ in self._labels) > self.max_classes:
                return "regression", "float", []
            classes = self._classes("int", total)
            label_type: ValueType = "int"
        else:
            label_type = "string" if group == "string" else "bool"
            classes = self._classes(label_type, total)
        if len(classes) < 2:
            raise ValueError(f"the labels hold fewer than two classes: {classes}")
        return "classification", label_type, classes

    def _classes(self, kind: str, total: int) -> list[Any]:
        least = max(2, self.min_class_share * total)
        return sorted(v for (k, v), n in self._labels.items() if k == kind and n >= least)


def infer_contract(
    model_name: str, examples: Iterable[tuple[Mapping[str, Any], Any]], **options: Any
) -> FeatureContract:
    """The contract :class:`ContractInference` freezes from ``(features, label)`` pairs."""
    inference = ContractInference(model_name, **options)
    for features, label in examples:
        inference.add(features, label)
    return inference.freeze()


def conforming(contract: FeatureContract, rows: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Whether each ``{"features": ..., "label": ...}`` row keeps ``contract``."""
    check = ContractCheck(contract)
    return [
        check.features(row["features"]) is None and check.label(row["label"]) is None
        for row in rows
    ]
