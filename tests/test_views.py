"""The views of a timer: badges, text, shields, the history, and the page
for people."""

from __future__ import annotations

import datetime
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from webtest import TestApp

from fakes import T0, FailingStore, FakeClock
from support import (
    BROWSER,
    entry,
    history,
    read_only_url,
)
from timercheck import (
    App,
    StoreUnavailable,
    human_duration,
)


def test_repeated_failure_reports_are_one_outage(
    app: TestApp, clock: FakeClock
) -> None:
    """`job.sh || curl .../job/0` on every failing run: one miss in all, once
    a run succeeds, dated from the last failure report."""
    app.get("/job/60")
    clock.advance(10)
    assert app.get("/job/0").json["ended_miss"] is False
    for _ in range(3):
        clock.advance(60)
        answer = app.get("/job/0").json
        assert (answer["ended_miss"], answer["misses"]) == (False, 0)
    assert app.get("/job?since=0", status=504).json["status"] == "expired"
    clock.advance(30)
    answer = app.get("/job/60").json
    assert (answer["ended_miss"], answer["misses"]) == (True, 1)
    last_miss = {"expired_at": T0 + 190, "reset_at": T0 + 220, "overdue_seconds": 30}
    assert answer["last_miss"] == last_miss


def badge(app: TestApp, path: str) -> tuple[Any, ET.Element]:
    answer = app.get(path)
    assert answer.status_int == 200
    assert answer.content_type == "image/svg+xml"
    assert answer.headers["Cache-Control"] == "no-store"
    return answer, ET.fromstring(answer.body)


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize(
    ("setup", "path", "state", "message", "color", "width"),
    [
        ([], "/job?format=svg", "never-set", "never set", "#9f9f9f", 95),
        (
            [("/job/2580", 0)],
            "/job?format=svg",
            "running",
            "running · 43m left",
            "#4c1",
            141,
        ),
        (
            [("/job/60", 7560)],
            "/job?format=svg",
            "expired",
            "expired · 2h 5m ago",
            "#e05d44",
            155,
        ),
        (
            [("/job/60", 70), ("/job/86400", 0)],
            "/job?format=svg",
            "running",
            "missed 1× · running",
            "#dfb317",
            155,
        ),
        (
            [("/job/60", 70), ("/job/60", 70), ("/job/60", 70), ("/job/86400", 0)],
            "/job?format=svg&since=1",
            "missed",
            "missed 2× · running",
            "#dfb317",
            155,
        ),
        (
            [("/job/60", 70), ("/job/86400", 0)],
            "/job?format=svg&since=1",
            "running",
            "running · 1d left",
            "#4c1",
            131,
        ),
    ],
)
def test_svg_badge(
    app: TestApp,
    clock: FakeClock,
    setup: list[tuple[str, float]],
    path: str,
    state: str,
    message: str,
    color: str,
    width: int,
) -> None:
    for set_path, then in setup:
        app.get(set_path)
        clock.advance(then)
    answer, svg = badge(app, path)
    assert answer.headers["X-Timer-Status"] == state
    assert texts(svg) == ["job", "job", message, message]
    assert color in answer.text
    assert svg.get("width") == str(width)


def test_badge_width_grows_with_the_text(app: TestApp) -> None:
    _, short = badge(app, "/a?format=svg")
    _, long = badge(app, f"/{'w' * 60}?format=svg")
    assert int(long.get("width")) > int(short.get("width")) + 300


def test_badge_head_has_no_body(app: TestApp) -> None:
    answer = app.head("/job?format=svg")
    assert answer.status_int == 200 and answer.body == b""


