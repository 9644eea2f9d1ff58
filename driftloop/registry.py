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
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.tensorflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    ErrorCode,
)

from driftloop.model_card import ModelCard
from driftloop.reference import ReferenceSketch

CHAMPION = "champion"
PREVIOUS = "previous"
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

    def _load(self, name: str, version: str, path: str) -> dict:
        with tempfile.TemporaryDirectory() as folder:
            local = mlflow.artifacts.download_artifacts(
                run_id=self.run_id(name, version),
                artifact_path=path,
                dst_path=folder,
                tracking_uri=self.tracking_uri,
            )
            return dict(json.loads(Path(local).read_text()))


def log_model_card(card: ModelCard, reference: ReferenceSketch) -> None:
    """Save ``card`` and ``reference`` as artifacts of the active MLflow run."""
    mlflow.log_dict(card.model_dump(mode="json"), MODEL_CARD_PATH)
    mlflow.log_dict(reference.model_dump(mode="json"), REFERENCE_PATH)


def pip_requirements() -> list[str]:
    """What a served copy of the model needs, pinned to what trained it.

    Given explicitly because MLflow's inference of them costs seconds per model (STACK-NOTES).
    """
    pins = []
    for package in ("tensorflow-cpu", "tensorflow", "keras"):
        with contextlib.suppress(PackageNotFoundError):
            pins.append(f"{package}=={version(package)}")
    return pins


def register_model(model: Any, card: ModelCard, reference: ReferenceSketch, name: str) -> str:
    """Log a Keras ``model`` with its card and reference in the active run; register it.

    The model is logged with MLflow's tensorflow flavour under ``model`` (load it with
    ``mlflow.tensorflow.load_model(model_uri(name, version))``). Returns the new version; no
    alias moves here: promotion is the gate's decision.
    """
    log_model_card(card, reference)
    info = mlflow.tensorflow.log_model(
        model, name="model", registered_model_name=name, pip_requirements=pip_requirements()
    )
    return str(info.registered_model_version)
