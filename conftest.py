"""Fixtures for every test file: a fake clock, fake AWS, both stores, an app.
The fakes live in tests/fakes.py, the servers and clients in tests/support.py."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from webtest import TestApp

from fakes import FakeClock, record_calls, serialize_item_operations
from timercheck import App, DynamoDB, DynamoStore, SqliteStore, Store, dynamodb_client


def children() -> set[int]:
    """The processes this one started that are still running (not zombies):
    each thread's children, as Linux lists them in /proc."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the thread ended
            found.update(map(int, (task / "children").read_text().split()))
    running = set()
    for pid in found:
        with contextlib.suppress(FileNotFoundError):  # reaped meanwhile
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            if state != "Z":
                running.add(pid)
    return running


@pytest.fixture(autouse=True)
def leaves_nothing_running() -> Iterator[None]:
    """No test leaves a thread or a process running for the tests after it:
    each thread it started ends within 10 s of its end, and each process it
    started has ended by then."""
    threads, processes = set(threading.enumerate()), children()
    yield
    for thread in set(threading.enumerate()) - threads:
        thread.join(10)
    left = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert not left, f"threads left running: {left}"
    assert not children() - processes, "processes left running"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def dynamo(fake_aws: None, monkeypatch: pytest.MonkeyPatch) -> DynamoStore:
    """A DynamoStore on moto, its table made by the service's own create-table."""
    serialize_item_operations(monkeypatch)
    store = DynamoStore("timers", DynamoDB(dynamodb_client("us-east-1")))
    store.create_table()
    return store


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Store:
    if request.param == "sqlite":
        return SqliteStore(str(tmp_path / "timers.db"))  # type: ignore[operator]
    return request.getfixturevalue("dynamo")


@pytest.fixture
def app(store: Store, clock: FakeClock) -> TestApp:
    return TestApp(App(store, clock))


@pytest.fixture
def recorded(
    dynamo: DynamoStore, clock: FakeClock
) -> tuple[TestApp, list[tuple[str, dict[str, Any]]]]:
    """An app on moto, and every DynamoDB operation it makes from now on.
    Its keys are loaded first, as at start: the secret is read once."""
    app = App(dynamo, clock)
    app.token_keys()
    return TestApp(app), record_calls(dynamo.client)
