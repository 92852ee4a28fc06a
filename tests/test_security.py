"""A timer's name is its only secret. Read-only URLs that never write and
never show the name; logs nobody can forge and that never show a name;
request heads with bounds. WebTest on both stores, then the real server."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sqlite3
import string
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from fakes import FailingStore, FakeClock, record_calls
from support import call, create_table, dynamo_env, moto_server, raw, service
from timercheck import (
    App,
    DynamoStore,
    SafeLines,
    SqliteStore,
    TokenKeys,
    follow_secret,
    printable,
)

TOKEN = re.compile(r"[A-Za-z0-9_-]{22,}")


def read_only_url(app: TestApp, name: str, seconds: int = 60) -> str:
    answer = app.get(f"/{name}/{seconds}").json
    assert (
        answer["read_only_url"] == f"http://localhost:80/-/{answer['read_only_token']}"
    )
    return f"/-/{answer['read_only_token']}"


# -- read-only URLs --


def test_a_read_only_url_checks_without_the_name(
    app: TestApp, clock: FakeClock
) -> None:
    url = read_only_url(app, "nightly-backup")
    assert TOKEN.fullmatch(url[3:]) and "nightly" not in url
    clock.advance(20)
    answer = app.get(url)
    assert answer.headers["X-Timer-Status"] == "running"
    body = answer.json
    assert body == {
        "timer": "timer",
        "request_id": answer.headers["X-Request-Id"],
        "status": "ok",
        "now": body["now"],
        "start_time": body["now"] - 20,
        "start_seconds": 60,
        "seconds_elapsed": 20,
        "seconds_remaining": 40,
        "message": "Timer still running",
        "misses": 0,
    }
    assert "nightly-backup" not in answer.text
    assert app.head(url).body == b""


def test_a_read_only_url_answers_every_view(app: TestApp, clock: FakeClock) -> None:
    url = read_only_url(app, "job")
    clock.advance(70)
    app.get("/job/60")  # expired and reset: one miss
    assert app.get(f"{url}?format=text").text == "missed 1 remaining 60\n"
    assert app.get(f"{url}?format=text&since=1").text == "running 60\n"
    assert app.get(f"{url}?since=0", status=504).json["status"] == "missed"
    assert app.get(f"{url}?since=1").json["status"] == "ok"
    svg = app.get(f"{url}?format=svg&label=nightly%20backup")
    assert ">nightly backup</text>" in svg.text and "missed 1×" in svg.text
    assert ">job<" not in svg.text
    shields = app.get(f"{url}?format=shields").json
    assert shields == {
        "schemaVersion": 1,
        "label": "timer",
        "message": "missed 1× · running",
        "color": "yellow",
    }
    clock.advance(60)
    assert app.get(url, status=504).json["status"] == "expired"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_a_read_only_url_never_writes(
    app: TestApp, clock: FakeClock, method: str
) -> None:
    url = read_only_url(app, "job")
    clock.advance(61)
    read_only = "405: this is a read-only URL: it answers GET and HEAD, and never sets"
    for path in (url, f"{url}/600", f"{url}/600/more", f"{url}/"):
        answer = app.request(path, method=method, status=405)
        assert answer.headers["Allow"] == "GET, HEAD"
        assert answer.json["errorMessage"] == read_only
    for path in (f"{url}/600", f"{url}/0", f"{url}/x"):
        for verb in ("GET", "HEAD"):
            answer = app.request(path, method=verb, status=405)
            assert answer.headers["Allow"] == "GET, HEAD"
    assert app.get(f"{url}/60", status=405).json["errorMessage"] == read_only
    assert app.get("/job", status=504).json["start_seconds"] == 60


def test_a_read_only_check_on_dynamodb_only_reads(
    dynamo: DynamoStore, clock: FakeClock
) -> None:
    app = TestApp(App(dynamo, clock))
    url = read_only_url(app, "job")
    calls = record_calls(dynamo.client)
    for query in ("", "?format=svg", "?format=text", "?since=0", "?format=shields"):
        app.get(url + query)
    assert [operation for operation, _ in calls] == ["GetItem"] * 5


def test_the_token_is_stable_for_the_store_and_opaque(
    store: Any, clock: FakeClock
) -> None:
    first = TestApp(App(store, clock))
    url = read_only_url(first, "job")
    assert read_only_url(first, "job") == url
    again = TestApp(App(store, clock))  # another task, or after a restart
    assert read_only_url(again, "job") == url
    assert read_only_url(again, "jobs") != url
    assert again.get(url).json["status"] == "ok"


def test_a_token_from_another_store_or_altered_is_unknown(
    app: TestApp, tmp_path: Path, clock: FakeClock
) -> None:
    url = read_only_url(app, "job")
    elsewhere = TestApp(App(SqliteStore(str(tmp_path / "other.db")), clock))
    elsewhere.get("/job/60")
    message = "404: no timer has that read-only URL"
    assert elsewhere.get(url, status=404).json["errorMessage"] == message
    altered = url[:-2] + ("A" if url[-2] != "A" else "B") + url[-1]
    assert app.get(altered, status=404).json["errorMessage"] == message
    for token in ("x", "job", "-" * 40, "%00" * 30):
        app.get(f"/-/{token}", status=404)


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


def test_a_thread_s_uncaught_error_is_one_log_line() -> None:
    from timercheck import thread_failed

    seen: list[tuple[str, Any]] = []

    class Seen(logging.Handler):  # before the root's handlers and their filters
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), record.exc_info))
            assert SafeLines().filter(record)
            seen.append((record.getMessage(), record.exc_info))

    def fail() -> None:
        raise RuntimeError("bad\nday")

    handler = Seen()
    logging.getLogger("timercheck").addHandler(handler)
    previous, threading.excepthook = threading.excepthook, thread_failed
    try:
        thread = threading.Thread(target=fail, name="worker")
        thread.start()
        thread.join()
    finally:
        threading.excepthook = previous
        logging.getLogger("timercheck").removeHandler(handler)
    (message, exc_info), (line, after) = seen
    assert message == "thread worker: unexpected error"
    assert exc_info and exc_info[0] is RuntimeError
    assert line.startswith(
        "thread worker: unexpected error: RuntimeError: bad\\x0aday |"
    )
    assert "\n" not in line and after is None


def test_a_traceback_is_one_escaped_line_that_says_what_went_wrong_first() -> None:
    try:
        raise KeyError("bad\nthing")
    except KeyError:
        record = logging.LogRecord(
            "timercheck", logging.ERROR, __file__, 1, "request %s: boom", ("r1",),
            sys.exc_info(),
        )  # fmt: skip
    assert SafeLines().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert "\n" not in line.replace("\\n", "")
    assert line.startswith("request r1: boom: KeyError: 'bad\\nthing' | ")
    assert "\\x0a" in line and "test_security.py" in line
    assert record.exc_info is None


def test_the_sqlite_files_are_for_the_service_s_user_only(
    tmp_path: Path, clock: FakeClock
) -> None:
    old = os.umask(0o022)
    try:
        app = TestApp(App(SqliteStore(str(tmp_path / "t.db")), clock))
        app.get("/job/60")
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"t.db": 0o600, "t.db-wal": 0o600, "t.db-shm": 0o600}


def test_a_token_has_one_spelling(app: TestApp) -> None:
    """A 40-character name seals to 80 bytes, 107 base64 characters whose
    last carries 2 spare bits: the 3 other spellings are not the token."""
    url = read_only_url(app, "x" * 40)
    token = url.rpartition("/")[2]
    assert len(token) == 107
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(token[-1])
    for spare in (1, 2, 3):
        other = token[:-1] + alphabet[last ^ spare]
        assert app.get(f"/-/{other}", status=404).json["errorMessage"] == (
            "404: no timer has that read-only URL"
        )
    assert app.get(f"/-/{token}").json["timer"] == "timer"


@pytest.mark.parametrize(
    ("name", "length"),
    [
        ("a", 64),
        ("x" * 32, 64),
        ("x" * 33, 107),
        ("X" * 65, 150),
        ("x" * 128, 192),
        ("jobX", 64),
    ],
)
def test_a_token_shows_only_a_bucket_of_name_lengths(name: str, length: int) -> None:
    keys = TokenKeys(b"\1" * 32)
    assert len(keys.token(name)) == length
    assert keys.name(keys.token(name)) == name


def test_the_keys_of_a_known_secret() -> None:
    """Literal vectors: the token and the log hash of a name under the secret
    00 01 .. 1f. Any change to how keys are derived, sealed or hashed (and so
    every read-only URL already handed out) shows here."""
    keys = TokenKeys(bytes(range(32)))
    token = "IzHJJzkp3J1XiVx8MTnvQ6sp84CDkBL29Ks0NdRR_60ThXQhvR4yAN2XHQ-QBPc1"
    assert keys.token("nightly-backup") == token
    assert keys.name(token) == "nightly-backup"
    assert keys.name_hash("nightly-backup") == "d2e3deb3169e7e1f55e6d1e9"
    assert keys.name_hash("nightly-backup2") != keys.name_hash("nightly-backup")


def test_a_token_cannot_be_read_without_the_secret() -> None:
    token = TokenKeys(b"\1" * 32).token("victim")
    assert TokenKeys(b"\1" * 32).name(token) == "victim"
    assert TokenKeys(b"\2" * 32).name(token) is None
    assert "victim" not in token


@pytest.mark.parametrize("label", ["", "x" * 65, "a%0Ab", "a%1Bb", "a%09b"])
def test_a_bad_label_is_400(app: TestApp, label: str) -> None:
    url = read_only_url(app, "job")
    answer = app.get(f"{url}?format=svg&label={label}", status=400).json
    message = "400: label must be 1 to 64 printable characters"
    assert answer["errorMessage"] == message


@pytest.mark.parametrize("label", ["x", "y" * 64, "nightly backup", "a·b"])
def test_a_label_of_1_to_64_printable_characters(app: TestApp, label: str) -> None:
    url = read_only_url(app, "job")
    assert (
        app.get(url, params={"format": "shields", "label": label}).json["label"]
        == label
    )


def test_an_svg_can_run_nothing(app: TestApp) -> None:
    answer = app.get("/job?format=svg")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    policy = "default-src 'none'; style-src 'unsafe-inline'"
    assert answer.headers["Content-Security-Policy"] == policy


# -- bounded requests --


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


# -- logs --


def test_log_text_is_escaped_and_cut() -> None:
    assert printable("a\nb\x1b[31mc\x00\u2028", 100) == "a\\x0ab\\x1b[31mc\\x00\\x2028"
    assert printable("x" * 20, 8) == "x" * 8 + "..."


def test_every_log_line_is_cut_at_2000_characters() -> None:
    for size, logged in ((2000, "x" * 2000), (2001, "x" * 2000 + "...")):
        record = logging.LogRecord(
            "timercheck", logging.INFO, __file__, 1, "%s", ("x" * size,), None
        )
        assert SafeLines().filter(record)
        assert record.getMessage() == logged


def test_waitress_lines_never_hold_a_path() -> None:
    record = logging.LogRecord(
        "waitress", logging.INFO, __file__, 1,
        "Client disconnected while serving %s", ("/victim\n2026 INFO forged",), None,
    )  # fmt: skip
    assert SafeLines().filter(record)
    assert record.getMessage() == "Client disconnected while serving a request"


# -- the real server --


def lines_written(output: str) -> list[str]:
    return [line for line in output.splitlines() if line]


STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ ")


def test_no_log_line_can_be_forged_or_hold_a_name(tmp_path: Path) -> None:
    attacks = [
        b"GET /victim%0a2026-01-01%2000:00:00,000%20INFO%20forged/60 HTTP/1.1\r\n",
        b"GET /victim%1b[2J/60 HTTP/1.1\r\n",
        b"GET /victim%00zero/60 HTTP/1.1\r\n",
        b"GET /victim-name/60 HTTP/1.1\r\n",
        b"X" * 5000 + b" /victim-name/60 HTTP/1.1\r\n",
        b"GET\x1b[2J /victim-name HTTP/1.1\r\n",
    ]
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        for attack in attacks:
            # pipelined, then gone before the answers: waitress logs a disconnect
            request = attack + b"Host: x\r\n\r\n"
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(request * 300)
                sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
        assert call(server.port, "GET", "/").status == 200
        output = server.output()
    assert "Client disconnected while serving a request" in output
    assert "victim" not in output
    assert "INFO forged" not in output
    for line in lines_written(output):
        assert STAMP.match(line), line
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line), line
        assert len(line) < 2200


def test_a_head_over_16_kb_is_refused(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n"
        assert (
            raw(server.port, big)
            .split(b"\r\n")[0]
            .endswith(b" 431 Request Header Fields Too Large")
        )
        small = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 15000
        assert raw(server.port, small + b"\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200 "
        )


def test_expect_100_continue_without_a_body_is_served(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        answer = raw(
            server.port,
            b"GET /job/60 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:100]
        assert call(server.port, "GET", "/job").status == 200
        with_body = raw(
            server.port,
            b"PUT /job/90 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        assert b"HTTP/1.1 200 OK\r\n" in with_body
        assert call(server.port, "GET", "/job").json["start_seconds"] == 90


def token_from(port: int, name: str) -> str:
    return call(port, "GET", f"/{name}/60").json["read_only_token"]


def delete_secret(store: Any) -> None:
    """What the README says to do to revoke every read-only URL."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("DELETE FROM secrets")
        return
    store.client.delete_item(TableName=store.table, Key={"timer": {"S": "~secret"}})


