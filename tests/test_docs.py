"""README.md documents every command, subcommand, runbook notebook (the weekly review too) and notebook parameter."""

from __future__ import annotations

import re

import pytest

from recovery_lib.cli import commands
from recovery_lib.db import PROJECT_ROOT
from recovery_lib.runbook import parameters
from recovery_lib.runbook.notebooks import STORED_NOTEBOOKS

README = PROJECT_ROOT / "README.md"


@pytest.fixture(scope="module")
def readme() -> str:
    assert README.exists(), "README.md is missing"
    return README.read_text(encoding="utf-8")


def test_every_command_and_subcommand_is_documented(readme: str) -> None:
    missing = []
    for command, subcommands in commands().items():
        if not re.search(rf"recovery_lib {re.escape(command)}\b", readme):
            missing.append(f"python -m recovery_lib {command}")
        missing += [
            f"python -m recovery_lib {command} {sub}"
            for sub in subcommands
            if not re.search(rf"recovery_lib {re.escape(command)} {re.escape(sub)}\b", readme)
        ]
    assert not missing, "README.md does not mention: " + ", ".join(missing)


def test_every_notebook_and_parameter_is_documented(readme: str) -> None:
    missing = []
    for name in STORED_NOTEBOOKS:
        if f"notebooks/{name}.ipynb" not in readme and not re.search(rf"recovery_lib run {name}\b", readme):
            missing.append(f"notebook {name}")
        for parameter in parameters.declared_parameters(parameters.NOTEBOOKS_DIR / f"{name}.ipynb"):
            # as code (`batch_size`) or as a papermill/runner option (-p batch_size ...)
            if not re.search(rf"(`|-p\s+){re.escape(parameter)}\b", readme):
                missing.append(f"{name} parameter {parameter}")
    assert not missing, "README.md does not mention: " + ", ".join(missing)
