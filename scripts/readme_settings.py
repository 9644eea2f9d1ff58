"""Rewrite the settings reference, docs/settings.md, from the settings classes
(`make settings-table`)."""

from __future__ import annotations

import contextlib
import io
import re

from driftloop.cli import main
from driftloop.settings import REPO_ROOT


def rewrite() -> None:
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        main(["settings", "--markdown"])
    readme = REPO_ROOT / "docs" / "settings.md"
    text = readme.read_text()
    block = f"<!-- settings:start -->\n{table.getvalue().strip()}\n<!-- settings:end -->"
    new, count = re.subn(
        r"<!-- settings:start -->.*?<!-- settings:end -->", block, text, flags=re.S
    )
    if count != 1:
        raise SystemExit("docs/settings.md needs one <!-- settings:start --> ... :end --> block")
    readme.write_text(new)


if __name__ == "__main__":
    rewrite()
