"""DataQuality: how much of each model's data breaks its contract, and when to hold triggers.

Separate from drift: a producer that starts sending broken events is not a new concept, and a
refit on what is left of its data would learn the wrong thing. Per model, the monitor keeps
two count windows, one per stream a producer can break:

- **features**: the last ``window`` predictions (valid) and dead letters of predictions (their
  ``error.field`` is a feature's: ``missing_feature``, ``unknown_feature``, ``feature_type``,
  ``not_finite``, ``null_feature``);
- **labels**: the last ``window`` labelled examples (valid) and dead letters of labels
  (``error.field`` ``label``: ``null_label``, ``label_type``, ``unknown_class``, or a
  regression label that is not finite).

A dead letter counts when it names its model (ingest sets ``model_name`` on what it refuses
for breaking that model's contract); one that does not (unparseable JSON, a clock far ahead)
is no model's. A prediction on the topic that breaks its version's card (the card *is* a
contract) is not counted as valid: ingest refuses it too, and its dead letter counts it.

Each stream's **invalid share** is its invalid events over all its events in the window. The
streams are judged apart, and the worse one decides: labels are fewer than predictions (not
every prediction gets one), and a share over both would dilute a broken label feed by the
prediction traffic (every label broken, one prediction in ten labelled: 9%). A stream is
judged once its window holds ``min_events`` events (a count window never shrinks).

The verdict has hysteresis, so that a share near the threshold does not flap:

- **degraded** when a judged stream's share passes ``max_invalid_share``;
- **recovered** when every judged stream's share is at most ``RECOVER_FRACTION`` (half) of
  it; as clean events push the burst out of the window, a 30% burst recovers after about
  83% of a window of clean events.

Only a change of status is returned (:class:`QualityChange`), as the data-quality event
(schemas/data_quality.schema.json). Its ``invalid_share`` is the deciding stream's (the worse
one's), so it may exceed ``window.invalid / window.size``. The window also describes valid data
that is not an error but worth watching: the share of nulls per feature and of unknown
categories per categorical feature (over the valid predictions, against their version's card),
and the share of each class among the valid labels (classification only).

Example:
    >>> quality = DataQuality(lambda name, version: None, window=100, min_events=50)
    >>> def example(label):
    ...     return {"model_name": "m", "model_version": "1", "label": label}
    >>> def letter(rule):
    ...     return {"model_name": "m", "error": {"field": "label", "rule": rule}}
    >>> [quality.observe_example(example(i % 2)) for i in range(60)] == [None] * 60
    True
    >>> changes = [quality.observe_dead_letter(letter("unknown_class")) for _ in range(10)]
    >>> [(c.status, c.stream, c.event()["window"]["invalid_by_rule"]) for c in changes if c]
    [('degraded', 'labels', {'unknown_class': 7})]
    >>> quality.degraded("m"), round(quality.shares("m")["labels"], 3)
    (True, 0.143)
    >>> changes = [quality.observe_example(example(i % 2)) for i in range(100)]
    >>> [(i, c.status, c.invalid_share) for i, c in enumerate(changes) if c]
    [(94, 'recovered', 0.05)]
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from driftloop.contract import ContractCheck, FeatureContract
from driftloop.events import new_event

Status = Literal["degraded", "recovered"]
Stream = Literal["features", "labels"]
STREAMS: tuple[Stream, ...] = ("features", "labels")
# Rules that are the label's, for a dead letter whose field does not say.
LABEL_RULES = frozenset({"null_label", "label_type", "unknown_class"})
# Recovered at half the threshold: a share hovering at the threshold does not flap.
RECOVER_FRACTION = 0.5

CardLookup = Callable[[str, str], FeatureContract | None]


@dataclass(frozen=True)
class QualityChange:
    """A model's data became degraded, or recovered.

    Parameters:
        model_name: the model whose data it is.
        status: ``degraded`` (its triggers are held from now) or ``recovered`` (released).
        invalid_share: the deciding stream's invalid share (the worse one's).
        threshold: ``max_invalid_share``.
        stream: the deciding stream, ``features`` or ``labels``.
        window: the event's ``window`` field (sizes, invalid by rule, null, unknown-category
            and label shares).
    """

    model_name: str
    status: Status
    invalid_share: float
    threshold: float
    stream: Stream
    window: dict[str, Any] = field(repr=False)

    @property
    def holding(self) -> bool:
        return self.status == "degraded"

    def event(self) -> dict[str, Any]:
        """The data-quality event (schemas/data_quality.schema.json)."""
        return new_event(
            model_name=self.model_name,
            status=self.status,
            invalid_share=round(self.invalid_share, 6),
            threshold=self.threshold,
            holding_triggers=self.holding,
            window=self.window,
        )


class _Window:
    """One stream's last ``size`` events, with running counts (O(1) per event).

    Each event is its rule (None when valid) and its marks: ``("null", feature)``,
    ``("unknown", feature)`` or ``("label", class)``.
    """

    def __init__(self, size: int) -> None:
        self.events: deque[tuple[str | None, tuple[tuple[str, str], ...]]] = deque()
        self.size = size
        self.invalid = 0
        self.rules: Counter[str] = Counter()
        self.marks: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self.events)

    @property
    def valid(self) -> int:
        return len(self.events) - self.invalid

    @property
    def share(self) -> float:
        return self.invalid / len(self.events) if self.events else 0.0

    def add(self, rule: str | None, marks: tuple[tuple[str, str], ...] = ()) -> None:
        if len(self.events) == self.size:
            self._count(*self.events.popleft(), -1)
        self.events.append((rule, marks))
        self._count(rule, marks, 1)

    def _count(self, rule: str | None, marks: tuple[tuple[str, str], ...], by: int) -> None:
        if rule is not None:
            self.invalid += by
            self.rules[rule] += by
            if not self.rules[rule]:
                del self.rules[rule]
        for mark in marks:
            self.marks[mark] += by
            if not self.marks[mark]:
                del self.marks[mark]

    def shares(self, kind: str) -> dict[str, float]:
        """Of the valid events, the share carrying each mark of ``kind``."""
        valid = max(self.valid, 1)
        return {key: round(n / valid, 6) for (k, key), n in sorted(self.marks.items()) if k == kind}


class _Model:
    """One model's windows, verdict and what its cards say about its features."""

    def __init__(self, size: int) -> None:
        self.windows: dict[Stream, _Window] = {stream: _Window(size) for stream in STREAMS}
        self.degraded = False
        self.features: set[str] = set()  # every feature of its cards: a null share each
        self.categorical: set[str] = set()  # those with known categories


