"""The DynamoDB wire: requests signed as botocore signs them, answers read
however they arrive, CRC32, retries, timeouts and TLS; and, over real sockets,
an upstream that misbehaves (a proxy in front of moto_server that answers
twice, answers with another timer's item, drips, floods or loses an answer
after the write was applied), forward proxies, signing across midnight, the
retry quota. Every answer must be about the timer asked for, or a 503."""

from __future__ import annotations

import datetime
import json
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.auth
import botocore.exceptions
import botocore.handlers
import botocore.retries.standard as retries
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from webtest import TestApp

import timercheck
from fakes import (
    FAKE_CREDENTIALS,
    FakeClock,
    failing_responses,
    fake_client,
    record_sleeps,
    scripted_responses,
)
from support import (
    FAKE_AWS,
    DrippingProxy,
    ForwardProxy,
    Misbehaving,
    free_port,
    main_exits,
    moto_server,
    stop_serving,
)
from timercheck import (
    App,
    DynamoDB,
    DynamoStore,
    authorization,
    signing_key,
)

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


def test_a_proxy_that_drips_its_connect_answer_is_cut_off_by_the_deadline(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole answer to CONNECT takes 7 s; each byte comes well within the
    connect timeout, so only the call's deadline (1 s here) can end it."""
    proxy = DrippingProxy()
    try:
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
        api = wire(9, "https", "localhost", deadline=1.0)
        raised = raised_on_a_thread(lambda: api.call("GetItem", {}))
    finally:
        proxy.close()
    assert raised == [botocore.exceptions.ConnectTimeoutError]


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
        expected = botocore_signed(
            when.replace(tzinfo=None),
            "http://127.0.0.1:8000/",
            "DynamoDB_20120810.GetItem",
            b"{}",
        )
        assert headers["authorization"] == expected["Authorization"]


def test_retries_stop_once_the_retry_quota_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """botocore's standard retry quota: 500 to start, 14 a retry, back as
    calls succeed (botocore/retries/quota.py, standard.py)."""
    client = fake_client()
    api = DynamoDB(client, FAKE_CREDENTIALS)
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


def test_the_wire_and_create_table_s_client_give_up_alike(fake_aws: None) -> None:
    """1 s to connect, 1.5 s to read, two attempts in all (botocore's
    standard retries), and for the wire 4 s a call whatever the attempts."""
    from timercheck import dynamodb_client

    client = dynamodb_client("eu-west-1")
    config = client.meta.config
    assert client.meta.region_name == "eu-west-1"
    assert (config.connect_timeout, config.read_timeout) == (1, 1.5)
    assert config.retries == {"mode": "standard", "total_max_attempts": 2}
    wire = DynamoDB(client)
    assert (wire.timeouts, wire.deadline) == ((1, 1.5), 4)


# AWS's Signature Version 4 test suite: its POST requests to / without a query
# (docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html).
# Access key AKIDEXAMPLE, region us-east-1, service "service", 2015-08-30.
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


SUITE = [
    (
        "post-vanilla",
        {},
        b"",
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    (
        "post-header-key-sort",
        {"my-header1": "value1"},
        b"",
        "host;my-header1;x-amz-date",
        "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    ),
    (
        "post-header-value-case",
        {"my-header1": "VALUE1"},
        b"",
        "host;my-header1;x-amz-date",
        "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    ),
    (
        "post-x-www-form-urlencoded",
        {"content-type": "application/x-www-form-urlencoded"},
        b"Param1=value1",
        "content-type;host;x-amz-date",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    ),
    (
        "post-x-www-form-urlencoded-parameters",
        {"content-type": "application/x-www-form-urlencoded; charset=utf8"},
        b"Param1=value1",
        "content-type;host;x-amz-date",
        "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
    ),
]


@pytest.mark.parametrize(
    ("extra", "body", "signed", "signature"),
    [case[1:] for case in SUITE],
    ids=[case[0] for case in SUITE],
)
def test_signatures_match_aws_test_suite(
    extra: dict[str, str], body: bytes, signed: str, signature: str
) -> None:
    headers = {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"}
    key = signing_key(SUITE_SECRET, "20150830", "us-east-1", "service")
    scope = "20150830/us-east-1/service/aws4_request"
    assert authorization(headers | extra, body, "AKIDEXAMPLE", key, scope) == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
        f"aws4_request, SignedHeaders={signed}, Signature={signature}"
    )


ENDPOINTS = [
    ("https://dynamodb.eu-west-1.amazonaws.com", "eu-west-1"),
    ("https://DynamoDB.us-east-1.amazonaws.com:443/", "us-east-1"),
    ("http://127.0.0.1:8000", "us-east-1"),
    ("http://localhost", "ap-southeast-2"),
    ("http://[::1]:4566", "eu-central-1"),
    ("https://dynamodb.us-gov-west-1.amazonaws.com:8443", "us-gov-west-1"),
]


PRINTABLE = "".join(map(chr, range(32, 127))) + "éß☃"


def random_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(PRINTABLE) for _ in range(size))


def test_requests_are_signed_exactly_as_botocore_signs_them() -> None:
    """Randomized requests, signed our way and by botocore's SigV4Auth: the
    same Authorization, X-Amz-Date and X-Amz-Security-Token, every time."""
    rng = random.Random(20261129)
    clients = [
        boto3.client(
            "dynamodb",
            endpoint_url=url,
            region_name=region,
            aws_access_key_id="unused",
            aws_secret_access_key="unused",
        )
        for url, region in ENDPOINTS
    ]
    for _ in range(300):
        client = rng.choice(clients)
        credentials = Credentials(
            "AKIA" + "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16)),
            random_text(rng, 40),
            rng.choice([None, random_text(rng, rng.randint(16, 600))]),
        )
        when = datetime.datetime.fromtimestamp(
            rng.randint(0, 4_102_444_800), datetime.UTC
        )
        operation = rng.choice(["GetItem", "PutItem", "UpdateItem", "DeleteItem"])
        body = json.dumps(
            {
                "TableName": random_text(rng, 8),
                "Key": {"timer": {"S": random_text(rng, 20)}},
            }
        ).encode()
        ours = DynamoDB(client, credentials).signed_headers(
            operation, body, when.timestamp()
        )
        theirs = botocore_signed(
            when.replace(tzinfo=None),
            client.meta.endpoint_url.rstrip("/") + "/",
            f"DynamoDB_20120810.{operation}",
            body,
            credentials,
            client.meta.region_name,
        )
        assert ours["authorization"] == theirs["Authorization"]
        assert ours["x-amz-date"] == theirs["X-Amz-Date"]
        assert ours.get("x-amz-security-token") == theirs.get("X-Amz-Security-Token")


def test_rotated_credentials_are_used_from_the_next_request() -> None:
    """The task role's credentials rotate: each request reads them afresh."""
    client = fake_client()
    current = SimpleNamespace(
        get_frozen_credentials=lambda: Credentials("OLD", "old-secret", "old-token")
    )
    api = DynamoDB(client, current)
    before = api.signed_headers("GetItem", b"{}", 1_800_000_000)
    current.get_frozen_credentials = lambda: Credentials("NEW", "new-secret", "tok")
    after = api.signed_headers("GetItem", b"{}", 1_800_000_000)
    assert "Credential=OLD/" in before["authorization"]
    assert before["x-amz-security-token"] == "old-token"
    assert "Credential=NEW/" in after["authorization"]
    assert after["x-amz-security-token"] == "tok"


def scripted_server(
    answers: list[bytes],
    close_after: set[int],
    piece: int = 0,
    linger: float = 0,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, list[int], list[bytes]]:
    """A server on 127.0.0.1 that answers the nth request with answers[n],
    `piece` bytes at a time if given, and closes the connection after the
    requests numbered in close_after (`linger` seconds later). The list it
    returns holds, for each connection it accepted, the requests it carried;
    the second list, the requests as they came."""
    listener = socket.create_server(("127.0.0.1", 0))
    carried: list[int] = []
    requests: list[bytes] = []

    def send(conn: socket.socket, answer: bytes) -> None:
        if not answer:  # say nothing: the client must give up by itself
            return
        step = piece or len(answer)
        for start in range(0, len(answer), step):
            try:
                conn.sendall(answer[start : start + step])
            except OSError:  # the client gave up on it
                return
            if piece:
                time.sleep(0.002)

    def receive(conn: socket.socket) -> bytes:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("the client closed the connection")
        return data

    def read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += receive(conn)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r")[0])
        while len(body) < length:
            body += receive(conn)
        requests.append(head + b"\r\n\r\n" + body)

    def run() -> None:
        n = 0
        while n < len(answers):
            try:
                conn, _ = listener.accept()
            except OSError:  # stopped at the test's end
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                try:
                    conn = tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):  # the client refused us
                    conn.close()
                    continue
            sockets.append(conn)
            carried.append(0)
            while n < len(answers):
                try:
                    read_request(conn)
                except OSError:  # the client gave up, or the test ended
                    break
                carried[-1] += 1
                send(conn, answers[n])
                n += 1
                if n - 1 in close_after:
                    closer = threading.Timer(linger, conn.close)
                    threads.append(closer)
                    closer.start()
                    break

    sockets = [listener]
    threads = [threading.Thread(target=run, daemon=True)]
    threads[0].start()
    SCRIPTED.append((sockets, threads))
    return listener.getsockname()[1], carried, requests


SCRIPTED: list[tuple[list[socket.socket], list[threading.Thread]]] = []


@pytest.fixture(autouse=True)
def scripted_servers_stop() -> Iterator[None]:
    """The servers a test scripted stop at its end, answered or not."""
    yield
    while SCRIPTED:
        stop_serving(*SCRIPTED.pop())


def client_at(port: int, scheme: str = "http", host: str = "127.0.0.1") -> Any:
    return fake_client(f"{scheme}://{host}:{port}")


def wire(
    port: int, scheme: str = "http", host: str = "127.0.0.1", **options: Any
) -> DynamoDB:
    return DynamoDB(client_at(port, scheme, host), FAKE_CREDENTIALS, **options)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


CHUNKED = (  # sizes in hex: 0x10 and 0xa
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'10\r\n{"key":"01234567\r\na;ext=1\r\n89abcdef"}\r\n0\r\n\r\n'
)


UNTIL_CLOSE = b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"c":1}'


CLOSING = b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: Close\r\n\r\n{"d":2}'


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"


def test_a_request_on_the_wire_is_what_botocore_would_sign_and_send() -> None:
    port, _, requests = scripted_server([OK], close_after=set())
    assert wire(port).call("GetItem", {"TableName": "t"}) == {}
    [sent] = requests
    head, _, body = sent.partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    assert request_line == "POST / HTTP/1.1"
    assert list(fields) == [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-target",
        "authorization",
        "content-length",
    ]
    assert fields["content-type"] == "application/x-amz-json-1.0"
    assert fields["host"] == f"127.0.0.1:{port}"
    assert fields["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert fields["content-length"] == "17"
    assert body == b'{"TableName":"t"}'
    when = datetime.datetime.strptime(fields["x-amz-date"], "%Y%m%dT%H%M%SZ")
    signed = botocore_signed(
        when, f"http://127.0.0.1:{port}/", fields["x-amz-target"], body
    )
    assert fields["authorization"] == signed["Authorization"]


def botocore_signed(
    when: datetime.datetime,
    url: str,
    target: str,
    body: bytes,
    credentials: Credentials = FAKE_CREDENTIALS,
    region: str = "us-east-1",
) -> dict[str, str]:
    """The headers botocore's SigV4Auth gives a DynamoDB request at `when`
    (naive UTC): its clock is botocore.auth.get_current_datetime."""
    request = AWSRequest(
        "POST",
        url,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
        data=body,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.auth, "get_current_datetime", lambda: when)
        botocore.auth.SigV4Auth(credentials, "dynamodb", region).add_auth(request)
    return dict(request.headers)


AWS_EU = "dynamodb.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("endpoint", "url", "address"),
    [
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/", ("127.0.0.1", 8000)),
        ("http://localhost", "http://localhost/", ("localhost", 80)),
        (f"https://{AWS_EU}", f"https://{AWS_EU}/", (AWS_EU, 443)),
    ],
)
def test_the_endpoint_says_where_to_connect_and_what_before_send_hooks_see(
    endpoint: str, url: str, address: tuple[str, int]
) -> None:
    client = fake_client(endpoint)
    api = DynamoDB(client, Credentials("a", "b"))
    seen: list[tuple[str, str, bytes]] = []
    client.meta.events.register(
        "before-send.dynamodb",
        lambda request, **kwargs: seen.append(
            (request.method, request.url, request.body)
        ),
    )
    scripted_responses(client, [(200, {}, b"{}")])
    assert api.call("GetItem", {"TableName": "t"}) == {}
    assert seen == [("POST", url, b'{"TableName":"t"}')]
    assert api.address == address


def test_before_send_is_emitted_only_where_a_library_hooks_every_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """moto hooks every client's before-send once imported (as it is in
    these tests); without such a hook, the request goes to the wire unseen."""
    assert wire(free_port()).before_send
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [h for h in botocore.handlers.BUILTIN_HANDLERS if h[0] != "before-send"],
    )
    port, carried, _ = scripted_server([OK], close_after=set())
    client = client_at(port)
    api = DynamoDB(client, Credentials("a", "b"))
    seen: list[object] = []
    client.meta.events.register("before-send.dynamodb", lambda **kw: seen.append(1))
    assert api.call("GetItem", {}) == {}
    assert seen == [] and carried == [1]
    api.before_send = True
    scripted_responses(client, [(200, {}, b'{"Item": {}}')])
    assert api.call("GetItem", {}) == {"Item": {}}
    assert seen == [1] and carried == [1]