def test_a_deleted_secret_is_replaced_and_adopted_by_every_task(
    store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Task A runs; the secret is deleted; task B starts and makes a new one;
    within a minute A reads the store's secret again and adopts B's. No
    restart, and both agree: the old URL answers 404 on both."""
    a, b = App(store, clock), App(store, clock)
    first = TestApp(a)
    old = read_only_url(first, "job")
    delete_secret(store)
    second = TestApp(b)
    new = read_only_url(second, "job")
    assert new != old
    assert first.get(new, status=404)  # A still has the old secret
    caplog.set_level("INFO", "timercheck")
    a.refresh_token_keys()
    assert first.get(new).json["status"] == "ok"
    for app in (first, second):
        app.get(old, status=404)
    assert read_only_url(first, "job") == new
    assert [r.getMessage() for r in caplog.records if r.name == "timercheck"] == [
        "the store's secret changed: read-only URLs made before no longer answer"
    ]
    a.refresh_token_keys()  # unchanged: nothing more said
    assert len([r for r in caplog.records if r.name == "timercheck"]) == 1


def test_every_task_reads_the_secret_again_every_minute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = App(FailingStore())  # down: the loop goes on
    reads: list[float] = []

    class Stop(Exception):
        pass

    real, caller = time.sleep, threading.get_ident()

    def sleep(seconds: float) -> None:
        if threading.get_ident() != caller:  # a server's, left by another test
            real(seconds)
            return
        reads.append(seconds)
        if len(reads) == 3:
            raise Stop

    monkeypatch.setattr(time, "sleep", sleep)
    with pytest.raises(Stop):
        follow_secret(app)
    assert reads == [60.0, 60.0, 60.0]
    store = SqliteStore(str(tmp_path / "t.db"))
    app = App(store)
    reads.clear()
    with pytest.raises(Stop):
        follow_secret(app)
    assert app.token_keys().token("job") == TokenKeys(store.secret()).token("job")


def test_two_processes_and_a_restart_share_tokens_on_sqlite(tmp_path: Path) -> None:
    env = {"TIMERCHECK_DB": str(tmp_path / "t.db")}
    with service(env) as one, service(env) as two:
        token = token_from(one.port, "job")
        assert token_from(two.port, "job") == token
        assert call(two.port, "GET", f"/-/{token}").status == 200
    with service(env) as again:
        assert token_from(again.port, "job") == token


def test_two_processes_and_a_restart_share_tokens_on_dynamodb() -> None:
    with moto_server() as store:
        env = dynamo_env(store.port)
        create_table(env)
        with service(env) as one, service(env) as two:
            token = token_from(one.port, "job")
            assert token_from(two.port, "job") == token
        with service(env) as again:
            assert call(again.port, "GET", f"/-/{token}").status == 200


def test_the_read_only_url_follows_the_scheme_and_server_name(
    app: TestApp,
) -> None:
    environ = {
        "HTTP_HOST": "",
        "SERVER_NAME": "timers.internal",
        "wsgi.url_scheme": "https",
    }
    answer = app.get("/job/60", extra_environ=environ).json
    expected = f"https://timers.internal/-/{answer['read_only_token']}"
    assert answer["read_only_url"] == expected
    environ["HTTP_HOST"] = "bad host"
    assert app.get("/job/60", extra_environ=environ).json["read_only_url"] == expected


@pytest.mark.parametrize("host", [None, "bad host"])
def test_a_server_that_leaves_out_the_server_name_and_scheme_still_gets_a_url(
    store: Any, clock: FakeClock, host: str | None
) -> None:
    """PEP 3333 requires SERVER_NAME and wsgi.url_scheme; a server that
    leaves them out gets http://localhost, not a 500."""
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/job/60"}
    if host is not None:
        environ["HTTP_HOST"] = host
    started: list[str] = []
    body = App(store, clock)(environ, lambda status, headers: started.append(status))
    answer = json.loads(b"".join(body))
    assert started == ["200 OK"]
    assert answer["read_only_url"] == f"http://localhost/-/{answer['read_only_token']}"


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("timercheck.example.com", "http://timercheck.example.com"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("evil.example/<script>", "http://localhost"),
        ("a b", "http://localhost"),
    ],
)
def test_the_read_only_url_is_on_the_host_asked_for(
    app: TestApp, host: str, origin: str
) -> None:
    answer = app.get("/job/60", headers={"Host": host}).json
    assert answer["read_only_url"] == f"{origin}/-/{answer['read_only_token']}"
