"""The MLflow model registry as the services use it: aliases, model cards and references.

The registry is the only place services meet besides the topics. A version's
:class:`~driftloop.model_card.ModelCard` and :class:`~driftloop.reference.ReferenceSketch` are
JSON artifacts of the run that registered it, under ``driftloop/``; the ``champion`` alias names
the version that serves, ``previous`` the one it replaced (rollback moves ``champion`` back).

Example:
    >>> registry = ModelRegistry("http://127.0.0.1:5000")  # doctest: +SKIP
    >>> registry.champion("driftloop-model")  # doctest: +SKIP
    '3'
    >>> registry.model_card("driftloop-model", "3").task  # doctest: +SKIP
    'classification'
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)
from mlflow.types import ColSpec, Schema, TensorSpec

from driftloop.errors import RegistryError
from driftloop.model_card import ModelCard
from driftloop.reference import OTHER, ReferenceSketch

CHAMPION = "champion"
PREVIOUS = "previous"
# A candidate that passed the offline gate and waits, in shadow, for live evidence.
CHALLENGER = "challenger"
MODEL_CARD_PATH = "driftloop/model_card.json"
REFERENCE_PATH = "driftloop/reference.json"


def model_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def _missing(error: MlflowException) -> bool:
    # A missing model answers RESOURCE_DOES_NOT_EXIST; a missing alias of an existing model
    # answers INVALID_PARAMETER_VALUE "... alias champion not found".
    if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
        return True
    return error.error_code == ErrorCode.Name(INVALID_PARAMETER_VALUE) and "not found" in str(error)


class ModelRegistry:
    """Reads and moves aliases and reads model cards, for one tracking server.

    Parameters:
        tracking_uri: the MLflow tracking server (its registry is the model registry).
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def version_of(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None when the model or the alias does not exist."""
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as error:
            if _missing(error):
                return None
            raise

    def champion(self, name: str) -> str | None:
        return self.version_of(name, CHAMPION)

    def run_id(self, name: str, version: str) -> str:
        return str(self.client.get_model_version(name, version).run_id)

    def model_card(self, name: str, version: str) -> ModelCard:
        return ModelCard.model_validate(self._load(name, version, MODEL_CARD_PATH))

    def reference(self, name: str, version: str) -> ReferenceSketch:
        return ReferenceSketch.model_validate(self._load(name, version, REFERENCE_PATH))

    # --- moving aliases --------------------------------------------------------------------

    def promote(self, name: str, version: str) -> str | None:
        """Point ``champion`` at ``version``; the old champion keeps ``previous``.

        Returns the version that was champion before (None for the first model). Promoting
        the champion again changes nothing.
        """
        before = self.champion(name)
        if before == version:
            return before
        # `previous` first: a crash between the two moves leaves the old champion serving.
        if before is not None:
            self.client.set_registered_model_alias(name, PREVIOUS, before)
        self.client.set_registered_model_alias(name, CHAMPION, version)
        return before

    def rollback(self, name: str) -> tuple[str, str]:
        """Move ``champion`` back to ``previous``; returns ``(new champion, rolled-back one)``.

        ``previous`` is removed afterwards, so a second rollback cannot flip back to the version
        just rolled back; that version keeps the tag ``driftloop.rolled_back``.
        """
        current, previous = self.champion(name), self.version_of(name, PREVIOUS)
        if current is None or previous is None:
            raise RegistryError(
                f"{name} has no {'champion' if current is None else 'previous'} version to "
                "roll back from"
            )
        self.client.set_registered_model_alias(name, CHAMPION, previous)
        self.client.delete_registered_model_alias(name, PREVIOUS)
        self.client.set_model_version_tag(name, current, "driftloop.rolled_back", "true")
        return previous, current

    # --- listing -----------------------------------------------------------------------------

    def versions(self, name: str, limit: int = 50, runs: bool = True) -> list[ModelVersionInfo]:
        """The newest ``limit`` versions of ``name``, newest first, with their run's metrics
        and ``driftloop.*`` tags (``runs=False``: the versions' own tags only, one request)."""
        try:
            found = self.client.search_model_versions(
                f"name = '{name}'", max_results=limit, order_by=["version_number DESC"]
            )
        except MlflowException as error:
            if _missing(error):
                return []
            raise
        holders: dict[str, list[str]] = {}
        with contextlib.suppress(MlflowException):
            for alias, number in self.client.get_registered_model(name).aliases.items():
                holders.setdefault(str(number), []).append(alias)
        infos = []
        for item in found:
            metrics: dict[str, float] = {}
            run_tags: dict[str, str] = {}
            if item.run_id and runs:
                with contextlib.suppress(MlflowException):
                    run = self.client.get_run(item.run_id)
                    metrics, run_tags = dict(run.data.metrics), dict(run.data.tags)
            infos.append(
                ModelVersionInfo(
                    version=str(item.version),
                    run_id=item.run_id,
                    aliases=sorted(holders.get(str(item.version), [])),
                    created=int(item.creation_timestamp or 0),
                    tags=dict(item.tags or {})
                    | {k: v for k, v in run_tags.items() if k.startswith("driftloop.")},
                    metrics=metrics,
                )
            )
        return infos

    def _load(self, name: str, version: str, path: str) -> dict:
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(
                run_id=self.run_id(name, version),
                artifact_path=path,
                dst_path=folder,
                tracking_uri=self.tracking_uri,
            )
            return dict(json.loads(Path(local).read_text()))


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version as ``driftloop models`` lists it.

    Parameters:
        version: the registry's version number.
        run_id: the MLflow run that logged it.
        aliases: the aliases that point at it (``champion``, ``previous``).
        created: registration time, milliseconds since the epoch.
        tags: the version's tags and its run's ``driftloop.*`` tags (trigger, outcome...).
        metrics: its run's metrics (``holdout_*`` for the candidate, ``champion_*``...).
    """

    version: str
    run_id: str | None
    aliases: list[str] = field(default_factory=list)
    created: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


def log_model_card(card: ModelCard, reference: ReferenceSketch) -> None:
    """Save ``card`` and ``reference`` as artifacts of the active MLflow run."""
    mlflow.log_dict(card.model_dump(mode="json"), MODEL_CARD_PATH)
    mlflow.log_dict(reference.model_dump(mode="json"), REFERENCE_PATH)


def pip_requirements() -> list[str]:
    """What a served copy of the model needs, pinned to what trained it.

    Given explicitly: MLflow's log_model spent about 9 s inferring them, about 1 s with them
    given (MLflow 3.17.2, measured on this project's machines).
    """
    pins = []
    for package in ("tensorflow-cpu", "tensorflow", "keras"):
        with contextlib.suppress(PackageNotFoundError):
            pins.append(f"{package}=={version(package)}")
    return pins


def model_signature(card: ModelCard) -> ModelSignature:
    """The MLflow signature of a model built to ``card``'s contract (see
    :mod:`driftloop.model_card`): one ``(batch, 1)`` tensor per feature, named after it,
    float32 for a numeric or boolean feature and a string for a categorical one; out,
    ``(batch, classes)`` class probabilities, or ``(batch, 1)`` values for regression.

    Given, not inferred: MLflow would infer it by running the model.

    Example:
        >>> from driftloop.model_card import FeatureSpec
        >>> card = ModelCard(task="classification", classes=["no", "yes"],
        ...                  features=[FeatureSpec(name="age"),
        ...                            FeatureSpec(name="region", kind="categorical")])
        >>> signature = model_signature(card)
        >>> signature.inputs.input_names(), signature.inputs.input_types()
        (['age', 'region'], [dtype('float32'), dtype('<U')])
        >>> signature.outputs.inputs[0].shape
        (-1, 2)
    """
    inputs: list[ColSpec | TensorSpec] = [
        TensorSpec(_STRING if spec.kind == "categorical" else _FLOAT, (-1, 1), spec.name)
        for spec in card.features
    ]
    width = len(card.classes) if card.task == "classification" else 1
    return ModelSignature(Schema(inputs), Schema([TensorSpec(_FLOAT, (-1, width))]))


def input_example(card: ModelCard, reference: ReferenceSketch) -> dict[str, np.ndarray]:
    """One typical row of ``card``'s features, as the model takes it (:func:`model_signature`):
    a numeric feature's median in ``reference``, a boolean one's commoner value (1.0 true,
    0.0 false), a categorical one's most frequent category; without a sketch of it, 0.0, or the
    card's first category.

    Example:
        >>> from driftloop.model_card import FeatureSpec
        >>> card = ModelCard(task="regression",
        ...                  features=[FeatureSpec(name="age"), FeatureSpec(name="member",
        ...                            kind="boolean"), FeatureSpec(name="region",
        ...                            kind="categorical", categories=["north", "south"])])
        >>> rows = [{"age": a, "member": a > 40, "region": "south"} for a in (30, 41, 52)]
        >>> example = input_example(card, ReferenceSketch.build(card, rows))
        >>> {name: value.tolist() for name, value in example.items()}
        {'age': [[41.0]], 'member': [[1.0]], 'region': [['south']]}
    """
    example = {}
    for spec in card.features:
        sketch = reference.features.get(spec.name)
        if spec.kind == "categorical":
            seen = {k: v for k, v in (sketch.frequencies if sketch else {}).items() if k != OTHER}
            known = spec.categories[0] if spec.categories else ""
            value: Any = max(seen, key=seen.__getitem__) if seen else known
            example[spec.name] = np.array([[value]], dtype=_STRING)
            continue
        value = sketch.quantiles[len(sketch.quantiles) // 2] if sketch and sketch.quantiles else 0
        if spec.kind == "boolean":
            value = value >= 0.5
        example[spec.name] = np.array([[value]], dtype=_FLOAT)
    return example


_FLOAT = np.dtype(np.float32)
_STRING = np.dtype(str)


class _KnownServingCheckFailure(logging.Filter):
    """Drops MLflow's warning that its check of the input example failed on string inputs.

    Given an input example, ``log_model`` loads the model as a pyfunc and runs it on the
    example; Keras 3's ``predict`` refuses string arrays (``Invalid dtype: str32``), so the
    check fails for every model with a categorical feature. serve calls the Keras model itself
    (``mlflow.tensorflow.load_model``), which takes them: only that known failure is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Failed to validate serving input" in message and "Invalid dtype" in message)


def register_model(model: Any, card: ModelCard, reference: ReferenceSketch, name: str) -> str:
    """Log a Keras ``model`` with its card and reference in the active run; register it.

    The model is logged with MLflow's tensorflow flavour under ``model`` (load it with
    ``mlflow.tensorflow.load_model(model_uri(name, version))``), with the signature of its
    card's contract (:func:`model_signature`) and one typical row as its input example
    (:func:`input_example`). Returns the new version; no alias moves here: promotion is the
    gate's decision.

    The signature is given, so MLflow does not run the model to infer one; it does run it once
    on the example, to check that it can be served (no option turns that off): about 0.1 to
    0.2 s more per version for a small model (MLflow 3.17.2).
    """
    log_model_card(card, reference)
    import mlflow.tensorflow  # imports TensorFlow: only the processes that log models pay

    checks = logging.getLogger("mlflow.models.model")
    quiet = _KnownServingCheckFailure()
    checks.addFilter(quiet)
    try:
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            registered_model_name=name,
            pip_requirements=pip_requirements(),
            signature=model_signature(card),
            input_example=input_example(card, reference),
        )
    finally:
        checks.removeFilter(quiet)
    return str(info.registered_model_version)