@pytest.mark.parametrize(
    ("setup", "query", "message", "color", "state"),
    [
        ([], "", "never set", "lightgrey", "never-set"),
        ([("/job/3600", 0)], "", "running · 1h left", "brightgreen", "running"),
        ([("/job/60", 3)], "", "running · 57s left", "brightgreen", "running"),
        ([("/job/60", 60 + 3 * 86400)], "", "expired · 3d ago", "red", "expired"),
        (
            [("/job/60", 70), ("/job/60", 70), ("/job/600", 0)],
            "&since=1",
            "missed 1× · running",
            "yellow",
            "missed",
        ),
        (
            [("/job/60", 70), ("/job/600", 0)],
            "",
            "missed 1× · running",
            "yellow",
            "running",
        ),
    ],
)
def test_shields_endpoint(
    app: TestApp,
    clock: FakeClock,
    setup: list[tuple[str, float]],
    query: str,
    message: str,
    color: str,
    state: str,
) -> None:
    for set_path, then in setup:
        app.get(set_path)
        clock.advance(then)
    answer = app.get(f"/job?format=shields{query}")
    assert answer.status_int == 200
    assert answer.headers["X-Timer-Status"] == state
    assert answer.json == {
        "schemaVersion": 1,
        "label": "job",
        "message": message,
        "color": color,
    }


def test_text_view(app: TestApp, clock: FakeClock) -> None:
    answer = app.get("/job?format=text", status=404)
    assert (answer.text, answer.content_type) == ("never-set\n", "text/plain")
    app.get("/job/2550")
    clock.advance(30)
    answer = app.get("/job?format=text")
    assert answer.text == "running 2520\n"
    assert answer.headers["X-Timer-Status"] == "running"
    clock.advance(2550)
    assert app.get("/job?format=text", status=504).text == "expired 30\n"
    app.get("/job/60")
    missed = app.get("/job?format=text&since=0", status=504)
    assert missed.text == "missed 1 remaining 60\n"
    assert "running" not in missed.text  # a keyword monitor alerts on it
    assert app.get("/job?format=text&since=1").text == "running 60\n"


def test_unknown_format_is_400(app: TestApp) -> None:
    assert "format" in app.get("/job?format=xml", status=400).json["errorMessage"]


RUNNING_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="141" height="20" role="img"'
    ' aria-label="job: running · 43m left"><title>job: running · 43m left</title>'
    '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb"'
    ' stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
    '<clipPath id="r"><rect width="141" height="20" rx="3" fill="#fff"/></clipPath>'
    '<g clip-path="url(#r)"><rect width="29" height="20" fill="#555"/><rect x="29"'
    ' width="112" height="20" fill="#4c1"/><rect width="141" height="20"'
    ' fill="url(#s)"/></g><g fill="#fff" text-anchor="middle"'
    ' font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
    '<text x="14.5" y="15" fill="#010101" fill-opacity=".3">job</text>'
    '<text x="14.5" y="14">job</text>'
    '<text x="85.0" y="15" fill="#010101" fill-opacity=".3">running · 43m left</text>'
    '<text x="85.0" y="14">running · 43m left</text></g></svg>'
)


def test_the_svg_badge_is_drawn_as_shields_io_draws_it(
    app: TestApp, clock: FakeClock
) -> None:
    """Widths from Verdana 11px: j 3, o 7, b 7, plus 12 of padding; texts
    centred in each half, with shields.io's shadow one pixel lower."""
    app.get("/job/2580")
    assert app.get("/job?format=svg").text == RUNNING_SVG


