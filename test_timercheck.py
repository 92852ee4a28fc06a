"""The HTTP contract, driven through WebTest on both stores with a fake clock."""

from __future__ import annotations

import logging
import re
import string
from typing import Any

import pytest
from webtest import TestApp

from fakes import (
    T0,
    FailingStore,
    FakeClock,
)
from timercheck import (
    App,
    StoreUnavailable,
)

# -- health and robots --


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("get", "/", 200),
        ("get", "/robots.txt", 200),
        ("get", "/job/60", 200),
        ("get", "/job", 200),
        ("get", "/job?format=shields", 200),
        ("get", "/job?format=text", 200),
        ("get", "/job?format=history", 200),
        ("get", "/job?format=svg", 200),
        ("get", "/never", 404),
        ("get", "/bad name", 400),
        ("post", "/job", 405),
        ("head", "/job", 200),
        ("delete", "/job", 200),
    ],
)
def test_every_answer_says_nosniff(
    app: TestApp, method: str, url: str, status: int
) -> None:
    """A label or a name echoed in JSON or text is never read as HTML."""
    app.get("/job/60")
    answer = getattr(app, method)(url, status=status)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


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
        ("34560000", 34_560_000),  # 400 days, TIMERCHECK_MAX_SECONDS's default
        ("400d", 34_560_000),
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


BAD_PATH = "400: the path must be /{timer} or /{timer}/{seconds}"
NOT_SECONDS = (
    "400: seconds must be 1 to 10 digits, optionally followed by one unit"
    " s, m, h, d or w (90, 90s, 70m, 25h, 7d, 2w)"
)
TOO_MANY_SECONDS = (
    "400: seconds must be at most 34560000 in all (400d, TIMERCHECK_MAX_SECONDS)"
)


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        ("-1", NOT_SECONDS),
        ("1.5", NOT_SECONDS),
        ("+5", NOT_SECONDS),
        ("5_000", NOT_SECONDS),
        ("abc", NOT_SECONDS),
        ("\u0665", NOT_SECONDS),
        ("\u00b2", NOT_SECONDS),
        ("12345678901", NOT_SECONDS),
        ("9999999999", TOO_MANY_SECONDS),
        ("1000000000", TOO_MANY_SECONDS),
        ("99999999w", TOO_MANY_SECONDS),
        ("34560001", TOO_MANY_SECONDS),
        ("401d", TOO_MANY_SECONDS),
        ("58w", TOO_MANY_SECONDS),
        ("5S", NOT_SECONDS),
        ("5ms", NOT_SECONDS),
        ("5 ", NOT_SECONDS),
        (" 5", NOT_SECONDS),
        ("5\n", NOT_SECONDS),
        ("0x10", NOT_SECONDS),
        ("1e9", NOT_SECONDS),
        ("", NOT_SECONDS),
        ("m", NOT_SECONDS),
    ],
)
def test_bad_seconds_are_400(app: TestApp, seconds: str, message: str) -> None:
    response = app.get(
        "/job/x", extra_environ={"PATH_INFO": f"/job/{seconds}"}, status=400
    )
    assert response.json["errorMessage"] == message
    assert "X-Timer-Status" not in response.headers
    app.get("/job", status=404)


def test_an_operator_may_allow_periods_up_to_999999999(
    store: Any, clock: FakeClock
) -> None:
    app = TestApp(App(store, clock, max_seconds=999_999_999))
    assert app.get("/job/999999999").json["new_start_seconds"] == 999_999_999
    assert app.get("/job/1653w").json["new_start_seconds"] == 999_734_400
    answer = app.get("/job/1000000000", status=400).json
    assert answer["errorMessage"] == (
        "400: seconds must be at most 999999999 in all"
        " (11574d 1h, TIMERCHECK_MAX_SECONDS)"
    )


def test_a_period_past_the_most_sets_nothing_on_head_or_get(app: TestApp) -> None:
    app.head("/job/401d", status=400)
    app.get("/job/401d", status=400)
    app.get("/job", status=404)


# -- how many sets one client may make --


