"""The real service (`python timercheck.py` under waitress) over real sockets,
on SQLite and on DynamoDB through moto_server on 127.0.0.1."""

from __future__ import annotations

import http.client
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import (
    FAKE_AWS,
    Process,
    call,
    create_table,
    dynamo_env,
    free_port,
    moto_server,
    service,
)


@pytest.fixture(scope="module")
def moto() -> Iterator[Process]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "dynamodb"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    if request.param == "sqlite":
        env = {"TIMERCHECK_DB": str(tmp_path_factory.mktemp("db") / "timers.db")}
    else:
        env = dynamo_env(request.getfixturevalue("moto").port)
        create_table(env)
    with service(env) as proc:
        yield proc


def fresh() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def test_health(server: Process) -> None:
    answer = call(server.port, "GET", "/")
    assert (answer.status, answer.body) == (200, b"OK")
    assert answer.headers["Content-Type"] == "text/plain"
    assert answer.headers["Cache-Control"] == "no-store"


def test_set_check_expire_delete(server: Process) -> None:
    name = fresh()
    assert call(server.port, "GET", f"/{name}", timeout=5).status == 404
    answer = call(server.port, "GET", f"/{name}/1")
    assert answer.status == 200
    assert answer.json["message"] == "Timer countdown updated"
    assert answer.headers["X-Timer-Status"] == "running"
    running = call(server.port, "GET", f"/{name}?uptime_kuma_cachebuster=1")
    assert running.status == 200 and running.json["start_seconds"] == 1
    head = call(server.port, "HEAD", f"/{name}")
    assert head.status == 200 and head.body == b""
    assert head.headers["Content-Length"] == running.headers["Content-Length"]
    deadline = running.json["start_time"] + 2
    time.sleep(1.05)
    expired = call(server.port, "GET", f"/{name}")
    assert expired.status == 504, expired.body
    assert expired.json["errorMessage"] == "timer timed out"
    assert expired.json["now"] <= deadline
    assert expired.headers["X-Timer-Status"] == "expired"
    reset = call(server.port, "PUT", f"/{name}/60", body=b"")
    assert reset.status == 200 and reset.json["seconds_remaining"] <= 0
    deleted = call(server.port, "DELETE", f"/{name}")
    assert deleted.status == 200 and deleted.json["message"] == "Timer deleted"
    assert call(server.port, "GET", f"/{name}").status == 404


def test_zero_expires_at_once(server: Process) -> None:
    name = fresh()
    call(server.port, "POST", f"/{name}/0", body=b"")
    assert call(server.port, "GET", f"/{name}").status == 504


def test_head_never_sets(server: Process) -> None:
    name = fresh()
    assert call(server.port, "HEAD", f"/{name}/60").status == 404
    assert call(server.port, "GET", f"/{name}").status == 404


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/job/1.5", 400),
        ("GET", "/job/-1", 400),
        ("GET", "/-job/5", 400),
        ("GET", "/a%2Fb/5", 400),
        ("GET", "/a%2fb", 400),
        ("GET", "/%2e%2e/5", 400),
        ("GET", "/job/%D9%A5", 400),
        ("GET", "/a/b/c", 400),
        ("PATCH", "/job", 405),
        ("DELETE", "/job/5", 405),
    ],
)
def test_bad_requests(server: Process, method: str, path: str, status: int) -> None:
    answer = call(server.port, method, path)
    assert answer.status == status
    assert answer.json["errorMessage"].startswith(f"{status}: ")


def test_misses_views_and_unfurlers(server: Process) -> None:
    name = fresh()
    call(server.port, "GET", f"/{name}/0")
    reset = call(server.port, "GET", f"/{name}/60").json
    assert (reset["misses"], reset["ended_miss"]) == (1, True)
    missed = call(server.port, "GET", f"/{name}?since=0")
    assert (missed.status, missed.headers["X-Timer-Status"]) == (504, "missed")
    assert call(server.port, "GET", f"/{name}?since=1").status == 200
    text = call(server.port, "GET", f"/{name}?format=text")
    assert text.body == b"missed 1 remaining 60\n"  # for a day after the miss
    assert call(server.port, "GET", f"/{name}?format=text&since=1").body == (
        b"running 60\n"
    )
    badge = call(server.port, "GET", f"/{name}?format=svg")
    assert badge.headers["Content-Type"] == "image/svg+xml"
    assert b"missed 1" in badge.body
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", f"/{name}/5", headers={"User-Agent": "Twitterbot/1.0"})
    ignored = conn.getresponse()
    ignored.read()
    assert ignored.getheader("X-Timer-Ignored") == "link preview (Twitterbot)"
    assert call(server.port, "GET", f"/{name}").json["start_seconds"] == 60


def test_two_services_on_one_table_see_each_others_resets(
    moto: Process, tmp_path: Path
) -> None:
    env = dynamo_env(moto.port, table="shared")
    create_table(env)
    with service(env) as first, service(env) as second:
        name = fresh()
        for seconds in (60, 0, 120, 5):
            call(first.port, "GET", f"/{name}/{seconds}")
            answer = call(second.port, "GET", f"/{name}")
            assert answer.status == (200 if seconds else 504)
            assert answer.json["start_seconds"] == seconds
        call(second.port, "DELETE", f"/{name}")
        assert call(first.port, "GET", f"/{name}").status == 404


def test_sigterm_stops_a_server_whose_store_is_down(tmp_path: Path) -> None:
    """The start-up probe is still retrying: it must not keep the process.
    (A SQLite file that cannot be opened stops the start instead.)"""
    env = {
        **FAKE_AWS,
        "TABLE_NAME": "timers",
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{free_port()}",
    }
    with service(env) as proc:
        assert call(proc.port, "GET", "/job").status == 503
        said = "the timer store is unavailable"
        waited = time.monotonic() + 10  # the probe's first call, retries included
        while said not in proc.output() and time.monotonic() < waited:
            time.sleep(0.05)
        assert said in proc.output()
        started = time.monotonic()
        assert proc.stop(15) == 0
        assert time.monotonic() - started < 3


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as proc:
        started = time.monotonic()
        assert proc.stop(15) == 0
        assert time.monotonic() - started < 3
        assert "timercheck stopped" in proc.output()
