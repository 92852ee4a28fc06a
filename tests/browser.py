"""Debian's headless Chromium, for what a person sees, and a timer with a
history worth looking at. Used by test_page.py and tools/screenshot.py."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from webtest import TestApp

from fakes import FakeClock
from timercheck import App, SqliteStore

CHROMIUM = shutil.which("chromium")
# As root in a sandbox, and with no reach beyond 127.0.0.1: no background
# connections (../shared/NOTES.md, and the machine's notes).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
HOUR = 3600
# Minutes between the resets of an hourly job whose timer is set for 70
# minutes: three came late, one of them after a failure report.
GAPS = [60, 61, 59, 60, 75, 60, 60, 62, 58, 60, 60, 90, 60, 61, 59, 60, 60, 72, 60, 60]


def chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium in a profile of its own; its output as text."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed: apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def dom(url: str) -> str:
    """The page's DOM after Chromium has parsed and laid it out."""
    result = chromium("--dump-dom", url)
    assert result.returncode == 0, result.stderr
    return result.stdout


def screenshot(url: str, path: Path, width: int = 900, height: int = 1420) -> None:
    result = chromium(f"--screenshot={path}", f"--window-size={width},{height}", url)
    assert result.returncode == 0 and path.exists(), result.stderr


def seed(db: Path, name: str, now: float | None = None) -> str:
    """Give `name`, in the SQLite file `db`, the resets of GAPS ending 20
    minutes before `now`, through the app itself; its read-only token."""
    now = time.time() if now is None else now
    clock = FakeClock(now - 20 * 60 - sum(GAPS) * 60)
    app = TestApp(App(SqliteStore(str(db)), clock))
    token = app.get(f"/{name}/70m").json["read_only_token"]
    for minutes in GAPS:
        if minutes == 90:  # the job failed, said so, and ran again later
            clock.advance(30 * 60)
            app.get(f"/{name}/0")
            minutes -= 30
        clock.advance(minutes * 60 + 0.25)
        app.get(f"/{name}/70m")
    return token
