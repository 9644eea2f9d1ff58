"""The wheel installs anywhere (issue #26): built from what the image's build stage copies, it
carries the package and the schemas and nothing at the top but ``driftloop``; installed with its
base dependencies alone into a fresh virtual environment, offline from the wheel cache that
`make install` fills from requirements.lock, it runs `driftloop --help`, `driftloop settings`
and a schema validation from a folder outside the repo; and every extra resolves to the lock's
versions from that cache alone.

The build runs on a copy (links kept, as the image's build context keeps them) so that nothing
is written into the checkout and no stale build/ leaks into the wheel. Nothing here skips: a
wheel that does not build or install fails the test, and so does an empty wheel cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from driftloop.events import EventType
from driftloop.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"
ROLES = ("client", "ingest", "monitor", "serve", "trainer", "all")
# What the base install must not bring: the client runs in apps without them.
HEAVY = ("tensorflow", "keras", "mlflow", "river", "numpy", "pandas", "scipy", "aiokafka")

VALIDATE = """
import importlib.util, json, sys
import driftloop
from driftloop.client import label_event
from driftloop.errors import SchemaViolation
from driftloop.events import EventType
from driftloop.schemas import EventSchemas, dumps

schemas = EventSchemas()
event = label_event("order-1", 1, source="wheel-test")
schemas.validate(EventType.LABEL, event)
assert schemas.decode(EventType.LABEL, dumps(event)) == event
try:
    schemas.validate(EventType.LABEL, {k: v for k, v in event.items() if k != "label"})
except SchemaViolation as error:
    refused = str(error)
else:
    sys.exit("a label without its label was accepted")
print(json.dumps({
    "package": driftloop.__file__,
    "version": driftloop.__version__,
    "schemas": str(schemas.directory),
    "refused": refused,
    "importable": [name for name in sys.argv[1:] if importlib.util.find_spec(name)],
}))
"""


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # a folder outside the repo, where the commands run
    cache: Path


def run(command: Sequence[str | Path], cwd: Path, timeout: float = 300) -> str:
    """``command``'s output; its failure, with what it said, fails the test."""
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=clean_environment(), capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {done.returncode}:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    return done.stdout


def clean_environment() -> dict[str, str]:
    """This environment without what would let the checkout or its venv leak in."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
        and not key.startswith(("DRIFTLOOP_", "PIP_"))
    }
    return environment | {"PYTHONNOUSERSITE": "1", "PIP_CONFIG_FILE": os.devnull}


def build_context(target: Path) -> None:
    """What the Dockerfile's build stage copies, copied as COPY does (links stay links)."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = re.search(r"^FROM \S+ AS build$(.*?)^FROM ", dockerfile, re.M | re.S)
    assert stage, "the Dockerfile has no build stage"
    sources = [
        source
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", stage.group(1), re.M)
        for source in line.split()
    ]
    assert {"pyproject.toml", "driftloop", "services", "schemas"} <= set(sources), sources
    target.mkdir()
    for source in sources:
        if (ROOT / source).is_dir():
            shutil.copytree(
                ROOT / source, target / source, symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )  # fmt: skip
        else:
            shutil.copy2(ROOT / source, target / source)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, built, and a fresh venv with it and its base dependencies, installed offline."""
    cache = Settings().cache_dir / "wheels"  # DRIFTLOOP_CACHE_DIR, as the Makefile sets it
    if not any(cache.glob("*.whl")):
        pytest.fail(f"no wheels in {cache}: `make install` fills it from the lock", pytrace=False)
    work = tmp_path_factory.mktemp("wheel")
    build_context(work / "src")
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--wheel-dir", work / "dist", work / "src"],
        cwd=work,
    )  # fmt: skip
    (wheel,) = (work / "dist").glob("driftloop-*.whl")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", venv], cwd=work)
    run(
        [venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--find-links", cache, wheel],
        cwd=work,
    )  # fmt: skip
    outside = work / "outside"
    outside.mkdir()
    return Installed(wheel, venv, outside, cache)


def test_the_wheel_carries_the_package_and_the_schemas_and_nothing_else(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        schemas = {
            event_type: wheel.read(f"driftloop/event_schemas/{event_type.schema_name}.schema.json")
            for event_type in EventType
        }
        metadata = wheel.read(f"driftloop-{VERSION}.dist-info/METADATA").decode()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"driftloop", f"driftloop-{VERSION}.dist-info"}, "no services or bench at top"
    assert "driftloop/services/serve/main.py" in names
    for event_type, text in schemas.items():
        assert text == (ROOT / "schemas" / f"{event_type.schema_name}.schema.json").read_bytes()
    assert not [name for name in names if "/examples/" in name], "examples are the tests' only"
    extras = set(re.findall(r"^Provides-Extra: (\S+)$", metadata, re.M))
    assert set(ROLES) <= extras


def test_driftloop_help_runs_outside_the_repo(installed: Installed) -> None:
    out = run([installed.venv / "bin" / "driftloop", "--help"], cwd=installed.outside)
    assert out.startswith("usage: driftloop")
    for command in ("run", "settings", "stack", "train"):
        assert command in out


def test_driftloop_settings_runs_outside_the_repo(installed: Installed) -> None:
    driftloop = installed.venv / "bin" / "driftloop"
    settings = json.loads(run([driftloop, "settings"], cwd=installed.outside))
    assert settings["schemas_dir"] is None, "unset: the packaged schemas"
    assert settings["kafka_bootstrap_servers"] == "127.0.0.1:9092"
    # Every service's settings, as the README's table lists them, with the base install alone.
    table = run([driftloop, "settings", "--markdown"], cwd=installed.outside)
    assert "`DRIFTLOOP_SERVE_PORT`" in table and "`DRIFTLOOP_TRAINER_PORT`" in table


def test_schemas_validate_from_the_installed_package(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    found = json.loads(run([python, "-c", VALIDATE, *HEAVY], cwd=installed.outside))
    site = (installed.venv / "lib").resolve()
    assert Path(found["package"]).resolve().is_relative_to(site), found["package"]
    assert Path(found["schemas"]).resolve().is_relative_to(site), found["schemas"]
    assert found["version"] == VERSION
    assert found["refused"] == "label is required (rule: required)"
    assert found["importable"] == [], "the base install brings none of the heavy packages"


def test_every_extra_resolves_to_the_locked_versions_from_the_cache(installed: Installed) -> None:
    report = installed.outside / "report.json"
    run(
        [installed.venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--dry-run",
         "--disable-pip-version-check", "--no-index", "--find-links", installed.cache,
         "--report", report, f"driftloop[all] @ {installed.wheel.as_uri()}"],
        cwd=installed.outside,
    )  # fmt: skip
    locked = {
        canonicalize_name(name): version
        for name, version in re.findall(
            r"^([A-Za-z0-9._-]+)==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M
        )
    }
    chosen = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert chosen.pop("driftloop", VERSION) == VERSION  # absent when the same wheel is in
    assert {"tensorflow-cpu", "keras", "mlflow", "scipy", "evidently", "river"} <= set(chosen)
    assert {name: v for name, v in chosen.items() if locked.get(name) != v} == {}
