"""ingest against the real broker: private topics per test, a store in a temporary folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.contract import FeatureContract, FeatureSpec
from driftloop.messaging import ensure_topics
from driftloop.services.ingest.settings import IngestSettings
from driftloop.settings import Settings
from driftloop.stack.process import free_port
from driftloop.store import ExampleStore
from tests.processes import ServiceProcess

# The contract of the model these tests' events name ("m": x and colour, labels 0 and 1),
# declared as a user would; tests/integration/test_contract.py covers inferred ones.
CONTRACT = FeatureContract(
    model_name="m",
    task="classification",
    classes=[0, 1],
    features=[FeatureSpec(name="x"), FeatureSpec(name="colour", kind="categorical")],
)


def declared_contract(folder: Path) -> Path:
    path = folder / "contract.json"
    path.write_text(CONTRACT.model_dump_json())
    return path


@pytest.fixture
def ingest_settings(settings: Settings, tmp_path: Path) -> IngestSettings:
    """Shared stack, topics and group of this test's own."""
    tag = uuid.uuid4().hex[:8]
    private = IngestSettings.model_validate(
        settings.model_dump()
        | {
            f"topic_{name}": f"test-{tag}.{name}"
            for name in (
                "predictions",
                "labels",
                "examples",
                "dead_letters",
                "ingest_changelog",
                "contracts",
            )
        }
        | {
            "ingest_group_id": f"ingest-{tag}",
            "store_uri": str(tmp_path / "store"),
            "ingest_port": free_port(),
            "ingest_flush_s": 0.5,
            "ingest_join_ttl_s": 3600,
            "kafka_max_event_bytes": 4096,
            "ingest_max_body_bytes": 4096,
            "contract_file": declared_contract(tmp_path),
        }
    )
    ensure_topics(private)
    return private


@pytest.fixture
def ingest(ingest_settings: IngestSettings, tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess("ingest", ingest_settings, tmp_path / "ingest.log")
    yield process
    if process.alive():
        process.kill()


def stored_rows(settings: IngestSettings) -> list[str]:
    store = ExampleStore(settings.store_uri)
    table = store.read(store.manifests())
    return table.column("request_id").to_pylist() if table.num_rows else []
