"""TriggerPolicy: when drift verdicts and data arrival become a retraining trigger.

Windows are noisy and drift lasts: without care, one shift in the data would fire a trigger
per window. The policy turns verdicts into *episodes*:

- **hysteresis**: ``open_after`` drifted windows in a row open an episode, ``close_after``
  clean windows in a row close it (a concept alarm from the error stream opens one at once:
  its detector has already accumulated the evidence); a promotion closes it too, and ends
  the cooldown after ``retry_s``;
- **one trigger per episode**, and none within ``cooldown_s`` (event time) of the last
  trigger: an episode that opens during the cooldown fires when it ends, if still open;
- **data arrival**: a trigger after ``data_arrival_examples`` labelled examples since the
  last promotion (or the last data-arrival trigger), whatever the drift;
- **retry**: a fit the gate rejected (or that failed) re-arms the open episode: its next
  alarm fires again once ``retry_s`` have passed, cooldown or not. Without it a rejected
  candidate left the model degraded, with no trigger, until the episode closed.

Example:
    >>> policy = TriggerPolicy(open_after=2, close_after=2, cooldown_s=0)
    >>> [policy.window(drifted, t) for t, drifted in enumerate([1, 1, 1, 0, 0, 1, 1])]
    [False, True, False, False, False, False, True]
"""

from __future__ import annotations


class TriggerPolicy:
    """Hysteresis, cooldown and data arrival for one model.

    Parameters:
        open_after: drifted windows in a row that open an episode.
        close_after: clean windows in a row that close it.
        cooldown_s: least event time between two drift triggers.
        data_arrival_examples: labelled examples since the last promotion that fire a
            ``data_arrival`` trigger; 0 turns it off.
        retry_s: least event time between a rejected or failed fit and the next trigger.
    """

    def __init__(
        self,
        open_after: int = 2,
        close_after: int = 3,
        cooldown_s: float = 600.0,
        data_arrival_examples: int = 0,
        retry_s: float = 60.0,
    ) -> None:
        if open_after < 1 or close_after < 1:
            raise ValueError("open_after and close_after must be at least 1")
        self.open_after = open_after
        self.close_after = close_after
        self.cooldown_s = cooldown_s
        self.data_arrival_examples = data_arrival_examples
        self.retry_s = retry_s
        self._retry_at: float | None = None  # a rejected fit: the next trigger not before
        self.episode_open = False
        self.episodes = 0
        self._fired = False  # this episode's trigger went out
        self._drifted_run = 0
        self._clean_run = 0
        self._last_trigger: float | None = None
        self.examples_since_promotion = 0

    def cooling(self, time: float) -> bool:
        if self._retry_at is not None:
            return time < self._retry_at
        return self._last_trigger is not None and time - self._last_trigger < self.cooldown_s

    def window(self, drifted: bool, time: float) -> bool:
        """One window's verdict at event time ``time``; True when a drift trigger fires now."""
        if drifted:
            self._drifted_run += 1
            self._clean_run = 0
            if not self.episode_open and self._drifted_run >= self.open_after:
                self._open()
        else:
            self._clean_run += 1
            self._drifted_run = 0
            if self.episode_open and self._clean_run >= self.close_after:
                self.episode_open = False
        return self._fire(time)

    def concept_alarm(self, time: float) -> bool:
        """The error stream's detector fired; True when a drift trigger fires now."""
        self._clean_run = 0
        if not self.episode_open:
            self._open()
        return self._fire(time)

    def labelled(self, examples: int = 1) -> bool:
        """``examples`` more labelled examples arrived; True when a data-arrival trigger fires."""
        self.examples_since_promotion += examples
        if self.data_arrival_examples and (
            self.examples_since_promotion >= self.data_arrival_examples
        ):
            self.examples_since_promotion = 0
            return True
        return False

    def promoted(self, time: float | None = None) -> None:
        """A new version serves (at event time ``time``): the episode that asked for it is
        over, the count restarts, and the new version's first trigger waits ``retry_s``
        rather than the rest of the cooldown: a new concept may follow soon after a
        promotion, and the old version's alarms no longer count (see the monitor)."""
        self.examples_since_promotion = 0
        self.episode_open = False
        self._drifted_run = self._clean_run = 0
        self._retry_at = None if time is None else time + self.retry_s

    def rejected(self, time: float) -> None:
        """The fit a trigger asked for was rejected or failed, at event time ``time``: the
        episode's next alarm fires again after ``retry_s`` (instead of the cooldown)."""
        if self.episode_open and self._fired:
            self._fired = False
            self._retry_at = time + self.retry_s

    def _open(self) -> None:
        self.episode_open = True
        self._fired = False
        self.episodes += 1

    def _fire(self, time: float) -> bool:
        if self.episode_open and not self._fired and not self.cooling(time):
            self._fired = True
            self._last_trigger = time
            self._retry_at = None
            return True
        return False
