"""The DynamoDB wire against an upstream that misbehaves, over real sockets:
a proxy in front of moto_server that answers twice, answers with another
timer's item, drips, floods or loses an answer after the write was applied;
a forward proxy that must carry the store calls; signing across midnight; the
retry quota. Every answer must be about the timer asked for, or a 503."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.exceptions
import pytest
from botocore.credentials import Credentials
from test_overload import (
    OK,
    botocore_signature,
    certificate,
    raised_on_a_thread,
    scripted_server,
    wire,
)
from test_settings import main_exits
from webtest import TestApp

import timercheck
from fakes import FakeClock, failing_responses, record_sleeps
from support import FAKE_AWS, ForwardProxy, Misbehaving, moto_server
from timercheck import App, DynamoDB, DynamoStore

UNAVAILABLE = "503: timer store unavailable"


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    with moto_server() as server:
        yield server.port


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def store_at(port: int, upstream: int, scheme: str = "http") -> DynamoStore:
    """A store whose endpoint is `port`, on a new table made at `upstream`."""
    table = f"t-{uuid.uuid4().hex[:12]}"
    direct = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{upstream}")
    direct.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "timer", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "timer", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client = boto3.client("dynamodb", endpoint_url=f"{scheme}://127.0.0.1:{port}")
    return DynamoStore(table, DynamoDB(client))


@pytest.fixture
def proxied(
    aws: None, upstream: int, clock: FakeClock
) -> Iterator[tuple[TestApp, Misbehaving]]:
    """The app on a store behind the misbehaving proxy."""
    proxy = Misbehaving(upstream)
    try:
        yield TestApp(App(store_at(proxy.port, upstream), clock)), proxy
    finally:
        proxy.close()


TIMERS = {"alice": 1000, "bob": 2000, "carol": 3000, "dave": 4000}


def set_timers(app: TestApp) -> None:
    for name, seconds in TIMERS.items():
        app.get(f"/{name}/{seconds}")


def assert_about(answer: Any, name: str) -> None:
    assert answer.status_int == 200, answer.text
    assert (answer.json["timer"], answer.json["start_seconds"]) == (name, TIMERS[name])


def in_thread(request: Any) -> list[Any]:
    """Run a request on a thread, waiting far longer than its deadline;
    what it answered, if it answered by then (not a timing assertion)."""
    answers: list[Any] = []
    caller = threading.Thread(target=lambda: answers.append(request()), daemon=True)
    caller.start()
    caller.join(15)
    return answers


# -- every answer about the timer asked for, or a 503 --


@pytest.mark.parametrize("pause", [0, 0.1])
def test_a_stray_second_answer_is_never_read_as_the_next_one(
    proxied: tuple[TestApp, Misbehaving], pause: float
) -> None:
    """alice's answer comes again 30 ms later: before bob's request is sent
    (after a pause of 0.1 s), or after it, where only the key tells it from
    bob's own answer."""
    app, proxy = proxied
    set_timers(app)
    proxy.arm("stray")
    assert_about(app.get("/alice"), "alice")
    time.sleep(pause)
    for name in ("bob", "carol", "dave"):
        assert_about(app.get(f"/{name}"), name)


def test_a_stray_answer_without_an_item_is_never_read_as_the_next_one(
    proxied: tuple[TestApp, Misbehaving],
) -> None:
    """A never-set timer's answer (`{}`, which no key check can tell from
    anyone's) comes again 30 ms later, before bob's request is sent: the
    kept-alive connection is looked at before it is used, and dropped."""
    app, proxy = proxied
    set_timers(app)
    proxy.arm("stray")
    app.get("/nobody", status=404)
    time.sleep(0.1)  # for the stray to arrive first; not a timing assertion
    assert_about(app.get("/bob"), "bob")


def test_an_answer_with_more_after_it_is_not_trusted(
    proxied: tuple[TestApp, Misbehaving],
) -> None:
    """A Content-Length short of the body sent, whose rest is another
    answer: the call is sent again on a new connection."""
    app, proxy = proxied
    set_timers(app)
    sent = len(proxy.targets)
    proxy.arm("short")
    assert_about(app.get("/alice"), "alice")
    assert len(proxy.targets) == sent + 2
    for name in ("bob", "carol", "dave"):
        assert_about(app.get(f"/{name}"), name)


