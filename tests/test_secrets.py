"""The store's secret: read-only tokens and URLs, and a secret replaced."""

from __future__ import annotations

import json
import re
import sqlite3
import string
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

from fakes import FailingStore, FakeClock, Rounds, record_calls
from support import (
    call,
    create_table,
    dynamo_env,
    moto_server,
    read_only_url,
    service,
)
from timercheck import (
    App,
    DynamoStore,
    SqliteStore,
    TokenKeys,
    follow_secret,
)

TOKEN = re.compile(r"[A-Za-z0-9_-]{22,}")


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


def damage_secret(store: Any, value: Any) -> None:
    """The secret as a bad hand or a bad restore may leave it: `value` is
    bytes, or text where bytes belong."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE secrets SET value = ?", (value,))
        return
    attribute = {"B": value} if isinstance(value, bytes) else {"S": value}
    store.client.put_item(
        TableName=store.table, Item={"timer": {"S": "~secret"}, "secret": attribute}
    )


@pytest.mark.parametrize(
    ("value", "length"),
    [(b"", 0), (b"short", 5), (b"x" * 33, 33), ("text, not bytes", 0)],
)
def test_a_damaged_secret_is_a_503_never_a_500_and_never_adopted(
    store: Any,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    value: Any,
    length: int,
) -> None:
    """A fresh task meets a damaged secret: every set and read-only check
    is a 503 with Retry-After naming nothing of the damage to the client,
    checks by name still answer, and the log says what to do. Deleted, it
    is made again and served."""
    TestApp(App(store, clock)).get("/job/60")  # the secret is made
    damage_secret(store, value)
    app = TestApp(App(store, clock))
    caplog.set_level("WARNING", "timercheck")
    answer = app.get("/job/60", status=503)
    assert answer.headers["Retry-After"] == "5"
    assert answer.json["errorMessage"] == "503: timer store unavailable"
    app.get("/-/" + "A" * 43, status=503)
    assert app.get("/job").json["start_seconds"] == 60
    said = [r.getMessage() for r in caplog.records if r.name == "timercheck"]
    assert said[0].endswith(
        f"store unavailable: the store's secret is damaged ({length} bytes where"
        " 32 were made): sets and read-only URLs answer 503 until it is deleted,"
        ' and a new one is made (docs/operating.md, "The secret")'
    )
    delete_secret(store)
    assert app.get("/job/60").json["read_only_token"]


def test_every_task_reads_the_secret_again_every_minute(tmp_path: Path) -> None:
    stop = Rounds(3)
    follow_secret(App(FailingStore()), stop)  # type: ignore[arg-type]
    assert stop.waits == [60.0, 60.0, 60.0]  # the store is down: it goes on
    store = SqliteStore(str(tmp_path / "t.db"))
    app = App(store)
    follow_secret(app, Rounds(2))  # type: ignore[arg-type]
    assert app.name_hash("job") != "?"  # read by the loop, not by this line
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