def test_a_kept_alive_connection_the_server_closed_is_replaced_at_no_retry() -> None:
    port, carried, _ = scripted_server([OK, OK], close_after={0})
    api = wire(port, attempts=1)
    assert api.call("GetItem", {}) == {}
    time.sleep(0.1)  # the server has closed the idle connection
    assert api.call("GetItem", {}) == {}
    assert carried == [1, 1]


@pytest.mark.parametrize("piece", [0, 1, 3])
def test_answers_are_read_however_they_arrive(piece: int) -> None:
    """Whole or a few bytes at a time; in chunks or with a length, after a
    1xx answer or not; the connection kept only when it may be."""
    port, carried, _ = scripted_server(
        [OK, CHUNKED, CONTINUE + OK, CLOSING, EARLY_HINTS + CHUNKED],
        close_after={3},
        piece=piece,
    )
    api = wire(port)
    assert api.call("GetItem", {}) == {}
    assert api.call("GetItem", {}) == {"key": "0123456789abcdef"}
    assert api.call("GetItem", {}) == {}
    assert api.call("GetItem", {}) == {"d": 2}
    assert api.call("GetItem", {}) == {"key": "0123456789abcdef"}
    assert carried == [4, 1]


def test_an_answer_that_only_a_closed_connection_ends_is_refused() -> None:
    """Without a length or chunks, a cut-short answer reads as a whole one."""
    port, carried, _ = scripted_server([UNTIL_CLOSE, OK], close_after={0})
    assert wire(port).call("GetItem", {}) == {}
    assert carried == [1, 1]


