"""The HTTP contract, driven through WebTest on both stores with a fake clock."""

from __future__ import annotations

import io
import logging
import re
import sqlite3
import threading
import time
from typing import Any

import boto3
import botocore.exceptions
import pytest
from webtest import TestApp

import timercheck
from fakes import (
    START,
    FailingStore,
    FakeClock,
    StuckStore,
    failing_responses,
    record_sleeps,
    scripted_responses,
    start_stuck_calls,
)
from support import free_port
from timercheck import (
    App,
    Breaker,
    Config,
    DynamoDB,
    DynamoStore,
    Miss,
    SqliteStore,
    StoreUnavailable,
    Timer,
    access_line,
    access_writer,
    make_store,
    probe,
)

T0 = int(START)
CHECK_FIELDS = {
    "timer",
    "request_id",
    "status",
    "now",
    "start_time",
    "start_seconds",
    "seconds_elapsed",
    "seconds_remaining",
    "message",
    "misses",
}


# -- health and robots --


@pytest.mark.parametrize("method", ["get", "head"])
def test_health_is_ok_text(app: TestApp, method: str) -> None:
    response = getattr(app, method)("/")
    assert response.status_int == 200
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Length"] == "2"
    assert response.body == (b"OK" if method == "get" else b"")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-Id"]
    assert "X-Timer-Status" not in response.headers


def test_health_never_touches_the_store(clock: FakeClock) -> None:
    store = FailingStore(StoreUnavailable("down"))
    app = TestApp(App(store, clock))
    assert app.get("/").text == "OK"
    assert app.head("/").status_int == 200
    assert store.calls == 0


def test_an_empty_path_is_the_root(app: TestApp) -> None:
    """PEP 3333: PATH_INFO is empty when the request is for the app's root."""
    assert app.get("/", extra_environ={"PATH_INFO": ""}).text == "OK"


def test_robots_txt_disallows_everything(app: TestApp) -> None:
    response = app.get("/robots.txt")
    assert response.status_int == 200
    assert response.text == "User-agent: *\nDisallow: /\n"
    assert response.headers["Content-Type"] == "text/plain"


def test_robots_txt_is_not_a_timer_name(app: TestApp) -> None:
    assert "reserved" in app.get("/robots.txt/60", status=400).json["errorMessage"]
    app.delete("/robots.txt", status=405)


# -- never set, set, check --


def test_unknown_timer_is_404(app: TestApp) -> None:
    response = app.get("/nightly-backup", status=404)
    assert response.json["errorMessage"] == "404: timer has never been set"
    assert response.json["timer"] == "nightly-backup"
    assert response.headers["X-Timer-Status"] == "never-set"
    assert response.json["request_id"] == response.headers["X-Request-Id"]


def test_set_answers_with_the_new_countdown(app: TestApp) -> None:
    response = app.get("/nightly-backup/4200")
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Timer-Status"] == "running"
    body = response.json
    token = body.pop("read_only_token")
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", token)  # 16 + 32 bytes, base64
    assert body.pop("read_only_url") == f"http://localhost:80/-/{token}"
    assert body == {
        "timer": "nightly-backup",
        "request_id": response.headers["X-Request-Id"],
        "status": "ok",
        "now": T0,
        "message": "Timer countdown updated",
        "new_start_time": T0,
        "new_start_seconds": 4200,
        "misses": 0,
        "ended_miss": False,
    }


