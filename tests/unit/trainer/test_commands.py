"""`driftloop models`: what the versions table shows."""

from __future__ import annotations

from driftloop.registry import ModelVersionInfo
from driftloop.services.trainer import lineage
from driftloop.services.trainer.commands import versions_table


def test_the_table_names_each_versions_contract_and_the_rows_it_left_out() -> None:
    versions = [
        ModelVersionInfo(
            "2",
            "run-2",
            ["champion"],
            tags={lineage.CONTRACT: "v1 (inferred)", lineage.OUTCOME: "promoted"},
            metrics={"holdout_accuracy": 0.91, "excluded_rows": 12.0},
        ),
        ModelVersionInfo("1", "run-1", tags={lineage.OUTCOME: "promoted"}),
    ]
    header, newest, oldest = versions_table(versions).splitlines()
    assert header.split() == [
        "version", "aliases", "outcome", "holdout", "metrics", "contract", "excluded", "trigger",
        "run",
    ]  # fmt: skip
    assert newest.split()[:7] == ["2", "champion", "promoted", "accuracy=0.91", "v1",
                                  "(inferred)", "12"]  # fmt: skip
    assert oldest.split()[:6] == ["1", "-", "promoted", "-", "-", "-"]
