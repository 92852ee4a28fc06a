"""The files around the code: README, CI."""

from __future__ import annotations

import re

from support import ROOT


def readme_commands() -> list[str]:
    return re.findall(
        r"```sh\n(python3 -m venv .*)\n```", (ROOT / "README.md").read_text()
    )


def test_readme_has_the_two_setup_commands() -> None:
    run, test = readme_commands()
    assert run.endswith("timercheck.py") and "requirements.txt" in run
    assert test.endswith("pytest") and "requirements-dev.txt" in test


def test_ci_runs_the_readme_test_command_and_the_linters() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci
    assert ".venv/bin/ruff check ." in ci
    assert ".venv/bin/ruff format --check ." in ci
    assert "set -euo pipefail" in ci


def test_readme_lists_every_environment_variable() -> None:
    code = (ROOT / "timercheck.py").read_text()
    readme = (ROOT / "README.md").read_text()
    names = set(re.findall(r'env\.get\("([A-Z_]+)"', code))
    names |= set(re.findall(r'integer\(\s*"([A-Z_]+)"', code))
    assert len(names) >= 12
    for name in names:
        assert f"`{name}`" in readme, name
