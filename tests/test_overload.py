"""Overload and capacity: requests signed as botocore signs them, shedding,
health checks first, the open-file limit, the breaker under CPU load, SQLite's
purge of forgotten timers, and a small storm against the real server on both
stores. Nothing here asserts a time: bench.py measures."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import random
import resource
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.auth
import botocore.handlers
import pytest
import waitress
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from webtest import TestApp

import timercheck
from fakes import (
    FailingStore,
    FakeClock,
    Limits,
    StuckStore,
    failing_responses,
    record_sleeps,
    scripted_responses,
    start_stuck_calls,
)
from support import (
    ROOT,
    Process,
    call,
    create_table,
    crowd_and_storm,
    dynamo_env,
    free_port,
    lost_sets,
    moto_server,
    probe_health,
    service,
)
from timercheck import (
    WAITED,
    App,
    Breaker,
    Config,
    DynamoDB,
    HealthFirstDispatcher,
    NoSpinChannel,
    SqliteStore,
    StoreUnavailable,
    Timer,
    accept_bursts,
    authorization,
    fit_open_files,
    purge_forgotten,
    signing_key,
)

# -- requests signed as botocore signs them --

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


def test_requests_are_signed_exactly_as_botocore_signs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
        request = AWSRequest(
            "POST",
            client.meta.endpoint_url.rstrip("/") + "/",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            },
            data=body,
        )
        monkeypatch.setattr(
            botocore.auth, "get_current_datetime", lambda when=when: when
        )
        botocore.auth.SigV4Auth(
            credentials, "dynamodb", client.meta.region_name
        ).add_auth(request)
        assert ours["authorization"] == request.headers["Authorization"]
        assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
        assert ours.get("x-amz-security-token") == request.headers.get(
            "X-Amz-Security-Token"
        )


def test_rotated_credentials_are_used_from_the_next_request() -> None:
    """The task role's credentials rotate: each request reads them afresh."""
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
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


# -- the wire, against servers that misbehave in the ways servers do --


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

    def read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r")[0])
        while len(body) < length:
            body += conn.recv(65536)
        requests.append(head + b"\r\n\r\n" + body)

    def run() -> None:
        n = 0
        while n < len(answers):
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                try:
                    conn = tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):  # the client refused us
                    conn.close()
                    continue
            carried.append(0)
            while n < len(answers):
                read_request(conn)
                carried[-1] += 1
                send(conn, answers[n])
                n += 1
                if n - 1 in close_after:
                    threading.Timer(linger, conn.close).start()
                    break
        listener.close()

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], carried, requests


def client_at(port: int, scheme: str = "http", host: str = "127.0.0.1") -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=f"{scheme}://{host}:{port}",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )


def wire(
    port: int, scheme: str = "http", host: str = "127.0.0.1", **options: Any
) -> DynamoDB:
    return DynamoDB(client_at(port, scheme, host), Credentials("a", "b"), **options)


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
    assert fields["authorization"] == botocore_signature(
        when, f"http://127.0.0.1:{port}/", fields["x-amz-target"], body
    )


def botocore_signature(
    when: datetime.datetime, url: str, target: str, body: bytes
) -> str:
    """The Authorization botocore's SigV4Auth gives a DynamoDB request at
    `when` (naive UTC), with the credentials `a`/`b` of `wire`."""
    request = AWSRequest(
        "POST",
        url,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
        data=body,
    )
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: when
    try:
        botocore.auth.SigV4Auth(
            Credentials("a", "b"), "dynamodb", "us-east-1"
        ).add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    return request.headers["Authorization"]


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
    client = boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
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
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
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


# -- shedding: a request that waited too long for a thread --


def test_a_timer_request_that_waited_past_the_bound_is_shed_without_the_store(
    clock: FakeClock,
) -> None:
    store = FailingStore()
    app = TestApp(App(store, clock))  # 2 s by default, as TIMERCHECK_MAX_WAIT_MS
    for path in ("/job", "/job/60", "/-/" + "A" * 64):
        shed = app.get(path, extra_environ={WAITED: 2.001}, status=503)
        assert shed.json["errorMessage"] == "503: overloaded: try again shortly"
        assert shed.headers["Retry-After"] in {"1", "2", "3", "4"}
    assert app.delete("/job", extra_environ={WAITED: 9}, status=503).headers[
        "Retry-After"
    ]
    assert store.calls == 0


