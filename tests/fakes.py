"""Stand-ins the tests inject: a clock, stores that fail or hang, and
botocore hooks that record or answer DynamoDB requests in place of the wire."""

from __future__ import annotations

import io
import json
import resource
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.credentials import Credentials
from moto.dynamodb.responses import DynamoHandler

from timercheck import StoreUnavailable, Timer

FAKE_CREDENTIALS = Credentials("a", "b")


def fake_client(endpoint_url: str | None = None, region: str = "us-east-1") -> Any:
    """boto3's DynamoDB client, with the fake credentials."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=FAKE_CREDENTIALS.access_key,
        aws_secret_access_key=FAKE_CREDENTIALS.secret_key,
    )


START = 1_700_000_000.0
T0 = int(START)  # the same, in whole seconds


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FailingStore:
    """A store whose every call raises `error` while `down`, and answers
    nothing otherwise."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or StoreUnavailable("down")
        self.down = True
        self.calls = 0

    def get(self, *args: Any) -> Timer | None:
        self.calls += 1
        if self.down:
            raise self.error
        return None

    put = delete = add_miss = clear_misses = get  # type: ignore[assignment]

    def secret(self) -> bytes:
        self.get()
        return bytes(32)


class StuckStore:
    """A store whose calls wait until the test lets them go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def get(self, *args: Any) -> Timer | None:
        self.calls += 1
        self.release.wait(10)
        return None

    put = delete = add_miss = clear_misses = get  # type: ignore[assignment]

    def secret(self) -> bytes:
        self.get()
        return bytes(32)


class Limits:
    """The process's open-file limits, as the resource module shows them."""

    RLIMIT_NOFILE = resource.RLIMIT_NOFILE
    RLIM_INFINITY = resource.RLIM_INFINITY

    def __init__(self, soft: int, hard: int) -> None:
        self.limits = (soft, hard)
        self.set: list[tuple[int, int]] = []

    def getrlimit(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.limits = limits
        self.set.append(limits)


def start_stuck_calls(
    breaker: Any, store: StuckStore, count: int, name: str = "job"
) -> list[threading.Thread]:
    """`count` threads, each in a call through the breaker to a stuck store."""
    threads = [threading.Thread(target=breaker.get, args=(name,)) for _ in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while store.calls < count and time.monotonic() < deadline:
        time.sleep(0.001)
    assert store.calls == count
    return threads


def record_calls(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every DynamoDB operation sent, with its parameters, as they go out on
    the wire (the store signs and sends them itself; boto3 makes the table)."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(request: Any, **kwargs: Any) -> None:
        operation = request.headers["X-Amz-Target"]
        if isinstance(operation, bytes):  # as boto3 sends it
            operation = operation.decode()
        calls.append((operation.partition(".")[2], json.loads(request.body)))

    client.meta.events.register("before-send.dynamodb", record)
    return calls


def scripted_responses(
    client: Any, answers: list[tuple[int, dict[str, str], bytes]], operation: str = ""
) -> list[int]:
    """Answer the DynamoDB requests (of one `operation`, or all) in place of
    the wire: the n-th with the n-th (status, headers, body), the last one
    again once they run out; the list counts the requests sent."""
    sent: list[int] = []

    class Raw(io.BytesIO):
        def stream(self, **kwargs: Any) -> Iterator[bytes]:
            yield self.getvalue()

    def answer(request: Any, **kwargs: Any) -> AWSResponse:
        status, headers, body = answers[min(len(sent), len(answers) - 1)]
        sent.append(1)
        headers = {"Content-Type": "application/x-amz-json-1.0", **headers}
        return AWSResponse(request.url, status, headers, Raw(body))

    event = f"before-send.dynamodb.{operation}" if operation else "before-send.dynamodb"
    client.meta.events.register(event, answer)
    return sent


def failing_responses(
    client: Any, status: int, code: str, message: str, operation: str = ""
) -> list[int]:
    """Make every DynamoDB request (of one `operation`, or all) get this
    error, through botocore's retries; the list counts the requests sent."""
    body = f'{{"__type":"com.amazonaws.dynamodb.v20120810#{code}",'
    body += f'"message":"{message}"}}'
    headers = {"x-amzn-RequestId": "r"}
    return scripted_responses(client, [(status, headers, body.encode())], operation)


def serialize_item_operations(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies the requests on one item one at a time; moto does not
    (its UpdateItem reads the old item, then updates: two racing ones can both
    return the same old item). Make moto take one item request at a time, as
    DynamoDB does, so that a race a concurrency test finds is in our code."""
    lock = threading.Lock()
    for name in ("get_item", "put_item", "update_item", "delete_item"):
        operation = getattr(DynamoHandler, name)

        def serialized(self: Any, *args: Any, _op: Any = operation, **kw: Any) -> Any:
            with lock:
                return _op(self, *args, **kw)

        monkeypatch.setattr(DynamoHandler, name, serialized)


class Rounds:
    """A stop event for a loop that waits before each round: it records each
    wait, and says stop during the `last` one."""

    def __init__(self, last: int) -> None:
        self.last, self.waits = last, list[float]()

    def wait(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return len(self.waits) >= self.last


def record_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """time.sleep, on this thread, records the wait instead of waiting; the
    threads of servers and proxies still started by earlier tests sleep as
    before, and stay out of the record."""
    waits: list[float] = []
    real, caller = time.sleep, threading.get_ident()

    def sleep(seconds: float) -> None:
        if threading.get_ident() == caller:
            waits.append(seconds)
        else:
            real(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return waits
