"""trainer's settings: the shared ones plus its own, all from ``DRIFTLOOP_*`` variables."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from driftloop.settings import Settings


class TrainerSettings(Settings):
    trainer_port: int = Field(
        8084, ge=1, le=65535, description="trainer's HTTP port (/metrics, /health/*)."
    )
    trainer_group_id: str = Field("driftloop-trainer", description="trainer's consumer group.")
    trainer_session_timeout_ms: int = Field(
        45_000,
        ge=6000,
        description="How soon the consumer group gives a dead trainer's triggers to another "
        "(or to its restart); fits do not count against it, the loop keeps polling.",
    )
    trainer_experiment: str = Field(
        "",
        description="MLflow experiment of the fits; empty means `driftloop/<MODEL_NAME>`.",
    )
    trainer_task: Literal["auto", "classification", "regression"] = Field(
        "auto",
        description="The model's contract decides; without one, `auto` decides from the "
        "label: strings, booleans or few integers (up to `TRAINER_MAX_CLASSES`) mean "
        "classification, other numbers regression. A task set must be the contract's.",
    )
    trainer_max_classes: int = Field(
        20,
        ge=2,
        description="Most distinct integer labels `auto` still calls classes (no contract).",
    )
    trainer_features: str = Field(
        "",
        description="Features to train on, comma-separated, `name` or `name:kind` (numeric, "
        "categorical, boolean: then it must be the contract's); empty trains on all the "
        "contract's features (without a contract, inferred from the examples: numbers "
        "numeric, strings categorical, booleans boolean).",
    )
    trainer_builder: str = Field(
        "",
        description="`module:function` building the model: called with the ModelCard and the "
        "training frame, returns a compiled Keras model obeying the card's contract; empty "
        "means the built-in one.",
    )
    trainer_min_examples: int = Field(
        200, ge=10, description="Fewest labelled examples a window needs before a fit."
    )
    trainer_bootstrap_poll_s: float = Field(
        30.0,
        gt=0,
        description="While there is no champion, how often the store is checked for enough "
        "examples to train the first model.",
    )
    trainer_window_policy: Literal["last_n", "last_t", "since_drift"] = Field(
        "since_drift",
        description="Recent part of the window: the last `TRAINER_WINDOW_SIZE` examples, the "
        "last `TRAINER_WINDOW_SECONDS` of event time, or everything since the drift onset the "
        "trigger names (`last_n` when it names none).",
    )
    trainer_window_size: int = Field(
        20_000, ge=10, description="Examples in a `last_n` window (and the fallback)."
    )
    trainer_window_seconds: float = Field(
        7 * 86_400, gt=0, description="Event-time span of a `last_t` window."
    )
    trainer_window_max_examples: int = Field(
        200_000, ge=10, description="Most recent examples any window keeps."
    )
    trainer_history_share: float = Field(
        0.0,
        ge=0,
        description="Older examples added before the recent part, as a multiple of its size.",
    )
    trainer_history_weight: float = Field(
        0.3, ge=0, le=1, description="Sample weight of the older examples (recent ones: 1)."
    )
    trainer_holdout_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="Most recent share of the recent part, held out."
    )
    trainer_validation_fraction: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="Share of the recent part just before the holdout, for early stopping.",
    )
    trainer_max_epochs: int = Field(
        200, ge=1, description="Epoch cap; early stopping ends most fits."
    )
    trainer_patience: int = Field(
        12, ge=1, description="Epochs without validation improvement before stopping."
    )
    trainer_max_fit_s: float = Field(
        600.0, gt=0, description="Wall-clock bound of one fit; the best weights so far are kept."
    )
    trainer_batch_size: int = Field(
        0,
        ge=0,
        description="Examples per gradient step; 0 follows the window: about 50 steps an "
        "epoch, between 32 and 256.",
    )
    trainer_learning_rate: float = Field(
        1e-2, gt=0, description="Adam's learning rate at the start of a fit."
    )
    trainer_plateau_patience: int = Field(
        4,
        ge=0,
        description="Epochs without validation improvement before the learning rate falls "
        "(by `TRAINER_PLATEAU_FACTOR`); 0 keeps it constant.",
    )
    trainer_plateau_factor: float = Field(
        0.3, gt=0, lt=1, description="What the learning rate is multiplied by when it falls."
    )
    trainer_hidden_units: str = Field(
        "64,32", description="Hidden layer widths of the built-in model, comma-separated."
    )
    trainer_seed: int = Field(42, description="Seed of weights, shuffling and sampling.")
    trainer_warm_start: bool = Field(
        False,
        description="Start from the champion's weights when its features and classes match.",
    )
    trainer_recall_versions: int = Field(
        3,
        ge=0,
        description="Earlier champions, newest first, a recall trigger scores on the examples "
        "since the drift's onset; 0 answers recalls with `skipped`.",
    )
    trainer_recall_tolerance: float = Field(
        1.0,
        ge=0,
        description="How much worse than on its own holdout (relative to that error) an earlier "
        "champion may do since the onset and still be recalled.",
    )
    trainer_gate_metric: str = Field(
        "",
        description="Metric the gate compares: empty means `macro_f1` (classification) or "
        "`rmse` (regression); also `accuracy`, `log_loss`, `mae`.",
    )
    trainer_gate_margin: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="Least relative reduction of the error (1 - score, or the loss) a candidate "
        "needs over the champion, or the naive baseline for the first model.",
    )

    # Live evidence (services/trainer/live.py): the online learner, rollback, challengers.
    trainer_live_group_id: str = Field(
        "driftloop-trainer-live",
        description="Consumer group of the trainer's live-evidence loop (labelled examples and "
        "model updates); a new group starts at the topics' ends (the warm-up covers before).",
    )
    trainer_online_learner: bool = Field(
        True,
        description="Run the online learner beside a classification champion and let it answer "
        "while it is evidently better (off: rollback and challengers still work).",
    )
    trainer_online_snapshot_s: float = Field(
        1.0,
        ge=0.01,
        description="While the online model answers, at most one snapshot of it (and one "
        "online-model event) per this many seconds, and further apart when writing one takes "
        "over a fifth of that; none while the champion answers.",
    )
    trainer_online_windows: str = Field(
        "500,2000",
        pattern=r"^ *[1-9][0-9]* *(, *[1-9][0-9]* *)*$",
        description="Windows, in labelled examples, the champion-vs-online evidence is kept "
        "over, comma-separated: a short one sees an abrupt change soon, a long one a steady "
        "advantage.",
    )
    trainer_online_switch_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Sign-test level (over all windows) at which the online model takes over.",
    )
    trainer_online_return_alpha: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="The champion takes back over once the online model's p-value is at least "
        "this in every window; above `TRAINER_ONLINE_SWITCH_ALPHA` (hysteresis).",
    )
    trainer_online_min_discordant: int = Field(
        20,
        ge=1,
        description="Discordant pairs (only one of two models right) needed before any live "
        "verdict: a switch, a rollback or a challenger's early rejection.",
    )
    trainer_online_warmup_examples: int = Field(
        2000,
        ge=0,
        description="Most recent labelled examples in the store the online learner learns at "
        "start, so that a restarted trainer does not start from nothing; 0: none.",
    )
    trainer_rollback_probation: int = Field(
        2000,
        ge=0,
        description="Labelled examples after a promotion during which the new champion is "
        "rolled back when the previous one, in shadow, is evidently better; 0: never.",
    )
    trainer_rollback_alpha: float = Field(
        0.001,
        gt=0,
        lt=1,
        description="Sign-test level of a rollback, and of a challenger's rejection.",
    )
    trainer_promotion_live_examples: int = Field(
        0,
        ge=0,
        description="When > 0, a candidate that passes the gate becomes the `challenger`, "
        "scored in shadow, and is promoted after this many paired live examples if it is not "
        "worse than the champion (rejected sooner if evidently worse); 0: promoted at once.",
    )

    @model_validator(mode="after")
    def _levels_leave_room(self) -> Self:
        if self.trainer_online_switch_alpha >= self.trainer_online_return_alpha:
            raise ValueError(
                "trainer_online_switch_alpha must be below trainer_online_return_alpha"
            )
        return self

    @property
    def online_windows(self) -> tuple[int, ...]:
        """``trainer_online_windows`` as numbers."""
        return tuple(int(part) for part in self.trainer_online_windows.split(","))
