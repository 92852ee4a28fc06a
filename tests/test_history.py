"""A timer's history (?format=history) and its page for people (?format=html,
or a browser's Accept), through WebTest on both stores with the fake clock.
The page in a real browser is in test_page.py."""

from __future__ import annotations

import datetime
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from webtest import TestApp

from fakes import START, FailingStore, FakeClock, record_calls
from support import FAKE_AWS, ROOT, free_port
from timercheck import (
    KEPT_RESETS,
    TRIM_AT,
    App,
    DynamoDB,
    DynamoStore,
    SqliteStore,
    Store,
)

T0 = int(START)
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def history(app: TestApp, url: str = "/job", status: int = 200) -> list[Any]:
    return app.get(f"{url}?format=history", status=status).json["history"]


def entry(reset_at: int, seconds: int, overdue: int | None) -> dict[str, Any]:
    return {"reset_at": reset_at, "seconds": seconds, "overdue_seconds": overdue}


def utc(seconds: int) -> str:
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_only_url(app: TestApp, name: str) -> str:
    return "/-/" + app.get(f"/{name}/60").json["read_only_token"]


# -- the history --


def test_every_set_records_its_lateness_against_the_deadline_before(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(30)
    app.put("/job/60")
    clock.advance(62.5)  # 2.5 s after the deadline
    app.post("/job/60")
    clock.advance(10)
    app.get("/job/0")  # a failure report, 10 s into a 60 s period
    clock.advance(5)
    app.get("/job/1h")
    assert history(app) == [
        entry(T0 + 107, 3600, 5),
        entry(T0 + 102, 0, 0),
        entry(T0 + 92, 60, 2),
        entry(T0 + 30, 60, 0),
        entry(T0, 60, None),
    ]


def test_lateness_is_exact_to_the_millisecond(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(59.999)
    app.get("/job/60")  # a millisecond early: on time
    clock.advance(60)
    app.get("/job/60")  # at the deadline itself: late, by 0 whole seconds
    clock.advance(61.999)
    app.get("/job/60")  # 1.999 s late: 1 whole second
    overdue = [e["overdue_seconds"] for e in history(app)]
    assert overdue == [1, 0, 0, None]
    page = app.get("/job?format=html").text
    assert page.count('<td class="late">') == 2
    assert "late by under 1s" in page


def test_the_newest_twenty_are_kept(app: TestApp, clock: FakeClock) -> None:
    for i in range(26):
        clock.advance(0 if i == 0 else 11 if i % 2 == 0 else 5)
        app.get("/job/10")  # every other reset is a second late
    entries = history(app)
    assert len(entries) == 20
    assert entries[0]["reset_at"] == T0 + 13 * 5 + 12 * 11  # the 26th
    # The oldest shown had a deadline before it, so it has a lateness.
    assert [e["overdue_seconds"] for e in entries] == [0, 1] * 10
    assert app.get("/job?format=html").text.count("<tr>") == 21  # and the head


def test_a_delete_forgets_the_history(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(90)
    app.get("/job/60")
    app.delete("/job")
    assert history(app, status=404) == []
    clock.advance(1)
    app.get("/job/60")
    assert history(app) == [entry(T0 + 91, 60, None)]


def test_a_forgotten_timer_starts_a_new_history(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(30)
    app.get("/job/60")
    clock.advance(60 + 30 * 86400)  # the retention after its expiry
    assert history(app, status=404) == []
    app.get("/job/60")
    assert history(app) == [entry(T0 + 90 + 30 * 86400, 60, None)]
    clock.advance(10)
    app.get("/job/60")
    assert [e["overdue_seconds"] for e in history(app)] == [0, None]


def test_a_timer_one_second_short_of_forgotten_keeps_its_history(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(60 + 30 * 86400 - 0.001)
    app.get("/job/60")
    assert [e["overdue_seconds"] for e in history(app)] == [30 * 86400 - 1, None]


def test_history_answers_as_the_check_and_adds_the_history(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(61)
    for query in ("", "?since=0"):
        plain = app.get(f"/job{query}", status=504)
        both = app.get(f"/job?format=history{query.replace('?', '&')}", status=504)
        assert "history" not in plain.json
        assert {k: v for k, v in both.json.items() if k != "history"} == {
            **plain.json,
            "request_id": both.json["request_id"],
        }
        assert both.headers["X-Timer-Status"] == plain.headers["X-Timer-Status"]
        assert both.headers["Content-Type"] == "application/json"
    assert history(app, status=504) == [entry(T0, 60, None)]
    never = app.get("/nothing?format=history", status=404)
    assert never.json["errorMessage"] == "404: timer has never been set"
    assert never.json["history"] == []


def test_history_and_the_page_through_the_read_only_url(
    app: TestApp, clock: FakeClock
) -> None:
    url = read_only_url(app, "secret-job-name")
    clock.advance(61)
    app.get("/secret-job-name/60")
    assert history(app, url) == [entry(T0 + 61, 60, 1), entry(T0, 60, None)]
    body = app.get(f"{url}?format=history&label=backup").json
    assert body["timer"] == "backup"
    page = app.get(f"{url}?label=backup", headers={"Accept": BROWSER}).text
    assert "backup" in page and "secret-job-name" not in page
    assert "secret-job-name" not in app.get(f"{url}?format=html").text


def test_a_checks_answer_does_not_grow(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    small = len(app.get("/job").body)
    for _ in range(25):
        clock.advance(1)
        app.get("/job/60")
    assert len(app.get("/job").body) == small


def test_history_on_a_store_that_is_down_is_a_503(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock))
    answer = app.get("/job?format=history", status=503)
    assert answer.json["errorMessage"] == "503: timer store unavailable"


# -- on DynamoDB: one write a set, the item under 1 KB --


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


# -- the page --


@pytest.mark.parametrize(
    "accept, html",
    [
        (BROWSER, True),  # Chrome, Firefox, Safari, Edge
        ("text/html", True),
        ("TEXT/HTML; q=1.0, */*", True),
        ("*/*", False),  # curl, wget, Go, python-requests
        ("", False),  # Nagios check_http, blackbox exporter by default
        ("application/json", False),
        ("application/json, text/plain, */*", False),  # Uptime Kuma (axios)
        ("text/plain, text/html", False),
        ("application/xhtml+xml,text/html", False),
    ],
)
def test_a_browser_gets_the_page_and_everyone_else_json(
    app: TestApp, accept: str, html: bool
) -> None:
    app.get("/job/60")
    headers = {"Accept": accept} if accept else {}
    answer = app.get("/job", headers=headers)
    expected = "text/html; charset=utf-8" if html else "application/json"
    assert answer.headers["Content-Type"] == expected
    assert answer.headers["Vary"] == "Accept"
    url = read_only_url(app, "job")
    assert app.get(url, headers=headers).headers["Content-Type"] == expected


def test_a_format_wins_over_accept_and_a_set_answers_json(app: TestApp) -> None:
    headers = {"Accept": BROWSER}
    assert app.get("/job/60", headers=headers).headers["Content-Type"] == (
        "application/json"
    )
    for form, kind in [
        ("json", "application/json"),
        ("history", "application/json"),
        ("text", "text/plain"),
        ("svg", "image/svg+xml"),
    ]:
        answer = app.get(f"/job?format={form}", headers=headers)
        assert answer.headers["Content-Type"] == kind
        assert "Vary" not in answer.headers
    for method in ("post", "put"):
        answer = getattr(app, method)("/job/60", headers=headers)
        assert answer.headers["Content-Type"] == "application/json"
    head = app.head("/job/60", headers=headers)  # a set URL: checks, in JSON
    assert head.headers["Content-Type"] == "application/json"
    slack = {**headers, "User-Agent": "Slackbot-LinkExpanding 1.0"}
    unfurled = app.get("/job/60", headers=slack)
    assert unfurled.headers["Content-Type"] == "application/json"
    assert unfurled.headers["X-Timer-Ignored"] == "link preview (Slackbot)"


@pytest.mark.parametrize(
    "advance, status, word",
    [(10, 200, "Running"), (61, 504, "Expired")],
)
def test_the_page_has_the_checks_status_and_says_so(
    app: TestApp, clock: FakeClock, advance: int, status: int, word: str
) -> None:
    app.get("/job/60")
    clock.advance(advance)
    answer = app.get("/job?format=html", status=status)
    for name, value in PAGE_HEADERS.items():
        assert answer.headers[name] == value
    assert answer.headers["X-Timer-Status"] == word.lower()
    assert f'class="state {word.lower()}">{word}</span>' in answer.text
    assert '<meta http-equiv="refresh" content="30">' in answer.text


def test_the_page_of_a_timer_never_set_is_a_404(app: TestApp) -> None:
    answer = app.get("/nothing?format=html", status=404)
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert ">Never set</span>" in answer.text
    assert "<svg" not in answer.text


def test_the_page_says_missed_to_a_poller_that_passes_since(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(70)
    app.get("/job/60")
    answer = app.get("/job?format=html&since=0", status=504)
    assert ">Missed</span>" in answer.text
    assert answer.headers["X-Timer-Status"] == "missed"
    assert "Last miss" in app.get("/job?format=html").text


def test_the_page_shows_the_facts(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/70m")
    clock.advance(70 * 60 + 125)
    app.get("/job/70m")
    clock.advance(600)
    text = app.get("/job?format=html").text
    assert "1h 0m left (3600 s)" in text or "1h left (3600 s)" in text
    deadline = utc(T0 + 4325 + 4200)
    assert f"<dd><time>{deadline}</time></dd>" in text
    assert "1h 10m (4200 s)" in text
    assert "<dt>Misses</dt><dd>1</dd>" in text
    assert "late by 2m" in text  # in the table, and the miss
    assert 'class="late"' in text
    assert "1 gap between resets, 1 of them late" in text


def test_the_page_escapes_its_label_and_runs_nothing(
    app: TestApp, clock: FakeClock
) -> None:
    url = read_only_url(app, "job")
    label = '<script>alert(1)</script>"&'
    text = app.get(url, {"label": label, "format": "html"}).text
    assert "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&amp;" in text
    assert not re.search(r"\s(src|srcset|action|on\w+)=", text)
    assert "url(" not in text and "@import" not in text
    assert re.findall(r"\w+://[^\"]*", text) == ["http://www.w3.org/2000/svg"]


def test_the_page_of_a_full_history_is_under_20_kb(
    app: TestApp, clock: FakeClock
) -> None:
    name = "n" * 128
    for i in range(30):
        clock.advance(86400 + (3599 if i % 3 else 0) if i else 0)
        app.get(f"/{name}/1d")
    answer = app.get(f"/{name}", headers={"Accept": BROWSER})
    assert answer.text.count("<rect") == 20  # 20 gaps: the 21st reset is kept
    assert len(answer.body) < 20 * 1024


def test_the_page_when_the_store_is_down_is_a_503(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock))
    answer = app.get("/job", headers={"Accept": BROWSER}, status=503)
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Retry-After"] == "5"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert ">Unavailable</span>" in answer.text


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
