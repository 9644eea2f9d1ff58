"""Against the real MLflow server: register, alias, load by alias; artifacts on S3."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.pyfunc import PythonModel

from driftloop.settings import Settings
from driftloop.stack import MlflowServer
from tests.conftest import local_settings

pytestmark = pytest.mark.integration


class Threshold(PythonModel):  # type: ignore[misc]
    """1 when x exceeds the threshold: small enough to log in a test, real enough to load."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, context: object, model_input: pd.DataFrame, params: object = None) -> list:
        return (model_input["x"] > self.threshold).astype(int).tolist()


def register(settings: Settings, name: str, threshold: float) -> str:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Threshold(threshold),
            registered_model_name=name,
            pip_requirements=["mlflow"],
        )
    return str(info.registered_model_version)


def test_register_alias_and_load_by_alias(settings: Settings) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(settings.mlflow_tracking_uri)
    first = register(settings, name, threshold=0.0)
    second = register(settings, name, threshold=10.0)
    probe = pd.DataFrame({"x": [5.0]})

    client.set_registered_model_alias(name, "champion", first)
    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert champion.predict(probe) == [1]

    client.set_registered_model_alias(name, "champion", second)
    client.set_registered_model_alias(name, "previous", first)
    assert client.get_model_version_by_alias(name, "champion").version == second
    assert mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(probe) == [0]
    assert mlflow.pyfunc.load_model(f"models:/{name}@previous").predict(probe) == [1]


def test_artifacts_go_to_s3_when_a_bucket_is_configured(s3: str, tmp_path: Path) -> None:
    settings = local_settings(tmp_path, s3_endpoint_url=s3, s3_bucket="driftloop-test")
    server = MlflowServer(settings)
    server.up()
    try:
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        with mlflow.start_run() as run:
            mlflow.log_dict({"rows": 3}, "manifest.json")
        keys = [
            item["Key"]
            for item in boto3.client("s3", endpoint_url=s3).list_objects_v2(
                Bucket="driftloop-test"
            )["Contents"]
        ]
        assert any(key.endswith(f"{run.info.run_id}/artifacts/manifest.json") for key in keys)
        assert all(key.startswith("driftloop/mlflow/") for key in keys)
        local = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/manifest.json")
        assert local == {"rows": 3}
    finally:
        server.down()
        mlflow.set_tracking_uri(None)
