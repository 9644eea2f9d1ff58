"""What the package declares against what its code imports (issue #26: a package that installs
anywhere). Read statically, from the source: no import is run, so a module whose dependency is
missing is still checked.

Each role installs the base dependencies and its extra (pyproject.toml), and runs a set of
modules, followed through the driftloop modules they import:

- the base install: the client, `driftloop --help`, `driftloop settings` and schema validation,
  through their module-level imports only (what a function imports when it runs is the business
  of the role that calls it: the trainer's commands, the client's Kafka producer);
- ``client``: :mod:`driftloop.client`, every import;
- ``ingest``, ``monitor``, ``serve``, ``trainer``: every module of the service, every import;
- ``all``: every module of the package.

Every third-party module a role imports must come from a distribution that the role declares
(import names map to distributions as installed here: ``kafka`` is kafka-python, ``tensorflow``
is tensorflow-cpu), and every declared version must be the one requirements.lock pins.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.metadata
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from driftloop.events import EventType
from driftloop.schemas import PACKAGED_SCHEMAS, packaged_schemas
from driftloop.settings import REPO_ROOT, SERVICES

PACKAGE = REPO_ROOT / "driftloop"
PROJECT: dict[str, Any] = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
BASE = "base"
ROLES = (BASE, "client", *SERVICES, "all")
# What the base install runs: the client, the command's parser and `settings` (which imports
# every service's settings class), the settings and the schemas.
BASE_MODULES = (
    "driftloop.cli",
    "driftloop.client",
    "driftloop.schemas",
    "driftloop.settings",
    "driftloop.stack.settings",
    *(f"driftloop.services.{service}.settings" for service in SERVICES),
)
# Needs no import shows: a module, and distributions it needs at run time.
IMPLIED = {"driftloop.asgi": ("httptools",)}  # uvicorn.Config(http="httptools")
# What the base install must never pull in: the client runs in apps without them.
HEAVY = {"tensorflow", "tensorflow-cpu", "keras", "mlflow", "river", "numpy", "pandas", "scipy"}


@dataclass
class Module:
    """One module's imports: ``eager`` at import time, ``lazy`` inside functions."""

    eager: set[str] = field(default_factory=set)
    lazy: set[str] = field(default_factory=set)


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports(tree: ast.AST, package: str, lazy: bool, found: Module) -> None:
    """Every module ``tree`` imports, into ``found``; ``package`` resolves relative imports."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for other in node.orelse:  # the body only runs under a type checker
                _imports(other, package, lazy, found)
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from a import b` imports the module a.b when there is one: kept, and told apart
            # from a name later (only driftloop's own modules are looked up).
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        (found.lazy if lazy else found.eager).update(names)
        inner = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        _imports(node, package, lazy or inner, found)


def _source_files() -> Iterator[tuple[str, Path]]:
    """Every module of the package with its file, following the link to services/."""
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = Path(folder, name)
                parts = path.relative_to(REPO_ROOT).with_suffix("").parts
                yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


@functools.cache
def package_modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for name, path in _source_files():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        module = found[name] = Module()
        _imports(ast.parse(path.read_text(), str(path)), package, False, module)
    return found


def closure(entries: Iterable[str], *, lazy: bool) -> set[str]:
    """The driftloop modules that importing ``entries`` runs (their packages' ``__init__``
    too), through imports inside functions as well when ``lazy``."""
    modules = package_modules()
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if prefix in modules and prefix not in seen:
                seen.add(prefix)
                module = modules[prefix]
                todo.extend(module.eager | (module.lazy if lazy else set()))
    return seen


def role_modules(role: str) -> set[str]:
    modules = package_modules()
    if role == BASE:
        return closure(BASE_MODULES, lazy=False)
    if role == "client":
        return closure(["driftloop.client"], lazy=True)
    if role == "all":
        return closure(modules, lazy=True)
    return closure((m for m in modules if m.startswith(f"driftloop.services.{role}.")), lazy=True)


def third_party(module: Module, *, lazy: bool) -> set[str]:
    names = module.eager | (module.lazy if lazy else set())
    tops = {name.split(".")[0] for name in names if name}
    return {top for top in tops if top != "driftloop" and top not in sys.stdlib_module_names}


def declared(project: dict[str, Any], role: str) -> set[str]:
    """The distributions a role installs: the base dependencies and its extra, with the extras
    of driftloop it names (``all`` names every role's)."""
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})
    found: set[str] = set()
    todo = list(project.get("dependencies", [])) + (extras[role] if role != BASE else [])
    while todo:
        requirement = Requirement(todo.pop())
        name = canonicalize_name(requirement.name)
        if name == "driftloop":
            todo += [text for extra in sorted(requirement.extras) for text in extras[extra]]
        else:
            found.add(name)
    return found


@functools.cache
def providers() -> dict[str, set[str]]:
    """Each importable top-level name and the installed distributions that provide it."""
    return {
        top: {canonicalize_name(d) for d in dists}
        for top, dists in importlib.metadata.packages_distributions().items()
    }