def test_a_connection_the_server_says_it_closes_is_not_used_again() -> None:
    """The server says `Connection: close` but closes only later: the next
    request goes on a new connection, not on the one about to close."""
    port, carried, _ = scripted_server([CLOSING, OK], close_after={0}, linger=0.5)
    api = wire(port, attempts=1)
    assert api.call("GetItem", {}) == {"d": 2}
    assert api.call("GetItem", {}) == {}
    assert carried == [1, 1]


def test_a_connection_cut_mid_answer_is_retried_once() -> None:
    for cut in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{",
        b"HTTP/1.1 200 OK\r\nContent-",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5",
    ):
        port, carried, _ = scripted_server([cut, OK], close_after={0}, piece=4)
        assert wire(port).call("GetItem", {}) == {}
        assert carried == [1, 1]


def test_what_is_not_an_http_answer_is_a_closed_connection() -> None:
    for junk in (b"SSH-2.0-OpenSSH\r\n\r\n", b"x" * 70000):
        port, carried, _ = scripted_server([junk, junk], close_after={0, 1})
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            wire(port).call("GetItem", {})
        assert carried == [1, 1]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError"}',
            "InternalServerError",
        ),
        (b'{"__type":"InternalFailure"}', "InternalFailure"),
        (b'{"message":"no type"}', "500"),
        (b"<html>busy</html>", "500"),
        (b'["a list"]', "500"),
        (b"", "500"),
    ],
)
def test_a_server_error_twice_is_a_client_error_after_two_attempts(
    body: bytes, code: str
) -> None:
    error = b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    port, carried, _ = scripted_server([error, error], close_after=set())
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        wire(port).call("GetItem", {})
    assert raised.value.response == {
        "Error": {"Code": code},
        "ResponseMetadata": {"HTTPStatusCode": 500},
    }
    assert carried == [2]