def test_an_answer_about_another_timer_is_retried_then_a_503(
    proxied: tuple[TestApp, Misbehaving],
) -> None:
    app, proxy = proxied
    set_timers(app)
    proxy.arm("", "replay")
    assert_about(app.get("/alice"), "alice")
    assert_about(app.get("/bob"), "bob")
    proxy.arm("", "replay", "replay")
    assert_about(app.get("/alice"), "alice")
    answer = app.get("/bob", status=503)
    assert answer.json["errorMessage"] == UNAVAILABLE
    proxy.arm("", "replay")  # a set answered with alice's item: sent again
    assert_about(app.get("/alice"), "alice")
    answer = app.get("/bob/60")
    assert (answer.json["timer"], answer.json["start_seconds"]) == ("bob", 2000)
    assert app.get("/bob").json["start_seconds"] == 60


def test_a_100_continue_is_read_through_to_the_answer(
    proxied: tuple[TestApp, Misbehaving],
) -> None:
    app, proxy = proxied
    set_timers(app)
    sent = len(proxy.targets)
    proxy.arm("continue", "continue")
    assert_about(app.get("/alice"), "alice")
    assert len(proxy.targets) == sent + 1  # one request: nothing was retried


@pytest.mark.parametrize("mode", ["drip", "huge"])
def test_an_answer_that_drips_or_floods_is_a_503_by_the_deadline(
    proxied: tuple[TestApp, Misbehaving], mode: str
) -> None:
    """A byte every 0.4 s, or 64 MiB: the call's deadline (4 s) and the cap
    on an answer (1 MiB) end it, where a read timeout alone would not."""
    app, proxy = proxied
    set_timers(app)
    proxy.arm(mode, mode)
    answers = in_thread(lambda: app.get("/alice", status="*"))
    assert [a.status_int for a in answers] == [503]
    assert answers[0].json["errorMessage"] == UNAVAILABLE


@pytest.mark.parametrize("item", [True, False], ids=["moto", "dynalite"])
def test_a_set_whose_answer_was_lost_reports_the_timer_it_replaced(
    proxied: tuple[TestApp, Misbehaving], clock: FakeClock, item: bool
) -> None:
    """The set's UpdateItem is applied, its answer lost; the retry finds its
    own write (with the item where the server sends it, or by reading it)
    and answers from the timer that write replaced. The miss it ended
    counts once."""
    app, proxy = proxied
    proxy.failed_condition_item = item
    app.get("/job/60")
    clock.advance(120)
    proxy.arm("lose")
    body = app.get("/job/90").json
    assert body["start_seconds"] == 60
    assert body["seconds_elapsed"] == 120
    assert body["seconds_remaining"] == -60
    assert body["ended_miss"] is True
    assert body["misses"] == 1
    assert body["last_miss"]["overdue_seconds"] == 60
    check = app.get("/job").json
    assert (check["start_seconds"], check["misses"]) == (90, 1)
    history = app.get("/job?format=history").json["history"]
    assert [e["seconds"] for e in history] == [90, 60]
    read = [] if item else ["GetItem"]  # dynalite: read the item after
    sent = ["UpdateItem", "UpdateItem", *read, "UpdateItem", "GetItem", "GetItem"]
    assert [t.partition(".")[2] for t in proxy.targets][-len(sent) :] == sent


@pytest.mark.parametrize("item", [True, False], ids=["moto", "dynalite"])
def test_a_miss_whose_answer_was_lost_counts_once(
    proxied: tuple[TestApp, Misbehaving], clock: FakeClock, item: bool
) -> None:
    app, proxy = proxied
    proxy.failed_condition_item = item
    app.get("/job/60")
    clock.advance(120)
    proxy.arm("", "lose")  # the set's write answers; the miss's is lost
    body = app.get("/job/90").json
    assert (body["start_seconds"], body["ended_miss"], body["misses"]) == (60, True, 1)
    assert app.get("/job").json["misses"] == 1


# -- proxies and CA bundles, as botocore honours them --


@pytest.fixture
def forward() -> Iterator[ForwardProxy]:
    proxy = ForwardProxy()
    try:
        yield proxy
    finally:
        proxy.close()