def undeclared(project: dict[str, Any]) -> dict[str, list[str]]:
    """For each role, its imports that no distribution it declares provides."""
    modules = package_modules()
    problems: dict[str, list[str]] = {}
    for role in ROLES:
        have = declared(project, role)
        for name in sorted(role_modules(role)):
            for top in third_party(modules[name], lazy=role != BASE):
                dists = providers().get(top)
                if not dists:
                    problems.setdefault(role, []).append(
                        f"{name} imports {top}, which no installed distribution provides"
                    )
                elif not dists & have:
                    problems.setdefault(role, []).append(
                        f"{name} imports {top} ({' or '.join(sorted(dists))}): not declared"
                    )
            for dist in IMPLIED.get(name, ()):
                if canonicalize_name(dist) not in have:
                    problems.setdefault(role, []).append(f"{name} needs {dist}: not declared")
    return problems


def lock() -> dict[str, str]:
    text = (REPO_ROOT / "requirements.lock").read_text()
    return {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)$", text, re.M)
    }


def requirements(project: dict[str, Any]) -> Iterator[tuple[str, Requirement]]:
    """Every requirement but driftloop's own extras, with where it is declared."""
    for text in project["dependencies"]:
        yield BASE, Requirement(text)
    for extra, texts in project["optional-dependencies"].items():
        for text in texts:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) != "driftloop":
                yield extra, requirement


def test_every_role_declares_what_its_modules_import() -> None:
    assert set(ROLES) - {BASE} <= set(PROJECT["optional-dependencies"])
    assert undeclared(PROJECT) == {}


def test_the_roles_cover_their_services_modules() -> None:
    modules = package_modules()
    for service in SERVICES:
        own = {m for m in modules if m.startswith(f"driftloop.services.{service}.")}
        assert own and own <= role_modules(service), service
        assert "driftloop.schemas" in role_modules(service)
    assert role_modules("all") == set(modules)
    assert "driftloop.stack" in role_modules(BASE), "importing stack.settings runs stack/__init__"
    assert "driftloop.services.trainer.commands" not in role_modules(BASE)


def test_the_check_fails_on_an_undeclared_import() -> None:
    # scipy went undeclared once; TensorFlow was only in the cpu extra, not serve's or trainer's.
    project = copy.deepcopy(PROJECT)
    dropped = {"scipy", "tensorflow-cpu"}
    for extra, texts in project["optional-dependencies"].items():
        project["optional-dependencies"][extra] = [
            t for t in texts if canonicalize_name(Requirement(t).name) not in dropped
        ]
    problems = undeclared(project)
    assert set(problems) == {"monitor", "serve", "trainer", "all"}
    for role, module in (("monitor", "statistics"), ("trainer", "arbitration")):
        assert any(f"services.{role}.{module} imports scipy" in p for p in problems[role])
    for role in ("serve", "trainer", "all"):
        assert any("imports tensorflow (tensorflow-cpu)" in p for p in problems[role]), role
    # A base install without pydantic: every role but the client (which does without) misses it.
    project["dependencies"] = [t for t in project["dependencies"] if not t.startswith("pydantic")]
    assert set(undeclared(project)) == set(ROLES) - {"client"}


def test_every_version_is_the_locked_one() -> None:
    pinned = lock()
    for where, requirement in requirements(PROJECT):
        name = canonicalize_name(requirement.name)
        if where == "gpu":  # tensorflow[and-cuda] in tensorflow-cpu's place (tests/deploy)
            assert str(requirement.specifier) == f"=={pinned['tensorflow-cpu']}"
            continue
        assert name in pinned, f"{where}: {name} is not in requirements.lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{where}: {requirement} does not admit the locked {name}=={pinned[name]}"
        )
        if where == BASE:  # ranges, for apps; bounded, so that a new major is not taken
            assert any(spec.operator == "<" for spec in requirement.specifier), requirement
        else:  # pins, as the images install
            assert [spec.operator for spec in requirement.specifier] == ["=="], requirement


def test_the_base_install_stays_light_and_all_is_every_role() -> None:
    base = declared(PROJECT, BASE)
    assert not base & HEAVY, sorted(base & HEAVY)
    everything = declared(PROJECT, "all")
    for role in ROLES:
        assert declared(PROJECT, role) <= everything, role


def test_the_package_reads_its_schemas_from_the_repo_folder() -> None:
    link = PACKAGE / PACKAGED_SCHEMAS
    assert link.is_symlink() and link.resolve() == (REPO_ROOT / "schemas").resolve()
    names = {p.name for p in packaged_schemas().iterdir() if p.name.endswith(".schema.json")}
    assert names == {f"{event_type.schema_name}.schema.json" for event_type in EventType}
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["driftloop"]
    assert f"{PACKAGED_SCHEMAS}/*.schema.json" in package_data