@pytest.mark.parametrize("body", [b"<html", b'["a list"]', b"7"])
def test_an_answer_that_is_not_a_json_object_is_a_store_fault_not_a_crash(
    body: bytes,
) -> None:
    """Retried once, on a new connection: nothing after it is trusted."""
    garbled = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    port, carried, _ = scripted_server([garbled, garbled], close_after={0})
    with pytest.raises(botocore.exceptions.HTTPClientError):
        wire(port).call("GetItem", {})
    assert carried == [1, 1]


def test_an_answer_on_the_wire_must_match_its_crc32() -> None:
    good = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Amz-Crc32: 2745614147\r\n\r\n{}"
    bad = good.replace(b"2745614147", b"1")
    port, carried, _ = scripted_server([bad, good], close_after=set())
    assert wire(port).call("GetItem", {}) == {}
    assert carried == [2]
    port, carried, _ = scripted_server([bad, bad], close_after=set())
    with pytest.raises(botocore.exceptions.ClientError):
        wire(port).call("GetItem", {})
    assert carried == [2]


@pytest.mark.parametrize(
    ("status", "code", "longest"),
    [(400, "ThrottlingException", 1.0), (500, "InternalServerError", 0.025)],
)
def test_a_retry_waits_as_botocore_waits_for_dynamodb(
    monkeypatch: pytest.MonkeyPatch, status: int, code: str, longest: float
) -> None:
    """botocore's standard backoff before a second attempt: a random wait
    under 1 s after throttling, under 25 ms for DynamoDB's other errors
    (botocore/retries/standard.py, ExponentialBackoff)."""
    client = fake_client()
    failing_responses(client, status, code, "")
    waits = record_sleeps(monkeypatch)
    for _ in range(60):  # each its own retry quota, which 60 retries would spend
        with pytest.raises(botocore.exceptions.ClientError):
            DynamoDB(client, Credentials("a", "b")).call("GetItem", {})
    assert len(waits) == 60
    assert longest / 2 < max(waits) < longest  # 60 draws: all under half, 2**-60


