"""trainer: time from a trigger to a promoted model, by stage, against a scikit-learn fit.

In one run, against a private MLflow server (SQLite, local artifacts): a synthetic tabular
stream (scikit-learn's ``make_classification``: 10 features, 3 classes, one feature turned
into a 5-level categorical) is written to a fresh example store, N examples one second apart;
then the trainer answers one trigger with its real pipeline (``Trainer.train``: window load,
Keras fit to early stopping within a time bound, evaluation against the naive baseline,
MLflow logging, registration and promotion). The baseline, in the same run on the same
window: scikit-learn's ``LogisticRegression`` (lbfgs) in a pipeline with the same
preprocessing (standardised numbers, one-hot categories), fitted on the same training rows
and scored on the same holdout. Kafka is not involved: the trigger is handed over directly.

    python -m bench.trainer_fit [--sizes 10000,100000] [--max-fit-s 90] [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from bench.report import write
from driftloop.events import new_event
from driftloop.services.trainer.coalesce import Refit
from driftloop.services.trainer.fit import device
from driftloop.services.trainer.gate import classification_scores
from driftloop.services.trainer.settings import TrainerSettings
from driftloop.services.trainer.trainer import NoContracts, Trainer
from driftloop.services.trainer.window import TrainingWindow
from driftloop.stack import MlflowServer
from driftloop.stack.process import free_port
from driftloop.stack.settings import LocalStackSettings
from driftloop.store import ExampleStore

START = datetime(2026, 11, 1, tzinfo=UTC)
STAGES = ("window", "fit", "evaluation", "logging", "registration")


def stream(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` labelled examples as ingest stores them."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=n, n_features=10, n_informative=6, n_redundant=2, n_classes=3,
        class_sep=1.0, flip_y=0.02, random_state=seed,
    )  # fmt: skip
    # Feature 0 becomes a categorical: its quintile, as a word.
    edges = np.quantile(x[:, 0], [0.2, 0.4, 0.6, 0.8])
    levels = np.array(["very low", "low", "mid", "high", "very high"])[
        np.searchsorted(edges, x[:, 0])
    ]
    rows = []
    for i in range(n):
        time_ = (START + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        features: dict[str, Any] = {f"x{j}": float(x[i, j]) for j in range(1, 10)}
        features["level"] = str(levels[i])
        rows.append(
            {
                "schema_version": 1, "event_id": f"e{i}", "event_time": time_,
                "request_id": f"r{i}", "model_name": "bench", "model_version": "0",
                "features": features, "prediction": 0, "label": int(y[i]),
                "prediction_time": time_, "label_time": time_,
            }
        )  # fmt: skip
    return rows


def baseline_fit(window: TrainingWindow) -> dict[str, float]:
    """LogisticRegression on the same rows with the same preprocessing; fit time and scores."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = [c for c in window.train.columns if c.startswith("feature.")]
    categorical = ["feature.level"]
    numeric = [c for c in columns if c not in categorical]
    model = make_pipeline(
        ColumnTransformer(
            [("numbers", StandardScaler(), numeric),
             ("categories", OneHotEncoder(handle_unknown="ignore"), categorical)]
        ),
        LogisticRegression(max_iter=1000),
    )  # fmt: skip
    started = time.perf_counter()
    model.fit(
        window.train[columns],
        window.train["label"],
        logisticregression__sample_weight=window.weights,
    )
    seconds = time.perf_counter() - started
    probabilities = model.predict_proba(window.holdout[columns])
    scores = classification_scores(
        window.holdout["label"].to_numpy(dtype=object), probabilities, model.classes_.tolist()
    )
    return {"fit_s": seconds, "examples_per_s": len(window.train) / seconds, **scores}


