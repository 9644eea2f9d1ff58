"""TriggerCoalescer: one fit at a time; what arrives meanwhile becomes at most one follow-up.

A drift episode, a burst of new data and an operator's manual trigger may all ask for a refit
within seconds; each fit reads the whole current window, so one fit after them serves them
all. The coalescer keeps a single *pending* slot: the first trigger to arrive while nothing is
pending leads the follow-up (its drift onset is the earliest, so its window covers the others'
data), later ones are folded into it. A recall (which fits nothing) leads only while no
trigger asking for a fit is pending: the first such trigger takes the lead, and the fit
answers the recall too. Trigger ids already seen are dropped (redelivery after a
restart is caught later, against MLflow's runs), and triggers for another model are ignored.

Example:
    >>> coalescer = TriggerCoalescer("m")
    >>> coalescer.add({"trigger_id": "a", "model_name": "m"})
    'queued'
    >>> refit = coalescer.start()
    >>> coalescer.add({"trigger_id": "b", "model_name": "m"}), coalescer.start()
    ('queued', None)
    >>> coalescer.add({"trigger_id": "c", "model_name": "m"}), coalescer.add({"trigger_id": "a",
    ...     "model_name": "m"})
    ('coalesced', 'duplicate')
    >>> coalescer.finish(refit)
    >>> coalescer.start().trigger_ids
    ('b', 'c')
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

from driftloop.events import is_recall

Admission = Literal["queued", "coalesced", "duplicate", "ignored"]


@dataclass(frozen=True)
class Refit:
    """One fit to run: the trigger that leads it and the ids of those folded into it.

    Parameters:
        trigger: the leading trigger event.
        coalesced: ids of later triggers this fit answers too.
    """

    trigger: dict[str, Any]
    coalesced: tuple[str, ...] = field(default_factory=tuple)

    @property
    def trigger_id(self) -> str:
        return str(self.trigger["trigger_id"])

    @property
    def trigger_ids(self) -> tuple[str, ...]:
        return (self.trigger_id, *self.coalesced)

    def folding(self, trigger: dict[str, Any]) -> Refit:
        return Refit(self.trigger, (*self.coalesced, str(trigger["trigger_id"])))

    def without(self, ids: set[str]) -> Refit | None:
        """This refit less the trigger ids in ``ids`` (handled already); None if none is left."""
        left = [i for i in self.trigger_ids if i not in ids]
        if not left:
            return None
        if self.trigger_id not in ids:
            return Refit(self.trigger, tuple(left[1:]))
        # The leader was handled: the next id leads, with the leader's evidence.
        return Refit(self.trigger | {"trigger_id": left[0]}, tuple(left[1:]))


class TriggerCoalescer:
    """The trainer's queue of refits: at most one running and one pending.

    Parameters:
        model_name: the model this trainer refits; triggers for others are ignored.
        remember: how many finished trigger ids are kept to drop duplicates.
    """

    def __init__(self, model_name: str, remember: int = 10_000) -> None:
        self.model_name = model_name
        self.remember = remember
        self.running: Refit | None = None
        self.pending: Refit | None = None
        self._finished: OrderedDict[str, None] = OrderedDict()

    @property
    def busy(self) -> bool:
        return self.running is not None

    def add(self, trigger: dict[str, Any]) -> Admission:
        """Take a trigger in; says what became of it."""
        if trigger.get("model_name") != self.model_name:
            return "ignored"
        trigger_id = str(trigger["trigger_id"])
        queued = (self.running.trigger_ids if self.running else ()) + (
            self.pending.trigger_ids if self.pending else ()
        )
        if trigger_id in self._finished or trigger_id in queued:
            return "duplicate"
        if self.pending is None:
            self.pending = Refit(trigger)
            return "queued"
        if is_recall(self.pending.trigger) and not is_recall(trigger):
            self.pending = Refit(trigger, self.pending.trigger_ids)
        else:
            self.pending = self.pending.folding(trigger)
        return "coalesced"

    def start(self) -> Refit | None:
        """The pending refit, now running; None while one runs or when none is pending."""
        if self.running is not None or self.pending is None:
            return None
        self.running, self.pending = self.pending, None
        return self.running

    def finish(self, refit: Refit) -> None:
        """``refit`` has its verdict: its ids are remembered as handled."""
        for trigger_id in refit.trigger_ids:
            self._finished[trigger_id] = None
        while len(self._finished) > self.remember:
            self._finished.popitem(last=False)
        if self.running is refit:
            self.running = None

    def abandon(self, refit: Refit) -> None:
        """``refit`` stopped without a verdict (shutdown): nothing is remembered."""
        if self.running is refit:
            self.running = None