def raised_on_a_thread(call: Callable[[], object]) -> list[type[BaseException]]:
    """What `call` raised on a thread of its own within 10 s: far past what
    the calls here may take, so not a timing assertion, but a call that
    hangs is caught."""
    raised: list[type[BaseException]] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:
            raised.append(type(e))

    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(10)
    return raised


def test_a_store_that_never_answers_times_out_on_each_attempt() -> None:
    port, carried, _ = scripted_server([b"", b""], close_after={0, 1}, linger=5)
    api = wire(port, timeouts=(0.2, 0.2))
    raised = raised_on_a_thread(lambda: api.call("GetItem", {}))
    assert raised == [botocore.exceptions.ReadTimeoutError]
    assert carried == [1, 1]


def certificate(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, Path]:
    """A server's TLS context with a self-signed certificate for `name`, and
    the certificate's file, to trust as a CA bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


@pytest.mark.parametrize(
    ("certified", "trusted", "answered"),
    [
        ("localhost", True, True),
        ("elsewhere.example", True, False),
        ("localhost", False, False),
    ],
)
def test_tls_is_checked_against_the_ca_bundle_and_the_host_name(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    certified: str,
    trusted: bool,
    answered: bool,
) -> None:
    context, cert_file = certificate(tmp_path, certified)
    if trusted:
        monkeypatch.setenv("AWS_CA_BUNDLE", str(cert_file))
    else:
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    timercheck.tls_context.cache_clear()
    try:
        port, carried, _ = scripted_server([OK], close_after={0}, tls=context)
        api = wire(port, "https", "localhost")
        if answered:
            assert api.call("GetItem", {}) == {}
            assert carried == [1]
        else:
            with pytest.raises(botocore.exceptions.EndpointConnectionError):
                api.call("GetItem", {})
            assert carried == []
    finally:
        timercheck.tls_context.cache_clear()


def test_a_refused_connection_is_botocore_s_endpoint_error() -> None:
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        wire(free_port()).call("GetItem", {})


class Imitation:
    """A DynamoDB look-alike that answers 200 with what it likes."""

    def __init__(self, client: Any, answers: dict[str, bytes]) -> None:
        self.answers = answers
        client.meta.events.register("before-send.dynamodb", self.answer)

    def answer(self, request: Any, **kwargs: Any) -> Any:
        operation = str(request.headers["X-Amz-Target"]).partition(".")[2]
        return SimpleNamespace(
            status_code=200, headers={}, content=self.answers.get(operation, b"{}")
        )


@pytest.mark.parametrize(
    ("operation", "answer", "path"),
    [
        ("GetItem", b'{"Item": {"timer": {"S": "job"}}}', "/job"),
        ("GetItem", b'{"Item": {"start_time": {"N": "x"}}}', "/job"),
        ("GetItem", b'{"Item": ["job"]}', "/job"),
        ("UpdateItem", b"{}", "/job/60"),  # no secret in it
        ("UpdateItem", b'{"Attributes": {"secret": {"B": "%%%"}}}', "/job/60"),
    ],
)
def test_an_answer_the_store_cannot_read_is_a_503(
    dynamo: Any, clock: FakeClock, operation: str, answer: bytes, path: str
) -> None:
    Imitation(dynamo.client, {operation: answer})
    app = TestApp(App(dynamo, clock))
    failed = app.get(path, status=503)
    assert failed.json["errorMessage"] == "503: timer store unavailable"


# -- what the wire promises, each seen to fail when broken --


def test_the_deadline_covers_the_whole_call_not_each_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10 attempts allowed, each timing out at 0.4 s, no wait between them:
    within a deadline of 1 s only the first 3 can start."""
    monkeypatch.setattr(retries.ExponentialBackoff, "delay_amount", lambda *a: 0.0)
    port, carried, _ = scripted_server([b""] * 10, close_after=set())
    api = wire(port, timeouts=(0.4, 0.4), attempts=10, deadline=1.0)
    raised = raised_on_a_thread(lambda: api.call("GetItem", {}))
    assert raised == [botocore.exceptions.ReadTimeoutError]
    assert 2 <= len(carried) <= 3