def measure(base: TrainerSettings, n: int, state: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    tag = uuid.uuid4().hex[:6]
    settings = base.model_copy(
        update={
            "model_name": f"bench-{n}-{tag}",
            "trainer_experiment": f"bench-{n}-{tag}",
            "store_uri": str(state / f"store-{n}-{tag}"),
            "trainer_window_size": n,
        }
    )
    rows = stream(n)
    store = ExampleStore(settings.store_uri, dedupe_horizon_s=0)
    started = time.perf_counter()
    for first in range(0, n, 5000):  # batches the size ingest writes
        store.write(rows[first : first + 5000])
    store_s = time.perf_counter() - started
    trainer = Trainer(settings, contracts=NoContracts())  # no broker in this benchmark
    trigger = new_event(
        trigger_id=f"bench-{tag}", model_name=settings.model_name, model_version=None,
        reason="manual", evidence={"bench": n},
    )  # fmt: skip
    outcome = trainer.train(Refit(trigger))
    assert outcome.outcome == "promoted", outcome.reason
    fit = outcome.fit
    assert fit is not None
    window = trainer.window()
    baseline = baseline_fit(window)
    ours = {
        "examples": n,
        "train_rows": len(window.train),
        **{f"{stage}_s": round(outcome.timings.get(stage, 0.0), 2) for stage in STAGES},
        "trigger_to_promoted_s": round(outcome.duration_s, 2),
        "epochs": fit.epochs,
        "stopped_by": fit.stopped_by,
        "fit_examples_per_s": round(fit.examples_per_second),
        "accuracy": round(outcome.metrics["accuracy"], 4),
        "macro_f1": round(outcome.metrics["macro_f1"], 4),
        "log_loss": round(outcome.metrics["log_loss"], 4),
        "store_write_s": round(store_s, 2),
    }
    theirs = {
        "examples": n,
        "fit_s": round(baseline["fit_s"], 3),
        "examples_per_s": round(baseline["examples_per_s"]),
        "accuracy": round(baseline["accuracy"], 4),
        "macro_f1": round(baseline["macro_f1"], 4),
        "log_loss": round(baseline["log_loss"], 4),
    }
    return ours, theirs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="window sizes, comma-separated")
    parser.add_argument("--max-fit-s", type=float, default=90.0, help="the fit's time bound")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2k and 10k, 20 s")
    args = parser.parse_args(argv)
    sizes = [2000, 10_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    max_fit_s = 20.0 if args.quick else args.max_fit_s

    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder)
        stack = LocalStackSettings(state_dir=state, mlflow_port=free_port())
        settings = TrainerSettings(
            state_dir=state,
            mlflow_tracking_uri=stack.mlflow_tracking_uri,
            trainer_window_policy="last_n",
            trainer_history_share=0.0,
            trainer_min_examples=100,
            trainer_max_fit_s=max_fit_s,
        )
        server = MlflowServer(stack)
        server.up()
        try:
            for n in sizes:
                mine, baseline = measure(settings, n, state)
                ours.append(mine)
                theirs.append(baseline)
        finally:
            server.down()

    where = device()
    rows = [{"model": "trainer (Keras MLP 64-32, early stopping)", **r} for r in ours]
    baseline_rows = [{"model": "sklearn LogisticRegression (lbfgs)", **r} for r in theirs]
    ratios = {}
    for mine, baseline in zip(ours, theirs, strict=True):
        n = mine["examples"]
        ratios[f"{n}: trainer fit / LogisticRegression fit (time)"] = (
            mine["fit_s"] / baseline["fit_s"]
        )
        ratios[f"{n}: trainer trigger-to-promoted / LogisticRegression fit"] = (
            mine["trigger_to_promoted_s"] / baseline["fit_s"]
        )
        ratios[f"{n}: trainer accuracy / LogisticRegression accuracy"] = (
            mine["accuracy"] / baseline["accuracy"]
        )
    gpu_note = (
        "No GPU on this machine: TensorFlow saw none, every fit ran on the CPU."
        if where == "CPU"
        else f"Fits ran on {where} with mixed precision."
    )
    holdout, validation = settings.trainer_holdout_fraction, settings.trainer_validation_fraction
    train = 1 - holdout - validation
    write(
        "trainer_fit",
        [
            {
                "model": r["model"],
                "examples": r["examples"],
                "window_s": r["window_s"],
                "fit_s": r["fit_s"],
                "evaluation_s": r["evaluation_s"],
                "logging_s": r["logging_s"],
                "registration_s": r["registration_s"],
                "total_s": r["trigger_to_promoted_s"],
                "epochs": r["epochs"],
                "stopped_by": r["stopped_by"],
                "fit_ex_per_s": r["fit_examples_per_s"],
                "accuracy": r["accuracy"],
                "macro_f1": r["macro_f1"],
            }
            for r in rows
        ]
        + [
            {
                "model": r["model"],
                "examples": r["examples"],
                "window_s": "-",
                "fit_s": r["fit_s"],
                "evaluation_s": "-",
                "logging_s": "-",
                "registration_s": "-",
                "total_s": r["fit_s"],
                "epochs": "-",
                "stopped_by": "-",
                "fit_ex_per_s": r["examples_per_s"],
                "accuracy": r["accuracy"],
                "macro_f1": r["macro_f1"],
            }
            for r in baseline_rows
        ],
        baseline="scikit-learn LogisticRegression (lbfgs, same preprocessing) on the same window",
        ratios=ratios,
        packages=("tensorflow", "keras", "mlflow", "scikit-learn", "pyarrow"),
        notes=(
            f"{gpu_note} make_classification stream (10 features, one categorical, 3 classes), "
            f"window = all N examples: {train:.0%} train, {validation:.0%} validation (early "
            f"stopping, patience 8), {holdout:.0%} holdout; fit bounded at {max_fit_s:.0f} s; "
            "fit examples/s = train rows x epochs / fit seconds (LogisticRegression: train "
            "rows / fit seconds). MLflow server on the same machine (SQLite)."
        ),
        extra={"device": where},
    )


if __name__ == "__main__":
    main()
