"""The files around the code: the README, its examples and CI."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from support import ROOT, call, service
from timercheck import SETTINGS

README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(python3 -m venv .*)\n```", README)


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


def test_every_pytest_command_in_the_docs_is_the_readme_one() -> None:
    for doc in [ROOT / "README.md", *ROOT.glob("docs/*.md")]:
        for line in doc.read_text().splitlines():
            if "pytest" in line and "`" in line:
                assert "pytest" not in line.replace(".venv/bin/python -m pytest", "")


def settings_rows() -> list[str]:
    table = README.split("| variable | default | allowed | meaning |")[1]
    return re.findall(r"^\| `[A-Z_]+` .*$", table.split("\n\n")[0], re.M)


def test_the_readme_settings_table_is_the_code_s() -> None:
    expected = [
        f"| `{s.name}` | {'unset' if s.default is None else f'`{s.default}`'}"
        f" | {s.allowed()} | {s.meaning} |"
        for s in SETTINGS
    ]
    assert settings_rows() == expected


def test_help_lists_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "timercheck.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    help_text = " ".join(result.stdout.split())
    for s in SETTINGS:
        default = "unset" if s.default is None else s.default
        assert f"{s.name} {s.meaning} default: {default}; allowed:" in help_text
        assert s.allowed() in help_text


def poller(url: str, state: Path) -> str:
    """The README's poll.sh, with this test's URL and state files."""
    [script] = re.findall(r"```sh\n(#!/bin/sh\n# poll\.sh.*?)```", README, re.S)
    script = re.sub(r"^url=.*$", f"url={url}", script, flags=re.M)
    return re.sub(r"^state=.*$", f"state={state}", script, flags=re.M)


def test_the_readme_poller_alerts_once_an_outage(tmp_path: Path) -> None:
    """Silent while the timer runs; one alert for an expiry that it sees and
    then sees reset (as a miss), and exit 1 while it is down; one alert for
    a miss it never saw expire; never curl's own error on stderr."""
    state = tmp_path / "nightly"
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        url = call(server.port, "GET", "/backup/60").json["read_only_url"]

        def poll() -> tuple[int, str, str]:
            ran = subprocess.run(
                ["sh", "-c", poller(url, state)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            return ran.returncode, ran.stdout, ran.stderr

        assert poll() == (0, "", "")
        assert Path(f"{state}.misses").read_text() == "0\n"
        call(server.port, "GET", "/backup/1")
        time.sleep(1.1)
        assert poll() == (1, "ALERT nightly-backup: expired\n", "")
        assert poll() == (1, "", "")  # still down: told already
        call(server.port, "GET", "/backup/60")  # back: seen as a miss
        assert poll() == (0, "", "")  # the same outage: no second alert
        assert Path(f"{state}.misses").read_text() == "1\n"
        assert poll() == (0, "", "")
        call(server.port, "GET", "/backup/1")
        time.sleep(1.1)
        call(server.port, "GET", "/backup/60")  # expired and reset unseen
        assert poll() == (1, "ALERT nightly-backup: missed\n", "")
        assert poll() == (0, "", "")
        assert Path(f"{state}.misses").read_text() == "2\n"
        call(server.port, "DELETE", "/backup")
        assert poll() == (1, "ALERT nightly-backup: no answer\n", "")
    assert poll() == (1, "", "")  # the server gone: the same outage, no noise
    Path(f"{state}.alerted").unlink()
    assert poll() == (1, "ALERT nightly-backup: no answer\n", "")  # nor curl's


def test_the_readme_backup_command_copies_a_running_database(tmp_path: Path) -> None:
    [command] = re.findall(
        r"^(\(umask 077; \.venv/bin/python -c .*backup.*)$", README, re.M
    )
    command = command.replace(".venv/bin/python", sys.executable)
    with service({"TIMERCHECK_DB": str(tmp_path / "timercheck.db")}) as server:
        call(server.port, "GET", "/job/60")
        subprocess.run(["sh", "-c", command], cwd=tmp_path, check=True)
        call(server.port, "GET", "/job/60")
    assert (tmp_path / "backup.db").stat().st_mode & 0o777 == 0o600
    backup = sqlite3.connect(tmp_path / "backup.db")
    assert backup.execute("SELECT timer, seconds FROM timers").fetchall() == [
        ("job", 60)
    ]
