"""Every DRIFTLOOP_* variable that compose, the Kubernetes builds and the image set is a
setting of the process that gets it, every required setting is set, and the values parse.

The settings classes are discovered as ``driftloop settings`` discovers them, so a service's
new settings are checked as soon as they land."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from driftloop.settings import ENV_PREFIX
from tests.deploy.manifests import (
    BUILDS,
    SERVICES,
    Workload,
    compose_workloads,
    k8s_workloads,
    settings_class,
    variables,
)

# Where containers are declared; their workloads are read inside the tests, so a missing
# validator fails those tests instead of the whole collection.
SOURCES = ["docker-compose.yml", *BUILDS]


def workloads(source: str) -> list[Workload]:
    return compose_workloads() if source == "docker-compose.yml" else k8s_workloads(source)


def test_every_service_runs_in_compose_and_in_every_build() -> None:
    assert {w.service for w in compose_workloads()} >= set(SERVICES)
    for name in BUILDS:
        assert {w.service for w in k8s_workloads(name)} >= set(SERVICES), name


def unknown_variables(workload: Workload) -> list[str]:
    known = variables(workload.service)
    return sorted(v for v in workload.env if v.startswith(ENV_PREFIX) and v not in known)


@pytest.mark.parametrize("source", SOURCES)
def test_variables_are_settings_of_the_process(source: str) -> None:
    problems = [
        f"{w.origin} sets {unknown_variables(w)}, which "
        f"{settings_class(w.service).__name__} does not have"
        for w in workloads(source)
        if unknown_variables(w)
    ]
    assert not problems, "\n".join(problems)


def test_a_misspelt_or_misplaced_variable_is_caught() -> None:
    typo = Workload(
        "typo", "serve", {"DRIFTLOOP_SERVE_PROT": "8080", "DRIFTLOOP_LOG_LEVEL": "INFO"}
    )
    assert unknown_variables(typo) == ["DRIFTLOOP_SERVE_PROT"]
    # ingest's own setting on the trainer's container does nothing there: flag it too.
    misplaced = Workload("misplaced", "trainer", {"DRIFTLOOP_INGEST_GROUP_ID": "x"})
    assert unknown_variables(misplaced) == ["DRIFTLOOP_INGEST_GROUP_ID"]


@pytest.mark.parametrize("source", SOURCES)
def test_required_settings_are_set_and_values_parse(source: str) -> None:
    for workload in workloads(source):
        check_required_and_values(workload)


def check_required_and_values(workload: Workload) -> None:
    cls = settings_class(workload.service)
    known = variables(workload.service)
    missing = [
        f"{ENV_PREFIX}{name.upper()}"
        for name, field in cls.model_fields.items()
        if field.is_required() and f"{ENV_PREFIX}{name.upper()}" not in workload.env
    ]
    assert not missing, f"{workload.origin} leaves required {missing} unset"
    values = {
        known[variable]: value
        for variable, value in workload.env.items()
        if value is not None and variable in known and known[variable] in cls.model_fields
    }
    try:
        cls(_env_file=None, **values)
    except ValidationError as error:
        pytest.fail(f"{workload.origin}: {cls.__name__} rejects its values: {error}")