def test_badge_when_the_store_is_down(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = TestApp(App(FailingStore(StoreUnavailable("sqlite: disk I/O error")), clock))
    answer = app.get("/job?format=svg")
    assert answer.status_int == 200 and answer.content_type == "image/svg+xml"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    _, svg = badge(app, "/job?format=svg")
    assert texts(svg) == ["job", "job", "unavailable", "unavailable"]
    assert 'fill="#9f9f9f"' in answer.text
    assert "X-Timer-Status" not in answer.headers
    shields = app.get("/job?format=shields")
    assert shields.json == {
        "schemaVersion": 1,
        "label": "job",
        "message": "unavailable",
        "color": "lightgrey",
    }
    assert "X-Timer-Status" not in shields.headers
    text = app.get("/job?format=text", status=503)
    assert text.text == "unavailable\n"
    assert text.headers["Retry-After"] == "5"
    request_id = app.get("/job", status=503).headers["X-Request-Id"]
    said = [r.getMessage() for r in caplog.records if r.name == "timercheck"]
    assert said == ["store unavailable: sqlite: disk I/O error"] * 4 + [
        f"request {request_id}: store unavailable: sqlite: disk I/O error"
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (59, "59s"),
        (60, "1m"),
        (2580, "43m"),
        (3599, "59m"),
        (3600, "1h"),
        (7500, "2h 5m"),
        (86399, "23h 59m"),
        (86400, "1d"),
        (3 * 86400, "3d"),
        (3 * 86400 + 7200, "3d 2h"),
    ],
)
def test_human_durations(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_an_svg_can_run_nothing(app: TestApp) -> None:
    answer = app.get("/job?format=svg")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    policy = "default-src 'none'; style-src 'unsafe-inline'"
    assert answer.headers["Content-Security-Policy"] == policy


PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def utc(seconds: int) -> str:
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_history_answers_as_the_check_and_adds_the_history(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(61)
    for query in ("", "?since=0"):
        plain = app.get(f"/job{query}", status=504)
        both = app.get(f"/job?format=history{query.replace('?', '&')}", status=504)
        assert "history" not in plain.json
        assert {k: v for k, v in both.json.items() if k != "history"} == {
            **plain.json,
            "request_id": both.json["request_id"],
        }
        assert both.headers["X-Timer-Status"] == plain.headers["X-Timer-Status"]
        assert both.headers["Content-Type"] == "application/json"
    assert history(app, status=504) == [entry(T0, 60, None)]
    never = app.get("/nothing?format=history", status=404)
    assert never.json["errorMessage"] == "404: timer has never been set"
    assert never.json["history"] == []


def test_history_and_the_page_through_the_read_only_url(
    app: TestApp, clock: FakeClock
) -> None:
    url = read_only_url(app, "secret-job-name")
    clock.advance(61)
    app.get("/secret-job-name/60")
    assert history(app, url) == [entry(T0 + 61, 60, 1), entry(T0, 60, None)]
    body = app.get(f"{url}?format=history&label=backup").json
    assert body["timer"] == "backup"
    page = app.get(f"{url}?label=backup", headers={"Accept": BROWSER}).text
    assert "backup" in page and "secret-job-name" not in page
    assert "secret-job-name" not in app.get(f"{url}?format=html").text


def test_a_checks_answer_does_not_grow(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    small = len(app.get("/job").body)
    for _ in range(25):
        clock.advance(1)
        app.get("/job/60")
    assert len(app.get("/job").body) == small


def test_history_on_a_store_that_is_down_is_a_503(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock))
    answer = app.get("/job?format=history", status=503)
    assert answer.json["errorMessage"] == "503: timer store unavailable"


@pytest.mark.parametrize(
    "accept, html",
    [
        (BROWSER, True),  # Chrome, Firefox, Safari, Edge
        ("text/html", True),
        ("TEXT/HTML; q=1.0, */*", True),
        ("*/*", False),  # curl, wget, Go, python-requests
        ("", False),  # Nagios check_http, blackbox exporter by default
        ("application/json", False),
        ("application/json, text/plain, */*", False),  # Uptime Kuma (axios)
        ("text/plain, text/html", False),
        ("application/xhtml+xml,text/html", False),
    ],
)
def test_a_browser_gets_the_page_and_everyone_else_json(
    app: TestApp, accept: str, html: bool
) -> None:
    app.get("/job/60")
    headers = {"Accept": accept} if accept else {}
    answer = app.get("/job", headers=headers)
    expected = "text/html; charset=utf-8" if html else "application/json"
    assert answer.headers["Content-Type"] == expected
    assert answer.headers["Vary"] == "Accept"
    url = read_only_url(app, "job")
    assert app.get(url, headers=headers).headers["Content-Type"] == expected


def test_a_format_wins_over_accept_and_a_set_answers_json(app: TestApp) -> None:
    headers = {"Accept": BROWSER}
    assert app.get("/job/60", headers=headers).headers["Content-Type"] == (
        "application/json"
    )
    for form, kind in [
        ("json", "application/json"),
        ("history", "application/json"),
        ("text", "text/plain"),
        ("svg", "image/svg+xml"),
    ]:
        answer = app.get(f"/job?format={form}", headers=headers)
        assert answer.headers["Content-Type"] == kind
        assert "Vary" not in answer.headers
    for method in ("post", "put"):
        answer = getattr(app, method)("/job/60", headers=headers)
        assert answer.headers["Content-Type"] == "application/json"
    head = app.head("/job/60", headers=headers)  # a set URL: checks, in JSON
    assert head.headers["Content-Type"] == "application/json"
    slack = {**headers, "User-Agent": "Slackbot-LinkExpanding 1.0"}
    unfurled = app.get("/job/60", headers=slack)
    assert unfurled.headers["Content-Type"] == "application/json"
    assert unfurled.headers["X-Timer-Ignored"] == "link preview (Slackbot)"


@pytest.mark.parametrize(
    "advance, status, word",
    [(10, 200, "Running"), (61, 504, "Expired")],
)
def test_the_page_has_the_checks_status_and_says_so(
    app: TestApp, clock: FakeClock, advance: int, status: int, word: str
) -> None:
    app.get("/job/60")
    clock.advance(advance)
    answer = app.get("/job?format=html", status=status)
    for name, value in PAGE_HEADERS.items():
        assert answer.headers[name] == value
    assert answer.headers["X-Timer-Status"] == word.lower()
    assert f'class="state {word.lower()}">{word}</span>' in answer.text
    assert '<meta http-equiv="refresh" content="30">' in answer.text


def test_the_page_of_a_timer_never_set_is_a_404(app: TestApp) -> None:
    answer = app.get("/nothing?format=html", status=404)
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert ">Never set</span>" in answer.text
    assert "<svg" not in answer.text


def test_the_page_says_missed_to_a_poller_that_passes_since(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(70)
    app.get("/job/60")
    answer = app.get("/job?format=html&since=0", status=504)
    assert ">Missed</span>" in answer.text
    assert answer.headers["X-Timer-Status"] == "missed"
    assert "Last miss" in app.get("/job?format=html").text


def test_the_page_shows_the_facts(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/70m")
    clock.advance(70 * 60 + 125)
    app.get("/job/70m")
    clock.advance(600)
    text = app.get("/job?format=html").text
    assert "1h 0m left (3600 s)" in text or "1h left (3600 s)" in text
    deadline = utc(T0 + 4325 + 4200)
    assert f"<dd><time>{deadline}</time></dd>" in text
    assert "1h 10m (4200 s)" in text
    assert "<dt>Misses</dt><dd>1</dd>" in text
    assert "late by 2m" in text  # in the table, and the miss
    assert 'class="late"' in text
    assert "1 gap between resets, 1 of them late" in text


def test_the_page_escapes_its_label_and_runs_nothing(
    app: TestApp, clock: FakeClock
) -> None:
    url = read_only_url(app, "job")
    label = '<script>alert(1)</script>"&'
    text = app.get(url, {"label": label, "format": "html"}).text
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;" in text
    assert not re.search(r"\s(src|srcset|action|on\w+)=", text)
    assert "url(" not in text and "@import" not in text
    assert re.findall(r"\w+://[^\"]*", text) == ["http://www.w3.org/2000/svg"]


def test_the_page_of_a_full_history_is_under_20_kb(
    app: TestApp, clock: FakeClock
) -> None:
    name = "n" * 128
    for i in range(30):
        clock.advance(86400 + (3599 if i % 3 else 0) if i else 0)
        app.get(f"/{name}/1d")
    answer = app.get(f"/{name}", headers={"Accept": BROWSER})
    assert answer.text.count("<rect") == 20  # 20 gaps: the 21st reset is kept
    assert len(answer.body) < 20 * 1024


def test_the_page_when_the_store_is_down_is_a_503(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock))
    answer = app.get("/job", headers={"Accept": BROWSER}, status=503)
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Retry-After"] == "5"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert ">Unavailable</span>" in answer.text