def test_health_and_robots_are_never_shed(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock, max_wait=2.0))
    assert app.get("/", extra_environ={WAITED: 60.0}).text == "OK"
    assert app.head("/", extra_environ={WAITED: 60.0}).status_int == 200
    assert app.get("/robots.txt", extra_environ={WAITED: 60.0}).status_int == 200


def test_a_request_that_waited_exactly_the_bound_is_served(
    app: TestApp, clock: FakeClock
) -> None:
    waited = {WAITED: 2.0}
    assert app.get("/job/60", extra_environ=waited).json["status"] == "ok"
    assert app.get("/job", extra_environ=waited).json["seconds_remaining"] == 60


def test_a_request_whose_wait_no_server_stamped_is_served(
    store: Any, clock: FakeClock
) -> None:
    """Under a WSGI server other than ours the wait is unknown: never shed."""
    app = TestApp(App(store, clock, max_wait=0.001))
    assert app.get("/job/60").json["status"] == "ok"


def test_retry_after_is_spread_over_1_to_4_seconds(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock, max_wait=0.5))
    seen = {
        app.get("/job", extra_environ={WAITED: 1}, status=503).headers["Retry-After"]
        for _ in range(200)
    }
    assert seen == {"1", "2", "3", "4"}


# -- health checks first in waitress's queue --


def queued(method: str | None, path: str | None) -> Any:
    request = (
        SimpleNamespace()
        if method is None
        else SimpleNamespace(command=method, path=path)
    )
    return SimpleNamespace(requests=[request])


def test_health_checks_go_to_the_front_of_the_queue() -> None:
    dispatcher = HealthFirstDispatcher()  # no threads: the queue only fills
    check, root, post, head, bad, set_ = (
        queued("GET", "/job"),
        queued("GET", "/"),
        queued("POST", "/"),
        queued("HEAD", "/"),
        queued(None, None),  # a request waitress could not parse
        queued("GET", "/job/60"),
    )
    for channel in (check, root, post, head, bad, set_):
        dispatcher.add_task(channel)
    assert list(dispatcher.queue) == [root, head, check, post, bad, set_]


def test_only_two_health_checks_go_first_at_once() -> None:
    """A flood of `GET /` waits its turn behind the timer requests, and so
    does a batch of them pipelined on one connection."""
    dispatcher = HealthFirstDispatcher()
    check, set_ = queued("GET", "/job"), queued("GET", "/job/60")
    health = [queued("GET", "/") for _ in range(4)]
    batch = queued("GET", "/")
    batch.requests *= 2
    for channel in (check, batch, health[0], set_, *health[1:]):
        dispatcher.add_task(channel)
    assert list(dispatcher.queue) == [
        health[0],
        health[1],
        check,
        batch,
        set_,
        *health[2:],
    ]


def listening(
    limit: int = 100, accepts: list[int] | None = None
) -> tuple[Any, HealthFirstDispatcher]:
    """timercheck's waitress listener on 127.0.0.1, its loop not running, with
    a dispatcher that has no threads: what the loop would do is called by
    hand, and what it would queue stays in the queue. Each call of waitress's
    own accept is counted in `accepts`, if given."""
    dispatcher = HealthFirstDispatcher()
    listener = waitress.create_server(
        App(FailingStore()), host="127.0.0.1", port=0, _dispatcher=dispatcher,
        connection_limit=limit,
    )  # fmt: skip
    listener.channel_class = NoSpinChannel
    if accepts is not None:
        accept_one = listener.handle_accept
        listener.handle_accept = lambda: accepts.append(1) or accept_one()
    accept_bursts(listener)
    return listener, dispatcher


