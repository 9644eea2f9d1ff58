"""Every docstring example in driftloop/ (services/ is driftloop.services) runs, and passes.

Examples that need a broker, a server or a model are marked ``+SKIP`` where they stand; every
other example is run here, so a module's documentation cannot drift from its code.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import driftloop


def modules() -> list[str]:
    names = []
    for package in (driftloop,):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_pure_cores_have_examples_that_run() -> None:
    pure = [
        "driftloop.contract",
        "driftloop.contract_log",
        "driftloop.events",
        "driftloop.schema_types",
        "driftloop.store",
        "driftloop.services.ingest.join",
        "driftloop.services.ingest.guard",
        "driftloop.services.ingest.alignment",
        "driftloop.services.monitor.windows",
        "driftloop.services.monitor.quality",
        "driftloop.services.monitor.triggers",
        "driftloop.services.trainer.window",
        "driftloop.services.trainer.gate",
        "driftloop.services.trainer.schema",
        "driftloop.services.serve.protocol",
    ]
    for name in pure:
        assert doctest.testmod(importlib.import_module(name)).attempted > 0, name
