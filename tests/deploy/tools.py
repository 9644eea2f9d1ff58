"""The outside validators tests/deploy runs, found where scripts/install-deploy-tools puts
them. A missing tool fails the test that needs it with the command that installs it: these
checks never skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from driftloop.settings import Settings

INSTALL = "run `make tools` (scripts/install-deploy-tools)"


def tools_dir() -> Path:
    return Settings().cache_dir / "tools"


def tool(name: str) -> str:
    """The path of ``name``: the tools bin folder, the tools venv, then PATH."""
    for folder in (tools_dir() / "bin", tools_dir() / "venv" / "bin"):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; {INSTALL}", pytrace=False)
    return found


def kustomize_command() -> list[str]:
    """``kustomize build`` where it was built, else kubectl's own kustomize."""
    built = tools_dir() / "bin" / "kustomize"
    if built.exists():
        return [str(built), "build"]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(f"neither kubectl nor kustomize is installed; {INSTALL}", pytrace=False)
    return [kubectl, "kustomize"]


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a validator; the caller asserts on its exit status and output."""
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