def test_store_calls_go_through_http_proxy(
    aws: None,
    upstream: int,
    forward: ForwardProxy,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://who:pa%3Ass@127.0.0.1:{forward.port}")
    app = TestApp(App(store_at(upstream, upstream), clock))
    assert app.get("/job/60").json["timer"] == "job"
    assert app.get("/job").json["start_seconds"] == 60
    url = f"http://127.0.0.1:{upstream}/"
    assert [head.split("\r\n")[0] for head in forward.seen][-3:] == [
        f"POST {url} HTTP/1.1"
    ] * 3  # the secret, the set, the check
    assert "proxy-authorization: Basic d2hvOnBhOnNz" in forward.seen[-1]  # who:pa:ss


def test_no_proxy_sends_store_calls_straight_to_the_store(
    aws: None,
    upstream: int,
    forward: ForwardProxy,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{forward.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    app = TestApp(App(store_at(upstream, upstream), clock))
    assert app.get("/job/60").status_int == 200
    assert forward.seen == []


def test_https_store_calls_tunnel_through_https_proxy_with_the_ca_bundle(
    aws: None,
    forward: ForwardProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    context, cert_file = certificate(tmp_path, "localhost")
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{forward.port}")  # no scheme
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
    port, carried, _ = scripted_server([OK], close_after={0}, tls=context)
    api = wire(port, "https", "localhost")
    assert api.call("GetItem", {}) == {}
    assert carried == [1]
    assert [head.split("\r\n")[0] for head in forward.seen] == [
        f"CONNECT localhost:{port} HTTP/1.1"
    ]


def test_a_profile_s_ca_bundle_is_used_as_botocore_uses_it(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, cert_file = certificate(tmp_path, "localhost")
    config = tmp_path / "config"
    config.write_text(f"[profile tls]\nca_bundle = {cert_file}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "tls")
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # one that reads them
    port, carried, _ = scripted_server([OK], close_after={0}, tls=context)
    assert wire(port, "https", "localhost").call("GetItem", {}) == {}
    assert carried == [1]


def test_a_proxy_it_cannot_use_stops_the_start_naming_the_variable(
    aws: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TABLE_NAME", "timers")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "https://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "https://127.0.0.1:3128")
    code, _, err = main_exits(["create-table"], capsys)
    assert code == 2
    assert err.splitlines()[-1].endswith(
        "error: HTTPS_PROXY must be an http:// proxy URL"
    )


def test_the_proxy_in_use_is_said_at_start_without_its_password(
    aws: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TABLE_NAME", "timers")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://me:secret@127.0.0.1:3128")
    caplog.set_level("INFO")
    timercheck.make_store(timercheck.Config.from_env())
    assert [r.getMessage() for r in caplog.records if r.name == "timercheck"] == [
        "dynamodb: calls go through the proxy http://127.0.0.1:3128"
    ]


# -- signing and retrying --


def test_one_object_signs_on_either_side_of_midnight_as_botocore() -> None:
    """The signing key is the day's: one cached by the secret alone would
    sign with yesterday's key from midnight UTC on."""
    api = wire(8000)
    midnight = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
    for when in (
        midnight - datetime.timedelta(seconds=1),
        midnight,
        midnight + datetime.timedelta(seconds=1),
        midnight - datetime.timedelta(seconds=2),
    ):
        headers = api.signed_headers("GetItem", b"{}", when.timestamp())
        expected = botocore_signature(
            when.replace(tzinfo=None),
            "http://127.0.0.1:8000/",
            "DynamoDB_20120810.GetItem",
            b"{}",
        )
        assert headers["authorization"] == expected


def test_retries_stop_once_the_retry_quota_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore's standard retry quota: 500 to start, 14 a retry, back as
    calls succeed (botocore/retries/quota.py, standard.py)."""
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    api = DynamoDB(client, Credentials("a", "b"))
    record_sleeps(monkeypatch)
    sent = failing_responses(client, 500, "InternalServerError", "")
    for _ in range(40):
        with pytest.raises(botocore.exceptions.ClientError):
            api.call("GetItem", {})
    assert len(sent) == 40 + 500 // 14  # then one attempt a call


def test_a_call_ends_by_its_deadline_whatever_the_read_timeout() -> None:
    """A server that drips its answer a byte at a time never lets a read
    time out; the call's deadline ends it."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b" " * 2000
    port, _, _ = scripted_server([answer, answer], close_after={0, 1}, piece=1)
    api = wire(port, deadline=0.5)  # the drip takes 4 s a try at the least
    raised = raised_on_a_thread(lambda: api.call("GetItem", {}))
    assert raised == [botocore.exceptions.ReadTimeoutError]
