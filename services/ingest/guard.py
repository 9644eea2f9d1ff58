"""ContractGuard: ingest's door, where every prediction and labelled example meets its model's
contract before it reaches the join, the examples topic or the store. Pure: no I/O.

- A prediction of a model with a contract is checked when it is read: one whose features break
  the contract never reaches the join.
- A labelled example (a prediction joined with its label) is checked whole: its label against
  the classes, its features again if the contract came after the prediction did.
- A model without a contract yet has its examples *held* while :class:`ContractInference`
  counts them. Once it has seen enough, the contract is frozen (published by the worker, and
  the first version on the log wins), and every held example is checked against the contract
  in force, including those that arrived before it was frozen: a minority of bad records is
  never typed into the contract, and never stored.

While a model's examples are held, nothing that came after them may be committed (the worker
skips its checkpoints): a crash or a rebalance re-reads them.

Example:
    >>> guard = ContractGuard(sample=4)
    >>> def example(i, label):
    ...     return {"model_name": "m", "features": {"x": float(i)}, "label": label}
    >>> [guard.admit(example(i, i % 2)).action for i in range(4)]
    ['hold', 'hold', 'hold', 'hold']
    >>> [(c.model_name, c.classes) for c in guard.inferred()]
    [('m', [0, 1])]
    >>> guard.adopt(guard.inferred())
    >>> [verdict.action for _, _, verdict in guard.release()]
    ['admit', 'admit', 'admit', 'admit']
    >>> guard.admit(example(5, 7)).violation.rule
    'unknown_class'
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

from driftloop.contract import ContractCheck, ContractInference, FeatureContract
from driftloop.errors import SchemaViolation

Action = Literal["admit", "refuse", "hold"]


class Verdict(NamedTuple):
    """What the door does with one example: admit it, refuse it (and why), or hold it."""

    action: Action
    violation: SchemaViolation | None = None


ADMIT = Verdict("admit")
# Fewest examples a contract is inferred from, when the sample did not fill in time.
MIN_SAMPLE = 50
HOLD = Verdict("hold")


class ContractGuard:
    """Checks events against the contract of the model they name; infers the missing ones.

    Parameters:
        contracts: the contracts in force, by model name.
        sample: labelled examples a contract is inferred from.
        minority: see :class:`~driftloop.contract.ContractInference`.
        min_class_share: see :class:`~driftloop.contract.ContractInference`.
        max_wait_s: how long a model's examples are held, at most, when fewer than
            ``sample`` come (then at least ``MIN_SAMPLE`` must).
        max_held: most examples held for one model; past it, with still no contract to be
            inferred (one class only, say), they are refused with the rule ``no_contract``.
    """

    def __init__(
        self,
        contracts: Mapping[str, FeatureContract] | None = None,
        *,
        sample: int = 1000,
        minority: float = 0.02,
        min_class_share: float = 0.01,
        max_wait_s: float = 30.0,
        max_held: int | None = None,
    ) -> None:
        self.sample = sample
        self.max_wait_s = max_wait_s
        self.minority = minority
        self.min_class_share = min_class_share
        self.max_held = max_held or 4 * sample
        self.contracts: dict[str, FeatureContract] = {}
        self._checks: dict[str, ContractCheck] = {}
        self._inference: dict[str, ContractInference] = {}
        # Per model, the held examples, each with what its caller gave to find it again.
        self._held: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        self._since: dict[str, float] = {}  # when each model's first held example came
        # Admitted examples with a category their contract does not know, by (model, feature).
        self.unknown_categories: Counter[tuple[str, str]] = Counter()
        self.adopt((contracts or {}).values())

    @property
    def holding(self) -> bool:
        """Whether examples are held (the worker must not commit past them)."""
        return bool(self._held)

    def held(self) -> int:
        return sum(map(len, self._held.values()))

    def adopt(self, contracts: Iterable[FeatureContract]) -> None:
        """Take ``contracts`` as the ones in force (a newer version replaces an older one)."""
        for contract in contracts:
            name = contract.model_name or ""
            current = self.contracts.get(name)
            if current is not None and current.version >= contract.version:
                continue
            self.contracts[name] = contract
            self._checks[name] = ContractCheck(contract)
            self._inference.pop(name, None)

    def check(self, model_name: str) -> ContractCheck | None:
        """The check of ``model_name``'s contract; None while it has none."""
        return self._checks.get(model_name)

    def prediction(self, prediction: Mapping[str, Any]) -> SchemaViolation | None:
        """Why a prediction's features break its model's contract (None: no contract yet)."""
        check = self._checks.get(prediction["model_name"])
        return None if check is None else check.features(prediction["features"])

    def admit(self, example: dict[str, Any], token: Any = None, now: float = 0.0) -> Verdict:
        """The verdict on one labelled example; a held one is kept here, with ``token`` (what
        the caller needs to store or refuse it later), until :meth:`release`; ``now``, on
        the clock :meth:`inferred` is given, says when."""
        name = example["model_name"]
        check = self._checks.get(name)
        if check is not None:
            return self._verdict(check, example)
        inference = self._inference.get(name)
        if inference is None:
            inference = self._inference[name] = ContractInference(
                name, self.sample, self.minority, self.min_class_share
            )
        inference.add(example["features"], example["label"])
        if name not in self._held:
            self._since[name] = now
        self._held.setdefault(name, []).append((example, token))
        return HOLD

    def _verdict(self, check: ContractCheck, example: Mapping[str, Any]) -> Verdict:
        violation = check.label(example["label"]) or check.features(example["features"])
        if violation is not None:
            return Verdict("refuse", violation)
        if check.knows_categories:
            for feature in check.unknown_categories(example["features"]):
                self.unknown_categories[(example["model_name"], feature)] += 1
        return ADMIT

    def inferred(self, now: float = -math.inf) -> list[FeatureContract]:
        """The contracts ready to be frozen: models held with a full sample that makes one,
        or, ``max_wait_s`` after their first example was held (``now`` is the same clock's),
        with at least ``MIN_SAMPLE`` examples that make one (an app that sends few examples
        before it waits for a model is not kept waiting)."""
        ready = []
        for name in self._held:
            inference = self._inference.get(name)
            if name in self._checks or inference is None:
                continue
            waited = now - self._since.get(name, now) >= self.max_wait_s
            if inference.examples >= self.sample or (waited and inference.examples >= MIN_SAMPLE):
                with contextlib.suppress(ValueError):  # these examples make no contract yet
                    ready.append(inference.freeze())
        return ready

    def release(self) -> list[tuple[dict[str, Any], Any, Verdict]]:
        """Every held example whose model now has a contract (or that waited too long), with
        its token and its verdict, in the order they came; they are no longer held."""
        released = []
        for name in list(self._held):
            check = self._checks.get(name)
            if check is not None:
                released += [(e, t, self._verdict(check, e)) for e, t in self._held.pop(name)]
            elif len(self._held[name]) >= self.max_held:
                refusal = self._no_contract(name)
                released += [(e, t, refusal) for e, t in self._held.pop(name)]
                self._inference.pop(name, None)
        return released

    def _no_contract(self, name: str) -> Verdict:
        try:
            self._inference[name].freeze()
            reason = "its sample was not complete"
        except ValueError as error:
            reason = str(error)
        return Verdict(
            "refuse",
            SchemaViolation(
                "$",
                "no_contract",
                f"model {name} has no contract and none could be inferred from its first "
                f"{self.max_held} examples ({reason}); declare one (driftloop contract register)",
            ),
        )

    def drop_held(self) -> int:
        """Forget every held example (a rebalance: they will be read again); how many."""
        dropped = self.held()
        self._held.clear()
        self._inference.clear()
        self._since.clear()
        return dropped