def test_running_timer_answers_200_with_its_fields(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(20.5)
    response = app.get("/job")
    assert response.headers["X-Timer-Status"] == "running"
    assert response.json == {
        "timer": "job",
        "request_id": response.headers["X-Request-Id"],
        "status": "ok",
        "now": T0 + 20,
        "start_time": T0,
        "start_seconds": 60,
        "seconds_elapsed": 20,
        "seconds_remaining": 40,
        "message": "Timer still running",
        "misses": 0,
    }


def test_timer_runs_until_the_second_before_expiry(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(59.999)
    response = app.get("/job")
    assert response.json["seconds_remaining"] == 1
    assert response.headers["X-Timer-Status"] == "running"


def test_timer_expires_at_the_exact_second(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(60)
    response = app.get("/job", status=504)
    assert response.headers["X-Timer-Status"] == "expired"
    assert response.json == {
        "timer": "job",
        "request_id": response.headers["X-Request-Id"],
        "status": "expired",
        "now": T0 + 60,
        "start_time": T0,
        "start_seconds": 60,
        "seconds_elapsed": 60,
        "seconds_remaining": 0,
        "message": "Timer timed out",
        "errorMessage": "timer timed out",
        "misses": 0,
    }


def test_expired_timer_stays_expired(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(61)
    response = app.get("/job", status=504)
    assert response.json["seconds_remaining"] == -1
    assert response.json["seconds_elapsed"] == 61


@pytest.mark.parametrize("millis", [0.005, 0.05, 0.6, 0.999])
def test_start_is_kept_to_the_millisecond(
    app: TestApp, clock: FakeClock, millis: float
) -> None:
    clock.advance(millis)
    app.get("/job/10")
    clock.advance(9.999)
    running = app.get("/job").json
    assert (running["now"], running["seconds_remaining"]) == (T0 + 10, 1)
    clock.advance(0.001)
    response = app.get("/job", status=504)
    assert response.json["start_time"] == T0
    assert response.json["now"] == T0 + 10


def test_a_clock_behind_the_start_reads_as_no_time_elapsed(
    app: TestApp, clock: FakeClock
) -> None:
    """Another task, whose clock is a little behind, checks the timer."""
    clock.advance(10)
    app.get("/job/60")
    clock.advance(-3)
    answer = app.get("/job").json
    assert (answer["seconds_elapsed"], answer["seconds_remaining"]) == (0, 60)
    assert answer["start_time"] == T0 + 10


def test_zero_seconds_expires_at_once(app: TestApp) -> None:
    response = app.get("/job/0")
    assert response.headers["X-Timer-Status"] == "expired"
    assert app.get("/job", status=504).json["seconds_remaining"] == 0


def test_names_are_case_sensitive(app: TestApp) -> None:
    app.get("/Job/60")
    app.get("/job", status=404)


# -- resets --


def test_reset_reports_the_state_it_replaced(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(25)
    response = app.get("/job/120")
    assert response.json["new_start_time"] == T0 + 25
    assert response.json["new_start_seconds"] == 120
    assert response.json["start_time"] == T0
    assert response.json["start_seconds"] == 60
    assert response.json["seconds_elapsed"] == 25
    assert response.json["seconds_remaining"] == 35
    assert app.get("/job").json["seconds_remaining"] == 120


def test_reset_revives_an_expired_timer(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(90)
    app.get("/job", status=504)
    response = app.get("/job/60")
    assert response.headers["X-Timer-Status"] == "running"
    assert response.json["seconds_remaining"] == -30
    clock.advance(59)
    assert app.get("/job").json["seconds_remaining"] == 1


def test_reset_just_before_expiry_keeps_it_running(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(59)
    app.get("/job/60")
    clock.advance(59)
    assert app.get("/job").json["seconds_remaining"] == 1


@pytest.mark.parametrize("method", ["post", "put"])
def test_post_and_put_set_too(app: TestApp, method: str) -> None:
    getattr(app, method)("/job/30", "ignored body")
    assert app.get("/job").json["start_seconds"] == 30


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        ("90", 90),
        ("90s", 90),
        ("70m", 4200),
        ("25h", 90000),
        ("7d", 604800),
        ("2w", 1209600),
        ("007", 7),
        ("0m", 0),
        ("0000000001", 1),
        ("999999999", 999_999_999),
        ("1653w", 999_734_400),
    ],
)
def test_seconds_take_units(app: TestApp, seconds: str, expected: int) -> None:
    assert app.get(f"/job/{seconds}").json["new_start_seconds"] == expected


# -- HEAD --


def test_head_answers_like_get_without_a_body(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    for advance, status in [(0, 200), (60, 504)]:
        clock.advance(advance)
        got, head = app.get("/job", status=status), app.head("/job", status=status)
        assert head.body == b""
        assert head.headers["Content-Length"] == got.headers["Content-Length"]
        assert head.headers["X-Timer-Status"] == got.headers["X-Timer-Status"]
    assert app.head("/other", status=404).headers["X-Timer-Status"] == "never-set"


def test_head_on_a_set_url_sets_nothing(app: TestApp, clock: FakeClock) -> None:
    response = app.head("/job/60", status=404)
    assert response.headers["X-Timer-Status"] == "never-set"
    app.get("/job", status=404)
    app.get("/job/60")
    clock.advance(60)
    assert app.head("/job/600", status=504).headers["X-Timer-Status"] == "expired"
    app.get("/job", status=504)


def test_head_on_a_set_url_checks_its_seconds(app: TestApp) -> None:
    app.head("/job/abc", status=400)


# -- delete --


def test_delete_forgets_a_running_timer(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(10)
    response = app.delete("/job")
    assert response.status_int == 200
    assert response.headers["X-Timer-Status"] == "running"
    assert response.json == {
        "timer": "job",
        "request_id": response.headers["X-Request-Id"],
        "status": "ok",
        "now": T0 + 10,
        "start_time": T0,
        "start_seconds": 60,
        "seconds_elapsed": 10,
        "seconds_remaining": 50,
        "misses": 0,
        "message": "Timer deleted",
    }
    app.get("/job", status=404)


def test_delete_of_an_expired_timer_says_it_had_expired(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(70)
    response = app.delete("/job")
    assert response.status_int == 200
    assert response.headers["X-Timer-Status"] == "expired"
    assert response.json["status"] == "expired"
    assert response.json["timer"] == "job"
    assert response.json["seconds_remaining"] == -10
    assert "errorMessage" not in response.json


def test_delete_of_an_unknown_timer_is_404(app: TestApp) -> None:
    response = app.delete("/job", status=404)
    assert response.json == {
        "timer": "job",
        "request_id": response.headers["X-Request-Id"],
        "errorMessage": "404: timer has never been set",
    }
    assert response.headers["X-Timer-Status"] == "never-set"


# -- retention --


def test_timer_past_its_retention_reads_as_never_set(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/10")
    clock.advance(10 + 30 * 86400 - 1)
    app.get("/job", status=504)
    clock.advance(1)
    app.get("/job", status=404)
    response = app.get("/job/10")
    assert "start_time" not in response.json
    app.get("/job")


def test_retention_is_configurable(store: Any, clock: FakeClock) -> None:
    app = TestApp(App(store, clock, retention_days=1))
    app.get("/job/10")
    clock.advance(10 + 86400)
    app.get("/job", status=404)
    app.delete("/job", status=404)


# -- query strings --


def test_unknown_query_parameters_are_ignored(app: TestApp) -> None:
    app.get("/job/60?token=abc&x")
    assert app.get("/job?uptime_kuma_cachebuster=123").json["start_seconds"] == 60


# -- bad input --


@pytest.mark.parametrize(
    "seconds",
    [
        "-1",
        "1.5",
        "+5",
        "5_000",
        "abc",
        "\u0665",
        "\u00b2",
        "12345678901",
        "9999999999",
        "1000000000",
        "99999999w",
        "5S",
        "5ms",
        "5 ",
        " 5",
        "5\n",
        "0x10",
        "1e9",
        "",
        "m",
    ],
)
def test_bad_seconds_are_400(app: TestApp, seconds: str) -> None:
    response = app.get(
        "/job/x", extra_environ={"PATH_INFO": f"/job/{seconds}"}, status=400
    )
    assert response.json["errorMessage"] == (
        "400: seconds must be 1 to 10 digits, optionally followed by one unit"
        " s, m, h, d or w (90, 90s, 70m, 25h, 7d, 2w)"
    ) or response.json["errorMessage"] == (
        "400: seconds must be at most 999999999 in all"
    )
    assert "X-Timer-Status" not in response.headers
    app.get("/job", status=404)


@pytest.mark.parametrize(
    "name",
    [
        "-job",
        ".job",
        "..",
        ".",
        "~",
        "a b",
        "caf\u00e9",
        "job\n",
        "job\x00",
        "job\r\nX-Injected: 1",
        "a" * 129,
        "a" * 10_000,
        "job:1",
        "job@x",
        "job%",
        "\u2603",
    ],
)
def test_bad_names_are_400(app: TestApp, name: str) -> None:
    for path in (f"/{name}", f"/{name}/60"):
        response = app.get("/x", extra_environ={"PATH_INFO": path}, status=400)
        message = response.json["errorMessage"]
        assert message.startswith("400: a timer name is 1 to 128 characters")
        assert len(name) < 2 or name not in response.text


def test_longest_name_is_fine(app: TestApp) -> None:
    name = "a" * 128
    app.get(f"/{name}/60")
    assert app.get(f"/{name}").json["timer"] == name


@pytest.mark.parametrize("name", ["A", "0", "a.b_c~d-e", "9-lives", "x..y"])
def test_good_names(app: TestApp, name: str) -> None:
    app.get(f"/{name}/60")
    app.get(f"/{name}")


def test_encoded_slash_in_a_name_is_400(app: TestApp) -> None:
    environ = {"PATH_INFO": "/a/b/60", "REQUEST_URI": "/a%2Fb/60"}
    assert (
        "name" in app.get("/", extra_environ=environ, status=400).json["errorMessage"]
    )
    environ = {"PATH_INFO": "/a/b", "REQUEST_URI": "/a%2fb"}
    app.get("/", extra_environ=environ, status=400)
    app.get("/a", status=404)


def test_control_characters_in_the_raw_target_are_400(app: TestApp) -> None:
    environ = {"PATH_INFO": "/ab/60", "REQUEST_URI": "/a\tb/60"}
    app.get("/", extra_environ=environ, status=400)
    app.get("/ab", status=404)


def test_a_raw_path_starting_with_two_slashes_is_400(app: TestApp) -> None:
    environ = {"PATH_INFO": "/60", "REQUEST_URI": "//job/60"}
    assert app.get("/", extra_environ=environ, status=400).json["errorMessage"] == (
        "400: the path must be /{timer} or /{timer}/{seconds}"
    )


def test_encoded_slash_in_the_query_is_fine(app: TestApp) -> None:
    environ = {"PATH_INFO": "/job/60", "REQUEST_URI": "/job/60?next=%2F"}
    app.get("/", extra_environ=environ)


@pytest.mark.parametrize("path", ["/a/b/c", "/job/60/", "//", "/a//b"])
def test_other_paths_are_400(app: TestApp, path: str) -> None:
    response = app.get("/", extra_environ={"PATH_INFO": path}, status=400)
    assert response.json["errorMessage"].startswith("400: ")


def test_the_messages_of_a_400_say_what_was_wrong(app: TestApp) -> None:
    def message(path: str) -> str:
        return app.get(path, status=400).json["errorMessage"]

    assert message("/a/b/c") == "400: the path must be /{timer} or /{timer}/{seconds}"
    assert message("/robots.txt/60") == "400: that timer name is reserved"
    formats = "400: format must be json, history, html, svg, shields or text"
    assert message("/job?format=xml") == formats
    since = "400: since must be a count of misses, 0 or more"
    assert message("/job?since=x") == since


def test_times_in_answers_are_whole_seconds(app: TestApp, clock: FakeClock) -> None:
    clock.advance(0.75)
    answer = app.get("/job/60")
    assert '"now":1700000000,' in answer.text
    assert '"new_start_time":1700000000,' in answer.text


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/", "GET, HEAD"),
        ("DELETE", "/", "GET, HEAD"),
        ("POST", "/job", "GET, HEAD, DELETE"),
        ("PUT", "/job", "GET, HEAD, DELETE"),
        ("PATCH", "/job", "GET, HEAD, DELETE"),
        ("OPTIONS", "/job", "GET, HEAD, DELETE"),
        ("DELETE", "/job/60", "GET, HEAD, POST, PUT"),
        ("PATCH", "/job/60", "GET, HEAD, POST, PUT"),
        ("TRACE", "/job/60", "GET, HEAD, POST, PUT"),
        ("PUT", "/robots.txt", "GET, HEAD"),
    ],
)
def test_other_methods_are_405(
    app: TestApp, method: str, path: str, allow: str
) -> None:
    response = app.request(path, method=method, status=405)
    assert response.headers["Allow"] == allow
    assert response.json["errorMessage"] == "405: method not allowed"
    app.get("/job", status=404)


# -- store faults --


TIMER_REQUESTS = [
    ("GET", "/job"),
    ("HEAD", "/job"),
    ("GET", "/job/60"),
    ("POST", "/job/60"),
    ("HEAD", "/job/60"),
    ("DELETE", "/job"),
]


def assert_unavailable(app: TestApp) -> None:
    """Every timer request is a 503 within the bounded time; `/` is still OK."""
    for method, path in TIMER_REQUESTS:
        started = time.monotonic()
        response = app.request(path, method=method, status=503)
        assert time.monotonic() - started < 3
        assert response.headers["Retry-After"]
        assert "X-Timer-Status" not in response.headers
        if method != "HEAD":
            assert response.json["errorMessage"] == "503: timer store unavailable"
            assert "Traceback" not in response.text and "File " not in response.text
    assert app.get("/").text == "OK"


@pytest.mark.parametrize(
    ("status", "code", "attempts"),
    [  # botocore retries throttling and 5xx once more (2 attempts in all)
        (400, "ThrottlingException", 2),
        (400, "ProvisionedThroughputExceededException", 2),
        (500, "InternalServerError", 2),
        (503, "ServiceUnavailable", 2),
        (400, "ExpiredTokenException", 1),
        (403, "AccessDeniedException", 1),
        (400, "UnrecognizedClientException", 1),
    ],
)
def test_dynamodb_errors_are_503(
    dynamo: DynamoStore,
    clock: FakeClock,
    status: int,
    code: str,
    attempts: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "timercheck")
    sent = failing_responses(dynamo.client, status, code, "secret detail")
    app = TestApp(App(dynamo, clock))
    assert_unavailable(app)
    assert "secret detail" not in app.get("/job", status=503).text
    assert len(sent) == (len(TIMER_REQUESTS) + 1) * attempts
    assert f"store unavailable: dynamodb GetItem: {code}" in caplog.messages[0]


def test_missing_dynamodb_table_is_503_never_404(
    fake_aws: None, clock: FakeClock
) -> None:
    from timercheck import dynamodb_client

    store = DynamoStore("no-such-table", DynamoDB(dynamodb_client("us-east-1")))
    assert_unavailable(TestApp(App(store, clock)))


def test_unreachable_dynamodb_is_503_quickly(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    from timercheck import dynamodb_client

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{free_port()}")
    store = DynamoStore("timers", DynamoDB(dynamodb_client("us-east-1")))
    app = TestApp(App(store, clock))
    started = time.monotonic()
    response = app.get("/job", status=503)
    assert time.monotonic() - started < 3  # refused twice, one backoff under 1 s
    assert response.json["errorMessage"] == "503: timer store unavailable"


def test_read_only_sqlite_is_503(tmp_path: Any, clock: FakeClock) -> None:
    path = str(tmp_path / "timers.db")
    TestApp(App(SqliteStore(path), clock)).get("/job/60")
    app = TestApp(App(SqliteStore(f"file:{path}?mode=ro"), clock))
    assert app.get("/job").json["start_seconds"] == 60
    app.get("/job/60", status=503)
    app.delete("/job", status=503)


def test_locked_sqlite_is_503_after_the_busy_timeout(
    tmp_path: Any, clock: FakeClock
) -> None:
    path = str(tmp_path / "timers.db")
    app = TestApp(App(SqliteStore(path, timeout=0.2), clock))
    app.get("/job/60")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        app.get("/job/60", status=503)
        app.delete("/job", status=503)
        assert app.get("/job").json["start_seconds"] == 60  # WAL: reads go on
    finally:
        other.execute("ROLLBACK")
    app.get("/job/90")


def test_a_file_from_before_secrets_still_serves_checks_read_only(
    tmp_path: Any, clock: FakeClock
) -> None:
    path = str(tmp_path / "timers.db")
    TestApp(App(SqliteStore(path), clock)).get("/job/60")
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE secrets")
    app = TestApp(App(SqliteStore(f"file:{path}?mode=ro"), clock))
    assert app.get("/job").json["start_seconds"] == 60
    app.get("/job/60", status=503)


def test_a_write_waits_for_the_process_write_lock_at_most_its_timeout(
    tmp_path: Any,
) -> None:
    store = SqliteStore(str(tmp_path / "t.db"), timeout=0.1)
    store._write_lock.acquire()
    try:
        with pytest.raises(StoreUnavailable) as refused:
            store.put(Timer("job", 0, 60, 100))
        assert str(refused.value) == "sqlite: timed out waiting for the write lock"
        assert store.get("job") is None  # reads never wait for it
    finally:
        store._write_lock.release()


def test_a_sqlite_error_says_what_sqlite_said(
    tmp_path: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "timers.db")
    TestApp(App(SqliteStore(path), clock)).get("/job/60")
    app = TestApp(App(SqliteStore(f"file:{path}?mode=ro"), clock))
    app.get("/job/60", status=503)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.endswith(
        ": store unavailable: sqlite: attempt to write a readonly database"
    )


def test_a_file_that_is_not_a_database_is_503(tmp_path: Any, clock: FakeClock) -> None:
    path = tmp_path / "timers.db"
    path.write_bytes(b"not a database " * 100)
    assert_unavailable(TestApp(App(SqliteStore(str(path)), clock)))


def test_unexpected_errors_are_a_bland_500_with_the_traceback_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = TestApp(App(FailingStore(KeyError("/secret/path.py")), clock))
    response = app.get("/job", status=500)
    assert response.json["errorMessage"] == "500: server error"
    assert "secret" not in response.text and "Traceback" not in response.text
    request_id = response.headers["X-Request-Id"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert message.startswith(f"request {request_id}: unhandled error")
    # With the process's line filter on the handler (an in-process start of
    # the service adds it), the traceback is in the line itself.
    assert record.exc_info is not None or "KeyError: '/secret/path.py' |" in message


# -- the circuit breaker --


def test_breaker_fails_fast_while_the_store_is_down_then_probes() -> None:
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, failures=3, pause=2.0, clock=clock)
    for _ in range(10):
        with pytest.raises(StoreUnavailable):
            breaker.get("job")
    assert store.calls == 3
    clock.advance(2)
    with pytest.raises(StoreUnavailable):
        breaker.get("job")  # the probe, still down
    assert store.calls == 4
    with pytest.raises(StoreUnavailable):
        breaker.get("job")
    assert store.calls == 4
    store.down = False
    clock.advance(2)
    assert breaker.get("job") is None
    assert breaker.get("job") is None
    assert store.calls == 6


def test_breaker_counts_only_failures_in_a_row() -> None:
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, failures=3, clock=clock)
    for _ in range(5):
        for down in (True, True, False):
            store.down = down
            try:
                breaker.put(Timer("job", 0, 1, 1))
            except StoreUnavailable:
                pass
    assert store.calls == 15


def test_breaker_fails_fast_while_two_calls_are_stuck() -> None:
    store, clock = StuckStore(), FakeClock(0)
    breaker = Breaker(store, slots=4, stuck=1.0, clock=clock)
    threads = start_stuck_calls(breaker, store, 2)
    clock.advance(1.01)
    with pytest.raises(StoreUnavailable) as refused:
        breaker.get("job")
    assert str(refused.value) == "store not answering: failing fast"
    assert store.calls == 2
    store.release.set()
    for thread in threads:
        thread.join()
    assert breaker.get("job") is None


def test_breaker_calls_are_stuck_only_past_a_second() -> None:
    """Two calls in flight for exactly 1 s are slow, not stuck: a third goes
    through. (The clock reads 1000 s: only differences count.)"""
    store, clock = StuckStore(), FakeClock(1000)
    breaker = Breaker(store, clock=clock)
    threads = start_stuck_calls(breaker, store, 2)
    clock.advance(1.0)
    threading.Timer(0.2, store.release.set).start()
    assert breaker.get("job") is None
    for thread in threads:
        thread.join()
    assert store.calls == 3


def test_breaker_defaults_open_after_3_failures_for_2_seconds() -> None:
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, clock=clock)
    assert breaker._slots.qsize() == 6
    for _ in range(3):
        with pytest.raises(StoreUnavailable, match="^down$"):
            breaker.get("job")
    with pytest.raises(StoreUnavailable) as refused:
        breaker.get("job")
    assert str(refused.value) == "store down: failing fast"
    clock.advance(1.999)
    with pytest.raises(StoreUnavailable, match="failing fast"):
        breaker.get("job")
    assert store.calls == 3
    clock.advance(0.001)
    store.down = False
    assert breaker.get("job") is None
    assert store.calls == 4


def test_breaker_lets_one_probe_through_at_a_time() -> None:
    """While the probe after a pause is in flight, other calls still fail fast."""
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, clock=clock)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            breaker.get("job")
    clock.advance(2)
    store.down = False
    entered, release = threading.Event(), threading.Event()
    answer = store.get

    def slow_get(*args: Any) -> None:
        entered.set()
        release.wait(10)
        return answer(*args)

    store.get = slow_get  # type: ignore[method-assign]
    probe_call = threading.Thread(target=breaker.get, args=("job",))
    probe_call.start()
    assert entered.wait(5)
    with pytest.raises(StoreUnavailable, match="store down: failing fast"):
        breaker.delete("job")
    release.set()
    probe_call.join()
    assert breaker.delete("job") is None


def test_breaker_passes_every_call_through_with_its_arguments(
    store: Any, clock: FakeClock
) -> None:
    breaker = Breaker(store)
    timer = Timer("job", 1_000_000, 60, 2_000)
    assert breaker.put(timer) is None
    assert breaker.get("job") == timer
    assert breaker.add_miss("job", Miss(1, 2, 1)) == 1
    assert breaker.get("job").misses == 1
    breaker.clear_misses("job")
    assert breaker.get("job") == timer
    assert breaker.delete("job") == timer
    assert breaker.get("job") is None
    assert breaker.secret() == store.secret()


def test_make_store_sizes_the_client_and_the_breaker_to_the_threads(
    fake_aws: None,
) -> None:
    breaker = make_store(Config(table_name="t", region="eu-west-1", threads=5))
    assert isinstance(breaker, Breaker) and isinstance(breaker.store, DynamoStore)
    assert breaker.store.table == "t"
    assert breaker.store.client.meta.region_name == "eu-west-1"
    assert breaker._slots.qsize() == 3
    assert make_store(Config(threads=1))._slots.qsize() == 1


def test_breaker_keeps_threads_free_for_other_requests() -> None:
    store, clock = StuckStore(), FakeClock(0)
    breaker = Breaker(store, slots=2, clock=clock)
    threads = start_stuck_calls(breaker, store, 2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        breaker.get("job")
    assert str(refused.value) == "every store slot is busy"
    assert time.monotonic() - started < 1
    store.release.set()
    for thread in threads:
        thread.join()
    assert breaker.get("job") is None
    assert store.calls == 3


def test_store_down_answers_503_and_health_stays_up(clock: FakeClock) -> None:
    store = FailingStore()
    app = TestApp(App(Breaker(store, clock=FakeClock(0)), clock))
    assert_unavailable(app)
    assert store.calls == 3


# -- DynamoDB specifics --


def test_each_operation_is_one_dynamodb_request(
    recorded: tuple[TestApp, list[tuple[str, dict[str, Any]]]], clock: FakeClock
) -> None:
    app, calls = recorded
    app.get("/job/60")
    app.get("/job/60")
    app.get("/job")
    app.head("/job/60")
    app.delete("/job")
    assert [name for name, _ in calls] == [
        "UpdateItem",
        "UpdateItem",
        "GetItem",
        "GetItem",
        "DeleteItem",
    ]
    # Every answer carries the item's key, to be checked against the one asked.
    assert calls[0][1]["ReturnValues"] == "ALL_NEW"
    assert calls[0][1]["ConditionExpression"] == (
        "attribute_not_exists(set_id) OR set_id <> :id"
    )
    assert (
        calls[0][1]["ExpressionAttributeValues"][":id"]
        != (calls[1][1]["ExpressionAttributeValues"][":id"])
    )
    assert calls[2][1]["ConsistentRead"] is True
    assert calls[4][1]["ReturnValues"] == "ALL_OLD"


def test_dynamodb_item_has_the_documented_attributes(
    dynamo: DynamoStore, clock: FakeClock
) -> None:
    clock.advance(0.25)
    app = TestApp(App(dynamo, clock))
    app.get("/job/70m")
    read = boto3.client("dynamodb", region_name="us-east-1").get_item
    item = read(TableName="timers", Key={"timer": {"S": "job"}})["Item"]
    null = {"NULL": True}
    first = {
        "timer": {"S": "job"},
        "start_time": {"N": f"{T0}.250"},
        "start_seconds": {"N": "4200"},
        "expires_at": {"N": str(T0 + 4200 + 30 * 86400)},
        "set_id": item["set_id"],
        "was_start_time": null,
        "was_start_seconds": null,
        "was_expires_at": null,
        "resets": {"NS": [f"{T0}250{4200:09d}"]},
    }
    assert item == first
    assert len(item["set_id"]["S"]) == 16
    clock.advance(60)
    app.get("/job/90")
    item = read(TableName="timers", Key={"timer": {"S": "job"}})["Item"]
    assert item == {
        **first,
        "start_time": {"N": f"{T0 + 60}.250"},
        "start_seconds": {"N": "90"},
        "expires_at": {"N": str(T0 + 60 + 90 + 30 * 86400)},
        "set_id": item["set_id"],
        "was_start_time": {"N": f"{T0}.250"},
        "was_start_seconds": {"N": "4200"},
        "was_expires_at": {"N": str(T0 + 4200 + 30 * 86400)},
        "resets": item["resets"],
    }
    assert sorted(item["resets"]["NS"]) == [
        f"{T0}250{4200:09d}",
        f"{T0 + 60}250{90:09d}",
    ]
    assert item["set_id"] != first["set_id"]


def test_an_item_without_expires_at_is_kept(
    dynamo: DynamoStore, clock: FakeClock
) -> None:
    """Items written before expires_at existed, or by hand, never expire."""
    dynamo.client.put_item(
        TableName="timers",
        Item={
            "timer": {"S": "old"},
            "start_time": {"N": str(T0)},
            "start_seconds": {"N": "60"},
        },
    )
    clock.advance(86400 * 400)
    answer = TestApp(App(dynamo, clock)).get("/old", status=504).json
    assert answer["start_time"] == T0 and answer["status"] == "expired"


def test_create_table_sets_ttl_and_can_run_twice(
    dynamo: DynamoStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck")
    dynamo.create_table()
    assert caplog.messages == ["table timers exists already"]
    client = boto3.client("dynamodb", region_name="us-east-1")
    ttl = client.describe_time_to_live(TableName="timers")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    key = client.describe_table(TableName="timers")["Table"]["KeySchema"]
    assert key == [{"AttributeName": "timer", "KeyType": "HASH"}]


def test_create_table_says_when_the_server_has_no_ttl(
    dynamo: DynamoStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "timercheck")
    failing_responses(
        dynamo.client, 400, "UnknownOperationException", "", "UpdateTimeToLive"
    )
    dynamo.create_table()
    assert caplog.messages == [
        "table timers: TTL not enabled (UnknownOperationException)"
    ]


@pytest.mark.parametrize(
    ("statuses", "checks", "ready"),
    [(["CREATING", "CREATING", "ACTIVE"], 3, True), (["CREATING"], 60, False)],
)
def test_create_table_waits_a_minute_for_the_table_checking_each_second(
    dynamo: DynamoStore,
    monkeypatch: pytest.MonkeyPatch,
    statuses: list[str],
    checks: int,
    ready: bool,
) -> None:
    answers = [
        (200, {}, b'{"Table":{"TableStatus":"%s"}}' % s.encode()) for s in statuses
    ]
    described = scripted_responses(dynamo.client, answers, "DescribeTable")
    waits = record_sleeps(monkeypatch)
    if ready:
        dynamo.create_table()
    else:
        with pytest.raises(botocore.exceptions.WaiterError):
            dynamo.create_table()
    assert len(described) == checks
    assert waits == [1] * (checks - 1)


EMPTY_CRC32 = "2745614147"  # zlib.crc32(b"{}"), as DynamoDB puts it in x-amz-crc32


@pytest.mark.parametrize(
    ("crcs", "status", "sent"),
    [
        ([EMPTY_CRC32], 404, 1),
        (["1", EMPTY_CRC32], 404, 2),  # corrupt on the way: retried
        (["1", "1"], 503, 2),
    ],
)
def test_a_dynamodb_answer_must_match_its_crc32(
    dynamo: DynamoStore, clock: FakeClock, crcs: list[str], status: int, sent: int
) -> None:
    answers = [(200, {"x-amz-crc32": crc}, b"{}") for crc in crcs]
    requests = scripted_responses(dynamo.client, answers, "GetItem")
    TestApp(App(dynamo, clock)).get("/job", status=status)
    assert len(requests) == sent


def test_an_empty_dynamodb_answer_reads_as_botocore_reads_it(
    dynamo: DynamoStore, clock: FakeClock
) -> None:
    scripted_responses(dynamo.client, [(200, {}, b"")], "GetItem")
    TestApp(App(dynamo, clock)).get("/job", status=404)


def test_the_dynamodb_client_fails_within_about_4_seconds(fake_aws: None) -> None:
    """1 s to connect, 1.5 s to read, two attempts in all with botocore's
    standard retries; a pool of 10 connections unless told otherwise."""
    from timercheck import dynamodb_client

    config = dynamodb_client("eu-west-1").meta.config
    assert (config.connect_timeout, config.read_timeout) == (1, 1.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert config.max_pool_connections == 10
    assert dynamodb_client("eu-west-1").meta.region_name == "eu-west-1"


def test_error_codes_name_what_went_wrong() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from timercheck import error_code

    throttled = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
    assert error_code(ClientError(throttled, "GetItem")) == "ThrottlingException"
    assert error_code(ClientError({}, "GetItem")) == "ClientError"
    refused = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert error_code(refused) == "EndpointConnectionError"


# -- config, logging --


def test_default_store_is_sqlite(tmp_path: Any, clock: FakeClock) -> None:
    store = make_store(Config(sqlite_path=str(tmp_path / "t.db")))
    TestApp(App(store, clock)).get("/job/60")
    assert (tmp_path / "t.db").exists()


def test_the_default_sqlite_store_waits_2_seconds_for_another_process(
    tmp_path: Any,
) -> None:
    """As the README says; SQLite reports its own busy timeout."""
    store = make_store(Config(sqlite_path=str(tmp_path / "t.db"))).store
    assert store._run("PRAGMA busy_timeout", (), write=False) == (2000,)


def test_read_only_sqlite_still_serves_read_only_urls(
    tmp_path: Any, clock: FakeClock
) -> None:
    path = str(tmp_path / "timers.db")
    token = (
        TestApp(App(SqliteStore(path), clock)).get("/job/60").json["read_only_token"]
    )
    app = TestApp(App(SqliteStore(f"file:{path}?mode=ro"), clock))
    assert app.get(f"/-/{token}").json["seconds_remaining"] == 60


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


def run_probe(app: App, **kwargs: Any) -> None:
    """The probe retries until the store answers: give up on it after 5 s."""
    thread = threading.Thread(target=probe, args=(app,), kwargs=kwargs, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "the probe never saw the store answer"


def test_start_up_probe_says_whether_the_store_answers(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck")
    app = App(store)
    assert app.name_hash("job") == "?"
    run_probe(app)
    assert re.fullmatch(r"[0-9a-f]{24}", app.name_hash("job"))
    flaky = FailingStore(StoreUnavailable("sqlite: unable to open database file"))
    fail = flaky.get

    def get(*args: Any) -> None:  # down for three tries: said once
        try:
            return fail(*args)
        finally:
            flaky.down = flaky.calls < 3

    flaky.get = get  # type: ignore[method-assign]
    waits: list[float] = []
    run_probe(App(flaky), sleep=waits.append)
    assert waits == [5.0, 5.0, 5.0]  # tries again every 5 s
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.INFO, "the timer store answers"),
        (
            logging.ERROR,
            "the timer store is unavailable: sqlite: unable to open database file",
        ),
        (logging.INFO, "the timer store answers"),
    ]


def test_an_access_line_is_stamped_to_the_millisecond(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "timercheck.access")
    stream = io.StringIO()
    write = access_writer(stream)
    monkeypatch.setattr(timercheck.time, "time", lambda: 1795929826.9995)
    write("a line")
    second = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1795929826))
    assert stream.getvalue() == f"{second},999 INFO timercheck.access a line\n"


def test_the_server_writes_access_lines_in_the_log_format(
    store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck.access")
    stream = io.StringIO()
    app = TestApp(
        App(store, clock, access=access_writer(stream)),
        extra_environ={"REMOTE_ADDR": "127.0.0.1"},
    )
    app.get("/secret-timer-name/60")
    app.get("/")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO timercheck.access [0-9a-f]{16}"
        r" GET set_timer [0-9a-f]{24} 200 \d+\.\dms 127\.0\.0\.1",
        first,
    )
    assert second.endswith(" GET health - 200 " + second.split()[-2] + " 127.0.0.1")


def test_access_lines_follow_the_log_level(
    store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "timercheck.access")
    stream = io.StringIO()
    TestApp(App(store, clock, access=access_writer(stream))).get("/")
    assert stream.getvalue() == ""
