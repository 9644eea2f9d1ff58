"""The examples in the monitor's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["windows", "statistics", "budget", "concept", "triggers", "monitor", "quality"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"services.monitor.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
