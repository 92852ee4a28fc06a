"""The stores, SQLite and DynamoDB: their faults as 503s, their rows and
items, concurrent writes, the resets kept, the purge, and create-table."""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import botocore.exceptions
import botocore.handlers
import pytest
from webtest import TestApp

from fakes import (
    T0,
    FailingStore,
    FakeClock,
    failing_responses,
    record_calls,
    record_sleeps,
    scripted_responses,
)
from support import (
    BROWSER,
    FAKE_AWS,
    ROOT,
    entry,
    free_port,
    history,
    rows,
)
from timercheck import (
    KEPT_RESETS,
    TRIM_AT,
    App,
    Breaker,
    DynamoDB,
    DynamoStore,
    Miss,
    SqliteStore,
    Store,
    StoreUnavailable,
    Timer,
)

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


def test_store_down_answers_503_and_health_stays_up(clock: FakeClock) -> None:
    store = FailingStore()
    app = TestApp(App(Breaker(store, clock=FakeClock(0)), clock))
    assert_unavailable(app)
    assert store.calls == 3


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


def test_error_codes_name_what_went_wrong() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from timercheck import error_code

    throttled = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
    assert error_code(ClientError(throttled, "GetItem")) == "ThrottlingException"
    assert error_code(ClientError({}, "GetItem")) == "ClientError"
    refused = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert error_code(refused) == "EndpointConnectionError"


def test_read_only_sqlite_still_serves_read_only_urls(
    tmp_path: Any, clock: FakeClock
) -> None:
    path = str(tmp_path / "timers.db")
    token = (
        TestApp(App(SqliteStore(path), clock)).get("/job/60").json["read_only_token"]
    )
    app = TestApp(App(SqliteStore(f"file:{path}?mode=ro"), clock))
    assert app.get(f"/-/{token}").json["seconds_remaining"] == 60


