"""The page for people in a real browser: Debian's headless Chromium against
the service started as the README starts it, on SQLite. Without chromium
these tests skip, except where TIMERCHECK_BROWSER=required (.ci/run sets it)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from browser import CHROMIUM, chromium, dom, seed
from support import Process, service

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("TIMERCHECK_BROWSER") != "required",
    reason="no chromium (apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Process, str]:
    db = tmp_path_factory.mktemp("page") / "t.db"
    token = seed(db, "nightly-backup")
    with service({"TIMERCHECK_DB": str(db)}) as server:
        yield server, token  # type: ignore[misc]


def url(server: Process, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def test_a_browser_asking_for_the_timer_gets_the_page(
    served: tuple[Process, str],
) -> None:
    """No ?format=: Chromium's own Accept header picks the page."""
    server, _ = served
    text = dom(url(server, "/nightly-backup"))
    assert "<h1>nightly-backup</h1>" in text
    assert '<span id="state" class="state running">Running</span>' in text
    assert text.count('<g class="late">') == 3
    assert text.count('<g class="on-time">') == 17
    assert re.search(r"<desc [^>]*>20 gaps between resets, 3 of them late\.", text)
    assert text.count("<tr>") == 21  # the head and 20 resets


def test_the_read_only_page_shows_the_label_never_the_name(
    served: tuple[Process, str],
) -> None:
    server, token = served
    text = dom(url(server, f"/-/{token}?label=<b>backups</b>"))
    assert "<h1>&lt;b&gt;backups&lt;/b&gt;</h1>" in text
    assert "<title>&lt;b&gt;backups&lt;/b&gt;: Running</title>" in text
    assert "nightly-backup" not in text
    assert '<svg id="chart"' in text


def test_the_page_of_a_timer_never_set_renders(served: tuple[Process, str]) -> None:
    server, _ = served
    text = dom(url(server, "/nothing-here"))
    assert '<span id="state" class="state never-set">Never set</span>' in text
    assert "<svg" not in text


def test_the_browser_runs_and_fetches_nothing_and_is_refused_nothing(
    served: tuple[Process, str], tmp_path: Path
) -> None:
    """Chromium's log of the page: no Content-Security-Policy refusal (the
    inline style is allowed), no script, no other request."""
    server, _ = served
    shot = tmp_path / "page.png"
    result = chromium(
        "--enable-logging=stderr",
        "--v=0",
        f"--screenshot={shot}",
        "--window-size=900,1250",
        url(server, "/nightly-backup"),
    )
    assert result.returncode == 0, result.stderr
    assert "Refused to" not in result.stderr
    assert "Content Security Policy" not in result.stderr
    assert shot.stat().st_size > 20_000  # a page, not a blank
