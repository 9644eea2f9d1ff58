"""`make lint`'s checks hold on every run of the suite, not only when someone runs them."""

from __future__ import annotations

import subprocess
import sys

from driftloop.settings import REPO_ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def test_the_types_check_over_driftloop_and_services() -> None:
    result = run("mypy")  # [tool.mypy] in pyproject.toml names the packages
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_finds_nothing_to_fix_or_reformat() -> None:
    for command in (("ruff", "check", "."), ("ruff", "format", "--check", ".")):
        result = run(*command)
        assert result.returncode == 0, result.stdout[-4000:]
