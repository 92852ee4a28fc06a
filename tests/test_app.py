"""The app: what a request may hold, proxy headers, and its access line."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

import timercheck
from fakes import (
    FakeClock,
)
from support import (
    raw,
    service,
)
from timercheck import (
    App,
    access_line,
)


def test_access_log_has_a_hash_never_the_name(
    app: TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck.access")
    response = app.get("/secret-timer-name/60")
    [line] = [r.getMessage() for r in caplog.records if r.name == "timercheck.access"]
    assert "secret-timer-name" not in line
    assert response.headers["X-Request-Id"] in line
    assert line.split()[1:3] == ["GET", "set_timer"] and " 200 " in line
    duration = float(line.split()[-2].removesuffix("ms"))
    assert 0 < duration < 10_000
    assert line.split()[-1] == "-"  # WebTest gives no REMOTE_ADDR


def test_an_access_line_times_the_request_in_milliseconds() -> None:
    started = time.perf_counter() - 100
    reply = timercheck.Reply(200, "OK")
    line = access_line({"REQUEST_METHOD": "GET"}, "id", "health", "-", reply, started)
    assert 100_000 <= float(line.split()[-2].removesuffix("ms")) < 100_050


@pytest.mark.filterwarnings("ignore:Unknown REQUEST_METHOD")
def test_access_lines_cut_the_method_and_the_client(
    app: TestApp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck.access")
    for method, client, logged_method, logged_client in [
        ("M" * 20, "a" * 70, "M" * 16 + "...", "a" * 64 + "..."),
        ("M" * 16, "a" * 64, "M" * 16, "a" * 64),
    ]:
        caplog.clear()
        app.request("/", method=method, status=405, environ={"REMOTE_ADDR": client})
        [line] = [
            r.getMessage() for r in caplog.records if r.name == "timercheck.access"
        ]
        assert (line.split()[1], line.split()[-1]) == (logged_method, logged_client)
        assert line.split()[2:5] == ["-", "-", "405"]  # no handler, no timer


MALFORMED_PROXY = {"errorMessage": "400: a proxy header is malformed"}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": ":."},  # waitress's own reading raises IndexError
        {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "gopher"},
        {"X-Forwarded-For": "1.2.3.4, 5.6.7.8", "X-Forwarded-Proto": "http, https"},
    ],
)
def test_a_malformed_proxy_header_from_a_trusted_proxy_is_a_400(
    store: Any, clock: FakeClock, headers: dict[str, str]
) -> None:
    lines: list[str] = []
    app = TestApp(
        App(store, clock, access=lines.append, trusted_proxy="*"),
        extra_environ={"REMOTE_ADDR": "10.0.0.1"},
    )
    answer = app.get("/job/60", headers=headers, status=400).json
    assert answer.pop("request_id")
    assert answer == MALFORMED_PROXY
    assert lines[-1].split()[-1] == "10.0.0.1"
    app.get("/job", status=404)  # nothing was set


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("198.51.100.1, 203.0.113.9", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]:4711", "-"),  # a port: not an address
        ("1.2.3.4 GET set_timer 00 200 1ms 9.9.9.9", "-"),
        ("unknown", "-"),
        ("::1%\u00c3\u00a9vil", "-"),  # a zone: free text after an address
        ("fe80::1%" + "x" * 64, "-"),
        ("fe80::1%eth0", "-"),
    ],
)
def test_the_access_line_names_the_client_by_an_address_or_dash(
    app: TestApp, clock: FakeClock, forwarded_for: str, client: str
) -> None:
    lines: list[str] = []
    store = app.app.store
    proxied = TestApp(
        App(store, clock, access=lines.append, trusted_proxy="*"),
        extra_environ={"REMOTE_ADDR": "10.0.0.1"},
    )
    answer = proxied.get(
        "/job/60",
        headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"},
    ).json
    assert answer["read_only_url"].startswith("https://")
    assert lines[-1].split()[-1] == client
    assert len(lines[-1].split()) == 7


def test_proxy_headers_from_anyone_else_are_dropped(
    store: Any, clock: FakeClock
) -> None:
    lines: list[str] = []
    app = TestApp(
        App(store, clock, access=lines.append, trusted_proxy="10.9.9.9"),
        extra_environ={"REMOTE_ADDR": "10.0.0.1"},
    )
    answer = app.get(
        "/job/60", headers={"X-Forwarded-For": ":.", "X-Forwarded-Proto": "https"}
    ).json
    assert answer["read_only_url"].startswith("http://")
    assert lines[-1].split()[-1] == "10.0.0.1"


def test_behind_a_trusted_proxy_its_headers_cannot_break_a_request_or_a_line(
    tmp_path: Path,
) -> None:
    env = {"TIMERCHECK_DB": str(tmp_path / "t.db"), "TIMERCHECK_TRUSTED_PROXY": "*"}
    head = b"GET /job/60 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    with service(env) as server:
        bad = raw(server.port, head + b"X-Forwarded-For: :.\r\n\r\n")
        forged = b"1.2.3.4 GET set_timer 00 200 1ms 9.9.9.9"
        good = raw(server.port, head + b"X-Forwarded-For: " + forged + b"\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    body = json.loads(bad.partition(b"\r\n\r\n")[2])
    assert body["errorMessage"] == MALFORMED_PROXY["errorMessage"]
    assert good.startswith(b"HTTP/1.1 200 OK")
    log = server.output()
    assert "Traceback" not in log and "IndexError" not in log
    access = [line for line in log.splitlines() if " timercheck.access " in line]
    # the client: the proxy's own address where its header was unreadable
    assert [(line.split()[-3], line.split()[-1]) for line in access[-2:]] == [
        ("400", "127.0.0.1"),
        ("200", "-"),
    ]


def test_a_long_query_is_414(app: TestApp) -> None:
    app.get("/job?x=" + "a" * 1022, status=404)  # 1,024 characters
    answer = app.get("/job?x=" + "a" * 1023, status=414)
    assert answer.json["errorMessage"] == "414: the query string is too long"


def test_many_query_parameters_are_400(app: TestApp) -> None:
    app.get("/job?" + "&".join(f"p{i}=1" for i in range(16)), status=404)
    answer = app.get("/job?" + "&".join(f"p{i}=1" for i in range(17)), status=400)
    assert answer.json["errorMessage"] == "400: too many query parameters"


def test_many_headers_are_431(app: TestApp) -> None:
    # WebTest sends Host too: 63 + 1 = 64 header fields pass, 65 do not.
    app.get("/", headers={f"X-H{i}": "1" for i in range(63)})
    answer = app.get("/", headers={f"X-H{i}": "1" for i in range(64)}, status=431)
    assert answer.json["errorMessage"] == "431: too many header fields"


def test_only_the_start_of_a_user_agent_is_read(app: TestApp, clock: FakeClock) -> None:
    slack = {"User-Agent": "Slackbot 1.0 " + "x" * 250_000}
    assert app.get("/job/60", headers=slack, status=404).headers["X-Timer-Ignored"]
    late = {"User-Agent": "x" * 600 + " Slackbot"}
    assert "X-Timer-Ignored" not in app.get("/job/60", headers=late).headers
