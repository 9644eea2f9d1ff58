"""The trainer's MLflow runs: one per fit, tagged with the triggers it answers.

A run is tagged with its trigger when it starts, and with its outcome once the verdict is
recorded. A trigger counts as handled when a run carries it *and* an outcome: a run left
without one (the process died mid-fit) does not count, so the trigger is processed again
after a restart. Trigger ids are free text; runs are searched by a hash of them
(``driftloop.trigger_key``) so that no id can break MLflow's filter syntax.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from dataclasses import dataclass, field

from mlflow import MlflowClient

from driftloop.settings import REPO_ROOT

TRIGGER_ID = "driftloop.trigger_id"
TRIGGER_KEY = "driftloop.trigger_key"
COALESCED = "driftloop.coalesced_keys"
REASON = "driftloop.trigger_reason"
OUTCOME = "driftloop.outcome"
VERDICT = "driftloop.verdict"
CODE_VERSION = "driftloop.code_version"
DEVICE = "driftloop.device"
MODEL_VERSION = "driftloop.model_version"
CONTRACT = "driftloop.contract"  # the contract the rows were checked against: "v2 (declared)"


def trigger_key(trigger_id: str) -> str:
    return hashlib.sha256(trigger_id.encode()).hexdigest()[:32]


@functools.cache
def code_version() -> str:
    """The git commit the trainer runs (``-dirty`` with local changes), or the package version.

    ``DRIFTLOOP_CODE_VERSION`` wins: images built without ``.git`` set it at build time.
    """
    if os.environ.get("DRIFTLOOP_CODE_VERSION"):
        return os.environ["DRIFTLOOP_CODE_VERSION"]
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"driftloop=={version('driftloop')}"
        except PackageNotFoundError:
            return "unknown"


@dataclass(frozen=True)
class HandledTrigger:
    """A trigger some finished run answered."""

    trigger_id: str
    run_id: str
    outcome: str
    model_version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class Lineage:
    """The trainer's experiment on one tracking server.

    Parameters:
        tracking_uri: the MLflow server.
        experiment: the experiment's name (created when missing).
    """

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.experiment = experiment
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id if found else self.client.create_experiment(experiment)
        )

    def handled(self, trigger_id: str) -> HandledTrigger | None:
        """The finished run that answered ``trigger_id`` (leading or coalesced), if any."""
        key = trigger_key(trigger_id)
        for query in (f"tags.`{TRIGGER_KEY}` = '{key}'", f"tags.`{COALESCED}` LIKE '%{key}%'"):
            for run in self.client.search_runs([self.experiment_id], query, max_results=20):
                outcome = run.data.tags.get(OUTCOME)
                if outcome:
                    return HandledTrigger(
                        trigger_id,
                        run.info.run_id,
                        outcome,
                        run.data.tags.get(MODEL_VERSION),
                        {
                            k.removeprefix("holdout_"): v
                            for k, v in run.data.metrics.items()
                            if k.startswith("holdout_")
                        },
                    )
        return None
