"""Promotion: how a version that passed the offline gate becomes the champion, at once or after
live evidence, and the model-update events that announce an alias moving.

With ``trainer_promotion_live_examples`` at 0 a candidate the gate (or a recall) chose is
promoted at once, and so is the first model (there is nothing to judge it against live).
Above 0 it is *offered*: it gets the ``challenger`` alias, serve scores it in
shadow, and the live-evidence loop (:mod:`driftloop.services.trainer.live`) promotes it after that
many paired examples unless the champion was evidently better (then it is withdrawn). Both ways
end in :func:`promote`, and every model update is built by :func:`model_update_event`.

The versions' ``driftloop.outcome`` tag follows: ``challenger`` while a fresh candidate waits,
then ``promoted`` or ``rejected``. An earlier champion offered again by a recall keeps its
``promoted`` tag, so that a later recall may still bring it back.

Example:
    >>> event = model_update_event("m", "4", "run-4", previous="3", metrics={"accuracy": 0.9})
    >>> event["alias"], event["reason"], event["previous_version"]
    ('champion', 'promotion', '3')
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from driftloop.events import new_event
from driftloop.registry import CHALLENGER, CHAMPION, ModelRegistry
from driftloop.services.trainer import lineage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offer:
    """What became of a version offered for promotion.

    Parameters:
        alias: the alias it got: ``champion`` (promoted at once) or ``challenger``.
        previous: the version that held that alias before, if any.
    """

    alias: str
    previous: str | None


def offer(registry: ModelRegistry, name: str, version: str, live_examples: int) -> Offer:
    """Promote ``version`` now, or, with ``live_examples`` > 0 and a champion to be judged
    against, make it the challenger (a challenger it replaces is withdrawn)."""
    if live_examples <= 0 or registry.champion(name) is None:
        return Offer(CHAMPION, promote(registry, name, version))
    before = registry.version_of(name, CHALLENGER)
    if before == version:
        return Offer(CHALLENGER, before)
    if _outcome(registry, name, version) != "promoted":  # a recalled champion keeps its tag
        registry.client.set_model_version_tag(name, version, lineage.OUTCOME, CHALLENGER)
    registry.client.set_registered_model_alias(name, CHALLENGER, version)
    if before is not None:
        log.info("challenger %s replaced by %s before live evidence decided", before, version)
        _retire(registry, name, before)
    return Offer(CHALLENGER, before)


def promote(registry: ModelRegistry, name: str, version: str) -> str | None:
    """Make ``version`` the champion (the old one keeps ``previous``); its outcome tag says
    ``promoted`` and the ``challenger`` alias, if it named it, goes. Returns the champion
    before (None for the first model)."""
    registry.client.set_model_version_tag(name, version, lineage.OUTCOME, "promoted")
    previous = registry.promote(name, version)
    if registry.version_of(name, CHALLENGER) == version:
        registry.client.delete_registered_model_alias(name, CHALLENGER)
    return previous


def withdraw(registry: ModelRegistry, name: str, version: str) -> bool:
    """Remove ``version``'s ``challenger`` alias (a fresh candidate is tagged ``rejected``);
    False when the alias names another version by now (nothing is changed)."""
    if registry.version_of(name, CHALLENGER) != version:
        return False
    registry.client.delete_registered_model_alias(name, CHALLENGER)
    _retire(registry, name, version)
    return True


def _retire(registry: ModelRegistry, name: str, version: str) -> None:
    if _outcome(registry, name, version) == CHALLENGER:
        registry.client.set_model_version_tag(name, version, lineage.OUTCOME, "rejected")


def _outcome(registry: ModelRegistry, name: str, version: str) -> str | None:
    tags = registry.client.get_model_version(name, version).tags or {}
    return tags.get(lineage.OUTCOME)


def model_update_event(
    name: str,
    version: str,
    run_id: str,
    *,
    previous: str | None,
    metrics: Mapping[str, float],
    trigger_id: str | None = None,
    alias: str = CHAMPION,
    reason: Literal["promotion", "rollback"] = "promotion",
    evidence: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The MODEL_UPDATE event: ``alias`` now names ``version`` (``previous`` before it).

    Parameters:
        name: the registered model.
        version: the version the alias names now.
        run_id: the run that logged it.
        previous: the version the alias named before.
        metrics: its holdout metrics.
        trigger_id: the trigger that led to its fit; None for a rollback or a manual move.
        alias: ``champion``, or ``challenger`` for a candidate awaiting live evidence.
        reason: ``promotion`` or ``rollback``.
        evidence: the live evidence it moved on, if any.
    """
    event = new_event(
        model_name=name,
        model_version=version,
        run_id=run_id,
        trigger_id=trigger_id,
        alias=alias,
        previous_version=previous,
        metrics=dict(metrics),
        reason=reason,
    )
    if evidence:
        event["evidence"] = {k: float(v) for k, v in evidence.items()}
    return event


def registered_update(
    registry: ModelRegistry,
    name: str,
    version: str,
    *,
    previous: str | None,
    reason: Literal["promotion", "rollback"],
    evidence: Mapping[str, float] | None = None,
    with_trigger: bool = False,
) -> dict[str, Any]:
    """:func:`model_update_event` for a registered ``version``, its run and holdout metrics
    read from the registry; ``with_trigger`` names the trigger its fit answered."""
    run_id = registry.run_id(name, version)
    data = registry.client.get_run(run_id).data
    return model_update_event(
        name,
        version,
        run_id,
        previous=previous,
        metrics={
            k.removeprefix("holdout_"): v
            for k, v in data.metrics.items()
            if k.startswith("holdout_")
        },
        trigger_id=data.tags.get(lineage.TRIGGER_ID) if with_trigger else None,
        reason=reason,
        evidence=evidence,
    )