def clients(port: int, count: int, send: bool = True) -> list[socket.socket]:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for sock in socks:
        if send:
            sock.sendall(b"GET /job HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)  # for the kernel to hand the bytes over, not a timing test
    return socks


def test_one_turn_accepts_every_waiting_connection_and_reads_its_request() -> None:
    listener, dispatcher = listening()
    socks = clients(listener.effective_port, 5)
    try:
        listener.handle_accept()  # what one turn of waitress's loop does
        assert len(dispatcher.queue) == 5
        assert all(c.requests[0].path == "/job" for c in dispatcher.queue)
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def test_one_turn_stops_accepting_once_nothing_is_waiting() -> None:
    accepts: list[int] = []
    listener, _ = listening(accepts=accepts)
    socks = clients(listener.effective_port, 5)
    try:
        listener.handle_accept()
        assert len(accepts) == 6  # five connections, then one try that finds none
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def test_a_connection_with_nothing_sent_yet_is_accepted_and_left_to_the_loop() -> None:
    listener, dispatcher = listening()
    socks = clients(listener.effective_port, 3, send=False)
    try:
        before = len(listener._map)
        listener.handle_accept()
        assert len(listener._map) == before + 3
        assert len(dispatcher.queue) == 0
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def test_accepting_stops_at_the_connection_limit() -> None:
    listener, dispatcher = listening()
    listener.adj.connection_limit = len(listener._map) + 2
    socks = clients(listener.effective_port, 5)
    try:
        listener.handle_accept()
        assert len(dispatcher.queue) == 2
    finally:
        for sock in socks:
            sock.close()
        listener.close()


# -- the open-file limit --


def test_the_open_file_limit_is_raised_to_hold_the_connection_limit() -> None:
    script = (
        "import logging, resource, sys, timercheck\n"
        "logging.basicConfig(level='INFO', stream=sys.stdout, format='%(message)s')\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 2048))\n"
        "print(timercheck.fit_open_files(1000, 4))\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out == [
        "raised the open-file limit from 256 to 1082",
        "1000",
        "(1082, 2048)",
    ]


def test_with_the_most_threads_accept_never_runs_out_of_files(tmp_path: Path) -> None:
    """256 threads, each keeping its own SQLite connection, under a hard
    limit of 1,200 open files: every connection up to the limit the serving
    line states is accepted and answered, and accept() never fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the clients' own
    script = (
        "import resource, runpy, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1200, 1200))\n"
        "sys.argv = ['timercheck.py']\n"
        "runpy.run_path('timercheck.py', run_name='__main__')\n"
    )
    port = free_port()
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "TIMERCHECK_DB": str(tmp_path / "t.db"),
        "TIMERCHECK_THREADS": "256",
    }
    socks: list[socket.socket] = []
    try:
        with Process([sys.executable, "-c", script], env, port) as server:
            warm = clients(port, 300, send=False)  # sets at once: threads open files
            for n, sock in enumerate(warm):
                sock.sendall(b"GET /warm-%d/60 HTTP/1.1\r\nHost: x\r\n\r\n" % n)
            for sock in warm:
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
                sock.close()
            limit = int(server.output().split("up to ")[1].split(" connections")[0])
            assert limit == 1200 - (64 + 3 * 258)
            # Near the limit (waitress's count can lag a closed connection),
            # then what is left of it must fit in the files left.
            for _ in range(limit - 5):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append(sock)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
            assert call(port, "GET", "/").status == 200
            files = len(os.listdir(f"/proc/{server.proc.pid}/fd"))  # type: ignore[union-attr]
            assert files + 5 < 1200
            log = server.output()
        assert "Too many open files" not in log and "accept() threw" not in log
    finally:
        for sock in socks:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


INFINITY = resource.RLIM_INFINITY
RAISED = "raised the open-file limit from {} to {}"
HOLDS = "open-file limit {} (hard) holds {} connections, not {}"


@pytest.mark.parametrize(
    ("soft", "hard", "connections", "fitted", "raised_to", "logged"),
    [
        (1024, 524288, 8000, 8000, 8082, [RAISED.format(1024, 8082)]),
        (1024, INFINITY, 8000, 8000, 8082, [RAISED.format(1024, 8082)]),
        (8081, 524288, 8000, 8000, 8082, [RAISED.format(8081, 8082)]),
        (8082, 524288, 8000, 8000, None, []),
        (INFINITY, INFINITY, 8000, 8000, None, []),
        (
            1024,
            4096,
            8000,
            4014,
            4096,
            [RAISED.format(1024, 4096), HOLDS.format(4096, 4014, 8000)],
        ),
        (4096, 4096, 8000, 4014, None, [HOLDS.format(4096, 4014, 8000)]),
        (10, 10, 100, 1, None, [HOLDS.format(10, 1, 100)]),
    ],
)
def test_the_open_file_limit_fits_the_connection_limit(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    soft: int,
    hard: int,
    connections: int,
    fitted: int,
    raised_to: int | None,
    logged: list[str],
) -> None:
    limits = Limits(soft, hard)
    monkeypatch.setattr(timercheck, "resource", limits)
    caplog.set_level("INFO", "timercheck")
    assert fit_open_files(connections, 4) == fitted  # 64 + 3 × 6 spare
    assert limits.set == ([] if raised_to is None else [(raised_to, hard)])
    assert caplog.messages == logged
    assert [r.levelname for r in caplog.records] == [
        "WARNING" if "holds" in m else "INFO" for m in logged
    ]


def test_each_store_gets_its_own_number_of_threads_unless_set() -> None:
    assert Config().workers == 4
    assert Config(table_name="timers").workers == 8
    assert Config(threads=3).workers == 3
    assert Config(table_name="timers", threads=16).workers == 16


# -- the breaker, under CPU load --


class SlowAndFast(StuckStore):
    """Calls for "stuck" wait until released; the others come back at once."""

    def get(self, *args: Any) -> Timer | None:
        if args and args[0] == "stuck":
            return super().get(*args)
        return None


def test_slow_calls_while_others_come_back_are_overload_not_a_store_down() -> None:
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(0.9)
    assert breaker.get("quick") is None  # a call comes back at 1000.9
    clock.advance(0.5)  # two calls have waited 1.4 s; one came back 0.5 s ago
    assert breaker.get("quick") is None
    clock.advance(1.01)  # and now nothing has come back for over a second
    with pytest.raises(StoreUnavailable, match="store not answering"):
        breaker.get("quick")
    store.release.set()
    for thread in stuck:
        thread.join()


def test_calls_are_stuck_only_once_nothing_has_come_back_for_over_a_second() -> None:
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(0.5)
    assert breaker.get("quick") is None  # came back at 1000.5
    clock.advance(1.0)  # exactly a second since; the two waited 1.5 s
    assert breaker.get("quick") is None
    store.release.set()
    for thread in stuck:
        thread.join()


def test_nothing_back_for_a_second_is_not_stuck_while_calls_are_young() -> None:
    """No answer for 1.3 s, but the two calls in flight began 0.5 s ago."""
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    clock.advance(0.8)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(0.5)
    assert breaker.get("quick") is None
    store.release.set()
    for thread in stuck:
        thread.join()


def test_with_nothing_back_calls_in_flight_exactly_a_second_are_not_stuck() -> None:
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    clock.advance(0.5)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(1.0)  # nothing back for 1.5 s; the two began 1.0 s ago
    assert breaker.get("quick") is None
    store.release.set()
    for thread in stuck:
        thread.join()


def test_a_request_arrives_when_it_has_been_read_whole() -> None:
    """The wait that sheds a request counts from its last byte, not its first."""
    from waitress.adjustments import Adjustments

    from timercheck import TimedRequestParser

    parser = TimedRequestParser(Adjustments())
    parser.received(b"GET /job HTTP/1.1\r\nHost: x\r\n")
    assert parser.arrived == 0.0
    before = time.monotonic()
    parser.received(b"\r\n")
    assert before <= parser.arrived <= time.monotonic()
    first = parser.arrived
    parser.received(b"GET /other HTTP/1.1\r\n\r\n")  # the next is another's
    assert parser.arrived == first


# -- SQLite: forgotten timers are purged --


def rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT timer FROM timers ORDER BY timer")]


def test_sqlite_purges_forgotten_timers_in_batches(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "timers.db"
    store = SqliteStore(str(path))
    app = TestApp(App(store, clock, retention_days=1))
    for n in range(12):
        app.get(f"/old-{n:02}/60")
    clock.advance(60 + 86400 - 1)  # a second before the old timers are forgotten
    app.get("/new/60")
    now = int(clock())
    assert store.purge(now, batch=5) == 0
    assert app.get("/old-00", status=504).json["status"] == "expired"
    clock.advance(1)
    now = int(clock())
    assert [store.purge(now, batch=5) for _ in range(4)] == [5, 5, 2, 0]
    assert rows(path) == ["new"]
    app.get("/old-00", status=404)
    assert app.get("/old-00/60").json["misses"] == 0


READ_ONLY = "sqlite: attempt to write a readonly database"


class Stop(Exception):
    pass


class Scripted(SqliteStore):
    """A real store whose purges fail, succeed or stop the loop as told."""

    def __init__(self, path: str, script: list[str]) -> None:
        super().__init__(path)
        self.script = script

    def purge(self, now: int, batch: int = 500) -> int:
        step = self.script.pop(0)
        if step == "fail":
            raise StoreUnavailable(READ_ONLY)
        if step == "stop":
            raise Stop
        return super().purge(now, batch)


def test_the_purge_loop_sleeps_between_rounds_and_says_once_per_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = Scripted(
        str(tmp_path / "t.db"), ["purge", "fail", "fail", "purge", "fail", "stop"]
    )
    for n in range(3):
        store.put(Timer(f"gone-{n}", 0, 1, 1))
    slept: list[float] = []
    monkeypatch.setattr(timercheck.time, "sleep", slept.append)
    with pytest.raises(Stop):
        purge_forgotten(store, every=7.0)
    assert slept == [7.0] * 6
    assert rows(tmp_path / "t.db") == []
    said = [m for m in caplog.messages if m.startswith("cannot purge")]
    assert said == [f"cannot purge forgotten timers: {READ_ONLY}"] * 2


def test_the_purge_thread_empties_what_expired_and_says_once_when_it_cannot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "timers.db"
    store = SqliteStore(str(path))
    store.put(Timer("gone", 0, 1, 1))  # forgotten in 1970
    store.put(Timer("kept", 0, 1, 2**40))
    threading.Thread(target=purge_forgotten, args=(store, 0.01), daemon=True).start()
    deadline = time.monotonic() + 5
    while rows(path) != ["kept"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rows(path) == ["kept"]

    read_only = SqliteStore(f"file:{path}?mode=ro")
    assert read_only.get("kept") is not None
    threading.Thread(
        target=purge_forgotten, args=(read_only, 0.01), daemon=True
    ).start()
    time.sleep(0.3)
    said = [m for m in caplog.messages if m.startswith("cannot purge forgotten timers")]
    assert said == [
        "cannot purge forgotten timers: sqlite: attempt to write a readonly database"
    ]


# -- a small storm against the real server, on both stores --


def storm(port: int, crowd: int, sets: int) -> tuple[dict[str, Any], list[Any]]:
    """A crowd checking /crowd, then a storm of sets, with a load balancer's
    probe of / on new connections all along."""
    # With a bound of 1 ms even this set may be shed on a busy machine: retry.
    for _ in range(100):
        if call(port, "GET", "/crowd/600").status == 200:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the crowd's timer could not be set")
    stop: threading.Event = threading.Event()
    probes: list[Any] = []
    prober = threading.Thread(target=probe_health, args=(port, stop, probes))
    prober.start()
    try:
        result = asyncio.run(crowd_and_storm(port, crowd, sets, 1.0, "/crowd"))
    finally:
        stop.set()
        prober.join()
    return result, probes


def assert_storm_held(port: int, result: dict[str, Any], probes: list[Any]) -> None:
    """Correctness only: every answer a 200 or a 503 with Retry-After, every
    acknowledged set running afterwards, no probe of / failing."""
    assert result["crowd_connected"] > 0
    assert set(result["crowd_answers"]) <= {"200", "503+Retry-After"}
    outcomes = {(outcome, retry_after) for outcome, retry_after, _ in result["sets"]}
    assert outcomes <= {("200", False), ("503", True)}
    assert probes
    assert [outcome for _, _, outcome in probes if outcome != "200"] == []
    assert lost_sets(port, result["sets"]) == 0


@pytest.fixture(params=["sqlite", "dynamodb"])
def storm_env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {"TIMERCHECK_DB": str(tmp_path / "storm.db")}
        return
    with moto_server() as moto:
        env = dynamo_env(moto.port)
        create_table(env)
        yield env


def test_a_storm_is_answered_200_or_503_with_retry_after_and_loses_nothing(
    storm_env: dict[str, str],
) -> None:
    with service(storm_env) as server:
        result, probes = storm(server.port, crowd=20, sets=200)
        assert_storm_held(server.port, result, probes)
        # waitress warns of its queue's depth on every task past the threads:
        # a line per request in a storm, so the service silences it.
        assert "Task queue depth" not in server.output()


def test_a_storm_past_the_wait_bound_is_shed_and_still_loses_nothing(
    tmp_path: Path,
) -> None:
    """A bound of 1 ms: much of the storm waits past it. The shed sets get a
    503 with Retry-After and set nothing; the rest hold."""
    env = {"TIMERCHECK_DB": str(tmp_path / "storm.db"), "TIMERCHECK_MAX_WAIT_MS": "1"}
    with service(env) as server:
        result, probes = storm(server.port, crowd=20, sets=200)
        assert_storm_held(server.port, result, probes)
        shed = [
            n for n, (outcome, _, _) in enumerate(result["sets"]) if outcome == "503"
        ]
        # The breaker's slots answer 503 too, each with a "store unavailable"
        # line: more 503s than such lines means requests were shed.
        assert server.output().count("store unavailable") < len(shed)
        for n in shed:
            assert call(server.port, "GET", f"/storm-{n}").status in (404, 503)


async def flood_health(port: int, connections: int, seconds: float) -> int:
    """`connections` connections each pipelining `GET /` 50 at a time for
    `seconds`; how many were answered."""
    batch = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 50
    answered = 0

    async def one() -> None:
        nonlocal answered
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                writer.write(batch)
                got = 0
                while got < 50:
                    data = await reader.read(65536)
                    if not data:
                        return
                    got += data.count(b"HTTP/1.1 200 OK")
                answered += got
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return answered


def test_a_flood_of_health_checks_does_not_starve_the_timers(tmp_path: Path) -> None:
    """40 connections pipelining `GET /` for 6 s: a timer is still checked,
    each check answered 200 (none shed), and a load balancer's probe on a
    new connection still answers. The times are printed, not asserted."""
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        assert call(server.port, "GET", "/job/600").status == 200
        stop = threading.Event()
        checks: list[tuple[int, float]] = []
        probes: list[tuple[float, float, str]] = []

        def check() -> None:
            while not stop.is_set():
                started = time.monotonic()
                status = call(server.port, "GET", "/job").status
                checks.append((status, time.monotonic() - started))

        threads = [
            threading.Thread(target=check),
            threading.Thread(target=probe_health, args=(server.port, stop, probes)),
        ]
        for thread in threads:
            thread.start()
        try:
            flooded = asyncio.run(flood_health(server.port, 40, 6))
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    waits = sorted(wait for _, wait in checks)
    print(
        f"\n[flood] GET / answered {flooded}, timer checks {len(checks)}"
        f" p50 {waits[len(waits) // 2] * 1000:.0f} ms max {waits[-1] * 1000:.0f} ms,"
        f" probes {len(probes)} max {max(p[1] for p in probes) * 1000:.0f} ms"
    )
    assert flooded > 1000
    assert {status for status, _ in checks} == {200}
    assert len(checks) >= 20  # starved, it managed 1 or 2 in 6 s
    assert probes and {outcome for _, _, outcome in probes} == {"200"}