def test_an_answer_is_refused_once_it_passes_1_mib() -> None:
    """64 MiB sent as fast as loopback takes it, with a deadline of 30 s:
    the cap, not the deadline, ends each attempt, and no attempt reads the
    whole (which would then fail as a garbled answer instead)."""
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 << 20)
    huge += b" " * (64 << 20)
    port, carried, _ = scripted_server([huge, huge], close_after={0, 1})
    api = wire(port, deadline=30.0)
    raised = raised_on_a_thread(lambda: api.call("GetItem", {}))
    assert raised == [botocore.exceptions.ConnectionClosedError]
    assert carried == [1, 1]


def test_successes_give_the_retry_quota_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a bad spell has spent the quota, 100 calls that succeed earn
    retries again: the next failure is retried, and succeeds."""
    client = fake_client()
    api = DynamoDB(client, FAKE_CREDENTIALS)
    record_sleeps(monkeypatch)
    error = (500, {}, b'{"__type":"x#InternalServerError","message":""}')
    ok = (200, {}, b"{}")
    sent = scripted_responses(client, [error] * 75 + [ok] * 100 + [error, ok])
    for _ in range(40):
        with pytest.raises(botocore.exceptions.ClientError):
            api.call("GetItem", {})
    assert len(sent) == 75  # the quota spent: one attempt a call
    for _ in range(100):
        assert api.call("GetItem", {}) == {}
    assert api.call("GetItem", {}) == {}
    assert len(sent) == 75 + 100 + 2


def test_bytes_after_an_answer_in_the_same_read_drop_the_connection() -> None:
    """A second answer right behind the first, in one write (empty, so that
    the two would read as one good answer): the first is not trusted, the
    call is retried on a new connection and gets its own answer."""
    stray = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    own = b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"d":2}'
    next_ = b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"n":3}'
    port, carried, _ = scripted_server([OK + stray, own, next_], close_after=set())
    api = wire(port)
    assert api.call("GetItem", {}) == {"d": 2}
    assert api.call("GetItem", {}) == {"n": 3}
    assert carried == [1, 2]