class DataQuality:
    """Invalid shares, nulls, unknown categories and label balance of every model it sees.

    Parameters:
        cards: ``(model_name, version) -> contract`` (a version's :class:`ModelCard`), or
            None while not loaded: then nulls are the features sent as null, no category is
            unknown and every prediction is valid.
        window: events per stream in a model's count window.
        min_events: events a stream's window must hold before its share is judged.
        max_invalid_share: the share past which a model's data is degraded (1: never).
    """

    def __init__(
        self,
        cards: CardLookup,
        *,
        window: int = 1000,
        min_events: int = 200,
        max_invalid_share: float = 0.1,
    ) -> None:
        if window < 1 or min_events < 1:
            raise ValueError("window and min_events must be at least 1")
        if not 0 < max_invalid_share <= 1:
            raise ValueError("max_invalid_share must be in (0, 1]")
        self.cards = cards
        self.window_size = window
        self.min_events = min(min_events, window)
        self.max_invalid_share = max_invalid_share
        self.models: dict[str, _Model] = {}
        self._checks: dict[tuple[str, str], tuple[FeatureContract, ContractCheck]] = {}

    # --- inputs ---------------------------------------------------------------------------

    def observe_prediction(self, event: Mapping[str, Any]) -> QualityChange | None:
        """One prediction: its nulls and unknown categories count, unless it breaks its
        version's card (then ingest's dead letter counts it, as invalid)."""
        name = event["model_name"]
        model = self._model(name)
        features = event["features"]
        check = self._check(name, str(event["model_version"]), model)
        if check is None:
            nulls = [key for key, value in features.items() if value is None]
            unknown: list[str] = []
        else:
            if check.features(features) is not None:
                return None
            nulls = [spec for spec in check.contract.feature_names if features.get(spec) is None]
            unknown = check.unknown_categories(features)
        marks = tuple(("null", f) for f in nulls) + tuple(("unknown", f) for f in unknown)
        model.windows["features"].add(None, marks)
        return self._judge(name, model)

    def breaks_card(self, event: Mapping[str, Any]) -> bool:
        """Whether a prediction breaks its version's card: ingest dead-letters it, and the
        drift windows leave it out (corrupt data is not drift)."""
        name = event["model_name"]
        check = self._check(name, str(event["model_version"]), self._model(name))
        return check is not None and check.features(event["features"]) is not None

    def observe_example(self, event: Mapping[str, Any]) -> QualityChange | None:
        """One labelled example (valid: ingest checked it): its class counts."""
        name = event["model_name"]
        model = self._model(name)
        label = _class(event["label"], self._task(name, str(event["model_version"])))
        model.windows["labels"].add(None, (("label", label),) if label is not None else ())
        return self._judge(name, model)

    def observe_dead_letter(self, event: Mapping[str, Any]) -> QualityChange | None:
        """One dead letter: invalid for its model's stream, when it names a model."""
        name = event.get("model_name")
        if not name:
            return None  # no model's: unparseable, or refused before its model was known
        error = event["error"]
        rule = str(error.get("rule") or "invalid")
        label = str(error.get("field", "")).startswith("label") or rule in LABEL_RULES
        model = self._model(name)
        model.windows["labels" if label else "features"].add(rule)
        return self._judge(name, model)

    # --- state ----------------------------------------------------------------------------

    def degraded(self, name: str) -> bool:
        """Whether ``name``'s data is degraded now (its triggers held)."""
        model = self.models.get(name)
        return model is not None and model.degraded

    def shares(self, name: str) -> dict[Stream, float]:
        """Each stream's invalid share now (judged or not)."""
        model = self.models.get(name)
        if model is None:
            return {}
        return {stream: window.share for stream, window in model.windows.items()}

    def window(self, name: str) -> dict[str, Any]:
        """The event's ``window`` field for ``name`` now."""
        model = self._model(name)
        features, labels = model.windows["features"], model.windows["labels"]
        nulls = dict.fromkeys(sorted(model.features), 0.0) | features.shares("null")
        unknown = dict.fromkeys(sorted(model.categorical), 0.0) | features.shares("unknown")
        return {
            "size": len(features) + len(labels),
            "invalid": features.invalid + labels.invalid,
            "invalid_by_rule": dict(sorted((features.rules + labels.rules).items())),
            "null_share": nulls,
            "unknown_category_share": unknown,
            "label_balance": labels.shares("label"),
        }

    # --- verdicts -------------------------------------------------------------------------

    def _judge(self, name: str, model: _Model) -> QualityChange | None:
        judged = {
            stream: window.share
            for stream, window in model.windows.items()
            if len(window) >= self.min_events
        }
        if not judged:
            return None
        worst = max(judged, key=lambda stream: judged[stream])
        share = judged[worst]
        if not model.degraded and share > self.max_invalid_share:
            model.degraded = True
            return self._change(name, "degraded", share, worst)
        if model.degraded and share <= self.max_invalid_share * RECOVER_FRACTION:
            model.degraded = False
            return self._change(name, "recovered", share, worst)
        return None

    def _change(self, name: str, status: Status, share: float, stream: Stream) -> QualityChange:
        return QualityChange(name, status, share, self.max_invalid_share, stream, self.window(name))

    def _model(self, name: str) -> _Model:
        model = self.models.get(name)
        if model is None:
            model = self.models[name] = _Model(self.window_size)
        return model

    def _check(self, name: str, version: str, model: _Model) -> ContractCheck | None:
        card = self.cards(name, version)
        if card is None:
            return None
        cached = self._checks.get((name, version))
        if cached is None or cached[0] is not card:
            cached = self._checks[(name, version)] = (card, ContractCheck(card))
            model.features.update(card.feature_names)
            model.categorical.update(s.name for s in card.features if s.categories)
        return cached[1]

    def _task(self, name: str, version: str) -> str | None:
        card = self.cards(name, version)
        return card.task if card is not None else None


def _class(label: Any, task: str | None) -> str | None:
    """A label as a key of ``label_balance`` (a JSON object's key), None when it is not a
    class: a regression label, or a fractional number while the task is not known.

    Example:
        >>> [_class(v, "classification") for v in (1, 1.0, "yes", True)]
        ['1', '1', 'yes', 'true']
        >>> _class(2.5, None), _class(2.5, "regression")
        (None, None)
    """
    if task == "regression" or label is None:
        return None
    if isinstance(label, str):
        return label
    if isinstance(label, float):
        if not label.is_integer():
            return None
        label = int(label)
    return json.dumps(label)