class DeletedBeforeTheMissIsCounted:
    """A store on which another request deletes the timer between the reset
    and the count of its miss."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def add_miss(self, name: str, miss: Any) -> int:
        self.store.delete(name)
        return self.store.add_miss(name, miss)


def test_a_timer_deleted_while_its_miss_is_counted_still_sets(
    store: Any, clock: FakeClock
) -> None:
    app = TestApp(App(DeletedBeforeTheMissIsCounted(store), clock))
    app.get("/job/60")
    clock.advance(60)
    answer = app.get("/job/60").json
    assert (answer["status"], answer["ended_miss"], answer["misses"]) == ("ok", True, 0)


def test_misses_counted_at_once_are_each_counted(store: Any) -> None:
    """Threads released together by a barrier, round after round."""
    from timercheck import Timer

    threads, rounds = 8, 10
    store.put(Timer("race", 0, 1, 2**40))
    barrier = threading.Barrier(threads)
    errors: list[Exception] = []

    def count() -> None:
        try:
            for _ in range(rounds):
                barrier.wait(10)
                store.add_miss("race", Miss(1, 2, 1))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    workers = [threading.Thread(target=count) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert store.get("race").misses == threads * rounds


def test_racing_resets_of_an_expired_timer_end_one_miss(
    store: Any, clock: FakeClock
) -> None:
    """Resets released together by a barrier, round after round: the store
    hands the expired timer to exactly one of them."""
    app, threads, rounds = App(store, clock), 8, 5
    TestApp(app).get("/race/60")
    barrier = threading.Barrier(threads)
    ended: list[bool] = []
    errors: list[Exception] = []

    def reset() -> None:
        try:
            barrier.wait(10)
            ended.append(TestApp(app).get("/race/60").json["ended_miss"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    for _ in range(rounds):
        clock.advance(60)
        workers = [threading.Thread(target=reset) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert errors == []
    assert ended.count(True) == rounds
    assert TestApp(app).get("/race").json["misses"] == rounds


def test_a_miss_costs_one_more_write_and_a_reset_one(
    recorded: tuple[TestApp, list[tuple[str, dict[str, Any]]]], clock: FakeClock
) -> None:
    app, calls = recorded
    app.get("/job/60")
    app.get("/job/60")
    assert [operation for operation, _ in calls] == ["UpdateItem", "UpdateItem"]
    clock.advance(60)
    calls.clear()
    app.get("/job/60")
    assert [operation for operation, _ in calls] == ["UpdateItem", "UpdateItem"]
    calls.clear()
    app.get("/job")
    assert [operation for operation, _ in calls] == ["GetItem"]


@pytest.mark.parametrize(
    "spelling",
    [
        "{dir}/t.db",
        "file:{dir}/t.db",
        "file://{dir}/t.db?mode=rwc",
        "file:{dir}/t%2Edb",
    ],
)
def test_the_sqlite_files_are_for_the_service_s_user_only(
    tmp_path: Path, clock: FakeClock, spelling: str
) -> None:
    old = os.umask(0o022)
    try:
        path = spelling.format(dir=tmp_path)
        app = TestApp(App(SqliteStore(path), clock))
        app.get("/job/60")
        modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert modes == {"t.db": 0o600, "t.db-wal": 0o600, "t.db-shm": 0o600}


def test_a_database_open_to_others_is_named_with_its_fix(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.touch(0o644)
    path.chmod(0o644)
    assert SqliteStore(f"file:{path}").exposed() == (
        f"the SQLite database {path} is open to others (mode 0644): every timer"
        " name in it can reset its timer, and it holds the secret;"
        f" fix: chmod 600 {path}"
    )
    path.chmod(0o600)
    assert SqliteStore(str(path)).exposed() is None
    path.chmod(0o640)
    assert "(mode 0640)" in (SqliteStore(str(path)).exposed() or "")


def set_operations(calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [operation for operation, _ in calls]


def test_a_set_is_one_update_and_the_list_is_cut_once_in_a_while(
    dynamo: DynamoStore, clock: FakeClock
) -> None:
    app = TestApp(App(dynamo, clock))
    app.get("/job/60")
    calls = record_calls(dynamo.client)
    sets = TRIM_AT - 1 + 2 * (TRIM_AT - KEPT_RESETS)  # the list reaches TRIM_AT 3x
    for _ in range(sets):
        clock.advance(1)
        app.get("/job/60")
    updates = set_operations(calls)
    assert updates.count("UpdateItem") == sets + 3  # three cuts
    assert len(updates) == sets + 3
    cuts = [c for c in calls if c[1]["UpdateExpression"].startswith("DELETE")]
    assert len(cuts) == 3
    assert len(history(app)) == 20
    item = raw_item(dynamo, "job")
    assert KEPT_RESETS <= len(item["resets"]["NS"]) < TRIM_AT


def test_a_cut_keeps_the_newest_whatever_view_it_was_made_from(
    dynamo: DynamoStore, clock: FakeClock
) -> None:
    """The oldest go by value: a cut made before another set came, and the
    retry of a cut that was applied, leave the newest."""
    app = TestApp(App(dynamo, clock))
    for _ in range(TRIM_AT - 1):
        clock.advance(1)
        app.get("/job/60")
    kept = sorted(raw_item(dynamo, "job")["resets"]["NS"], key=int)
    assert len(kept) == TRIM_AT - 1
    dynamo._trim("job", kept[:-1])  # as seen before the last set
    assert sorted(raw_item(dynamo, "job")["resets"]["NS"], key=int) == kept[-22:]
    dynamo._trim("job", kept)
    dynamo._trim("job", kept)  # the retry of a cut that was applied
    newest = sorted(raw_item(dynamo, "job")["resets"]["NS"], key=int)
    assert newest == kept[-KEPT_RESETS:]
    assert history(app)[-1]["reset_at"] == T0 + TRIM_AT - 1 - 19


@pytest.fixture
def upserting(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> Iterator[DynamoStore]:
    """A store on tests/instant_dynamodb.py, which, as DynamoDB and dynalite
    do (and moto does not), makes an item of its key alone when an update
    without a condition finds no item."""
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    stand_in = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "instant_dynamodb.py"), str(port)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the stand-in did not start"
                time.sleep(0.02)
        client = boto3.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}")
        yield DynamoStore("timers", DynamoDB(client))
    finally:
        stand_in.kill()
        stand_in.wait()


def test_a_cut_of_a_timer_deleted_meanwhile_makes_no_item(
    upserting: DynamoStore, clock: FakeClock
) -> None:
    """Else the timer would read as an item without a countdown: a 503 for
    every check until its next set."""
    app = TestApp(App(upserting, clock))
    for _ in range(3):
        clock.advance(1)
        app.get("/job/60")
    kept = raw_item(upserting, "job")["resets"]["NS"]
    app.delete("/job")
    upserting._trim("job", kept)
    answer = upserting.client.get_item(
        TableName=upserting.table, Key={"timer": {"S": "job"}}
    )
    assert "Item" not in answer
    assert app.get("/job", status=404).json["errorMessage"] == (
        "404: timer has never been set"
    )


def raw_item(dynamo: DynamoStore, name: str) -> dict[str, Any]:
    answer = dynamo.client.get_item(
        TableName=dynamo.table, Key={"timer": {"S": name}}, ConsistentRead=True
    )
    return answer["Item"]


def number_size(text: str) -> int:
    """DynamoDB: 1 byte per two significant digits, plus 1 (leading and
    trailing zeros do not count)."""
    digits = format(Decimal(text).normalize(), "f").replace(".", "").replace("-", "")
    digits = digits.strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    """An attribute value's size by DynamoDB's rules ("Item sizes and
    formats", DynamoDB Developer Guide): strings their UTF-8 bytes, numbers
    as above, NULL and booleans 1 byte, a list or map 3 bytes plus 1 byte an
    element (and a map's keys)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "NS":  # the guide does not say: counted as a list, to be safe
        return 3 + sum(1 + number_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    raise AssertionError(kind)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(v) for name, v in item.items())


def test_the_largest_item_is_one_write_unit(
    dynamo: DynamoStore, clock: FakeClock
) -> None:
    """A 128-character name, periods of a day, every reset late by just under
    an hour (so a miss each time), and the list at its longest: the set that
    makes it TRIM_AT long writes at most 1 KB. So does the worst case, with
    every number at its longest."""
    name = "n" * 128
    app = TestApp(App(dynamo, clock))
    for _ in range(TRIM_AT - 1):
        app.get(f"/{name}/1d")
        clock.advance(86400 + 3599.999)
    item = raw_item(dynamo, name)
    assert len(item["resets"]["NS"]) == TRIM_AT - 1
    assert int(item["misses"]["N"]) == TRIM_AT - 2
    assert item["last_miss"]["M"]["overdue_seconds"] == {"N": "3599"}
    item["resets"]["NS"].append(item["resets"]["NS"][-1])  # the next set's
    assert 850 < item_size(item) <= 1024
    longest = "1999999999999999999999"  # 22 digits: 2033, and 999,999,999 s
    item["resets"]["NS"] = [longest] * TRIM_AT
    for seconds in ("start_seconds", "was_start_seconds"):
        item[seconds] = {"N": "999999999"}
    item["misses"] = {"N": "999999999"}
    assert item_size(item) <= 1024


def test_the_size_rules_as_the_guide_gives_them() -> None:
    assert number_size("1700000000123000086401") == 12  # 22 digits
    assert number_size("1700000000123000086400") == 11  # trailing zeros are free
    assert number_size("86400") == 3  # 864
    assert number_size("0.5") == 2
    assert value_size({"L": [{"N": "1"}, {"N": "22"}]}) == 3 + 2 * 3
    assert item_size({"timer": {"S": "job"}, "misses": {"N": "1"}}) == 8 + 8


def test_an_old_sqlite_file_gains_the_history(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE timers (timer TEXT PRIMARY KEY, start_ms INTEGER NOT NULL,"
        " seconds INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
        " misses INTEGER NOT NULL DEFAULT 0, miss_expired_at INTEGER,"
        " miss_reset_at INTEGER, miss_overdue INTEGER, old_start_ms INTEGER,"
        " old_seconds INTEGER, old_expires_at INTEGER)"
    )
    db.execute(
        "INSERT INTO timers (timer, start_ms, seconds, expires_at) VALUES (?,?,?,?)",
        ("job", T0 * 1000 - 30_000, 60, T0 + 86400),
    )
    db.commit()
    db.close()
    app = TestApp(App(SqliteStore(str(path)), clock))
    assert history(app) == []  # from before histories
    app.get("/job/60")
    assert history(app) == [entry(T0, 60, None)]
    assert app.get("/job").json["start_seconds"] == 60


def test_a_check_reads_no_history_and_a_page_does(
    store: Store, clock: FakeClock
) -> None:
    """Pollers' checks cost what they did: the history is read only for
    the history and the page."""
    asked: list[bool] = []
    get = store.get

    def recording(name: str, resets: bool = False) -> Any:
        asked.append(resets)
        return get(name, resets)

    store.get = recording  # type: ignore[method-assign]
    app = TestApp(App(store, clock))
    app.get("/job/60")
    app.get("/job")
    app.get("/job?format=svg")
    app.get("/job?format=history")
    app.get("/job", headers={"Accept": BROWSER})
    assert asked == [False, False, True, True]


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