def client(address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": address}


def test_one_client_s_sets_past_its_budget_are_429_and_write_nothing(
    store: Any, clock: FakeClock
) -> None:
    """5 a minute: 5 at once, then one every 12 s. Past it: 429 with
    Retry-After, the timer untouched; its checks, `/`, and every other
    client's sets answer as ever."""
    app = TestApp(App(store, clock, sets_per_minute=5))
    flood, other = client("198.51.100.7"), client("203.0.113.9")
    for n in range(5):
        app.get(f"/job/{60 + n}", extra_environ=flood)
    answer = app.get("/job/600", extra_environ=flood, status=429)
    assert answer.headers["Retry-After"] == "12"
    assert answer.json["errorMessage"] == (
        "429: too many sets from one client: 5 a minute"
    )
    app.post("/job/600", extra_environ=flood, status=429)
    assert app.get("/job", extra_environ=flood).json["start_seconds"] == 64
    assert app.get("/", extra_environ=flood).text == "OK"
    assert app.get("/other/60", extra_environ=other).status_int == 200
    clock.advance(11)
    assert (
        app.get("/job/600", extra_environ=flood, status=429).headers["Retry-After"]
        == "1"
    )
    clock.advance(1)
    app.get("/job/600", extra_environ=flood)
    app.get("/job/600", extra_environ=flood, status=429)
    assert app.get("/job").json["start_seconds"] == 600


def test_an_ipv6_client_is_counted_by_its_64(store: Any, clock: FakeClock) -> None:
    app = TestApp(App(store, clock, sets_per_minute=2))
    app.get("/job/60", extra_environ=client("2001:db8:1:2::1"))
    app.get("/job/60", extra_environ=client("2001:db8:1:2:ffff::9"))
    app.get("/job/60", extra_environ=client("2001:db8:1:2::3"), status=429)
    app.get("/job/60", extra_environ=client("2001:db8:1:3::1"))


def test_a_prefetcher_s_get_spends_no_budget(store: Any, clock: FakeClock) -> None:
    app = TestApp(App(store, clock, sets_per_minute=1))
    bot = {"REMOTE_ADDR": "192.0.2.1", "HTTP_USER_AGENT": "Slackbot 1.0"}
    for _ in range(3):
        app.get("/job/60", extra_environ=bot, status=404)
    app.get("/job/60", extra_environ=client("192.0.2.1"))


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
        "percent"
        in app.get("/", extra_environ=environ, status=400).json["errorMessage"]
    )
    environ = {"PATH_INFO": "/a/b", "REQUEST_URI": "/a%2fb"}
    app.get("/", extra_environ=environ, status=400)
    app.get("/a", status=404)


PERCENT = (
    "400: the path is never percent-encoded: a timer name, its seconds and a"
    " read-only token are written only with A-Z a-z 0-9 . _ ~ -"
)
NAME_CHARACTERS = string.ascii_letters + string.digits + "._~-"


def test_a_name_has_one_spelling(app: TestApp) -> None:
    """Every character a name, its seconds or a token may hold, escaped in
    upper and in lower case, at the start and inside: a 400 naming the rule,
    and nothing set."""
    for char in NAME_CHARACTERS:
        for escape in {f"%{ord(char):02X}", f"%{ord(char):02x}"}:
            for raw, decoded in [
                (f"/{escape}bc/60", f"/{char}bc/60"),
                (f"/a{escape}c/60", f"/a{char}c/60"),
                (f"/abc/6{escape}", f"/abc/6{char}"),
                (f"/{escape}bc", f"/{char}bc"),
            ]:
                environ = {"PATH_INFO": decoded, "REQUEST_URI": raw}
                answer = app.get("/", extra_environ=environ, status=400).json
                assert answer["errorMessage"] == PERCENT, raw
    assert app.get("/abc", status=404).json["timer"] == "abc"


def test_a_read_only_token_has_one_spelling(app: TestApp) -> None:
    token = app.get("/abc/60").json["read_only_token"]
    for n, char in enumerate(token):
        for escape in {f"%{ord(char):02X}", f"%{ord(char):02x}"}:
            raw = f"/-/{token[:n]}{escape}{token[n + 1 :]}"
            environ = {"PATH_INFO": f"/-/{token}", "REQUEST_URI": raw}
            answer = app.get("/", extra_environ=environ, status=400).json
            assert answer["errorMessage"] == PERCENT, raw


def test_control_characters_in_the_raw_target_are_400(app: TestApp) -> None:
    environ = {"PATH_INFO": "/ab/60", "REQUEST_URI": "/a\tb/60"}
    app.get("/", extra_environ=environ, status=400)
    app.get("/ab", status=404)


def test_a_raw_path_starting_with_two_slashes_is_400(app: TestApp) -> None:
    environ = {"PATH_INFO": "/60", "REQUEST_URI": "//job/60"}
    response = app.get("/", extra_environ=environ, status=400)
    assert response.json["errorMessage"] == BAD_PATH


def test_encoded_slash_in_the_query_is_fine(app: TestApp) -> None:
    environ = {"PATH_INFO": "/job/60", "REQUEST_URI": "/job/60?next=%2F"}
    app.get("/", extra_environ=environ)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/a/b/c", BAD_PATH),
        ("/job/60/", BAD_PATH),
        ("/a//b", BAD_PATH),
        (
            "//",
            "400: a timer name is 1 to 128 characters from A-Z a-z 0-9 . _ ~ -"
            " and starts with a letter or digit",
        ),
    ],
)
def test_other_paths_are_400(app: TestApp, path: str, message: str) -> None:
    response = app.get("/", extra_environ={"PATH_INFO": path}, status=400)
    assert response.json["errorMessage"] == message


def test_the_messages_of_a_400_say_what_was_wrong(app: TestApp) -> None:
    def message(path: str) -> str:
        return app.get(path, status=400).json["errorMessage"]

    assert message("/a/b/c") == BAD_PATH
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


# -- a set answers JSON --


def test_a_set_answers_in_json_whatever_the_format(app: TestApp) -> None:
    answer = app.get("/job/60?format=svg&since=3")
    assert answer.json["message"] == "Timer countdown updated"
