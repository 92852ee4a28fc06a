"""Timers: the countdown, its retention and what a reset means, on their own
(times in epoch ms); then misses, `since` and the history, through WebTest on
both stores with the fake clock."""

from __future__ import annotations

import pytest
from webtest import TestApp

from fakes import T0, FakeClock
from support import entry, history
from timercheck import (
    Miss,
    Reset,
    Timer,
    remembered,
    reset,
    timer_state,
)

T0_MS = 1_700_000_000_000  # ms


def countdown(at: int, seconds: int = 60) -> Timer:
    return Timer("job", at, seconds, at // 1000 + seconds + 86400)


def test_the_countdown_runs_until_the_exact_second() -> None:
    timer = countdown(T0_MS + 5)
    assert timer.remaining(T0_MS + 5 + 59_999) == 1
    assert timer.remaining(T0_MS + 5 + 60_000) == 0
    assert timer.countdown(T0_MS + 5 + 60_000) == {
        "start_time": T0_MS // 1000,
        "start_seconds": 60,
        "seconds_elapsed": 60,
        "seconds_remaining": 0,
    }


def test_a_clock_behind_the_start_reads_as_no_time_elapsed() -> None:
    timer = countdown(T0_MS)
    assert timer.elapsed(T0_MS - 3_000) == 0
    assert timer.remaining(T0_MS - 3_000) == 60


def test_a_timer_is_forgotten_at_its_retention_second() -> None:
    timer = Timer("job", T0_MS, 60, T0_MS // 1000 + 100)
    assert not timer.forgotten(T0_MS + 99_999)
    assert timer.forgotten(T0_MS + 100_000)
    assert remembered(timer, T0_MS + 99_999) is timer
    assert remembered(timer, T0_MS + 100_000) is None
    assert remembered(None, T0_MS) is None


def test_a_first_reset_replaces_nothing() -> None:
    new = countdown(T0_MS)
    assert reset(None, new, T0_MS) == Reset(None, new, None, False)


def test_a_reset_in_time_carries_the_misses_and_the_last_miss_on() -> None:
    miss = Miss(1, 2, 1)
    old = countdown(T0_MS)._replace(misses=3, last_miss=miss)
    new = countdown(T0_MS + 59_999)
    outcome = reset(old, new, T0_MS + 59_999)
    assert outcome == Reset(old, new._replace(misses=3, last_miss=miss), None, False)


def test_a_reset_at_the_exact_second_of_expiry_ends_a_miss() -> None:
    old = countdown(T0_MS + 250)._replace(misses=2)
    new = countdown(T0_MS + 60_250)
    outcome = reset(old, new, T0_MS + 60_250)
    miss = Miss(T0_MS // 1000 + 60, T0_MS // 1000 + 60, 0)
    assert outcome == Reset(old, new._replace(misses=3, last_miss=miss), miss, False)


def test_a_late_reset_says_how_overdue_it_was() -> None:
    old = countdown(T0_MS)
    outcome = reset(old, countdown(T0_MS + 185_900), T0_MS + 185_900)
    assert outcome.miss == Miss(T0_MS // 1000 + 60, T0_MS // 1000 + 185, 125)


def test_a_forgotten_timer_starts_again_and_its_misses_go() -> None:
    old = Timer("job", T0_MS, 60, T0_MS // 1000 + 100, 4, Miss(1, 2, 1))
    new = countdown(T0_MS + 100_000)
    assert reset(old, new, T0_MS + 100_000) == Reset(None, new, None, True)


def test_a_forgotten_timer_without_misses_needs_no_clearing() -> None:
    old = Timer("job", T0_MS, 60, T0_MS // 1000 + 100)
    new = countdown(T0_MS + 100_000)
    assert reset(old, new, T0_MS + 100_000) == Reset(None, new, None, False)


def test_the_state_a_poller_is_told() -> None:
    timer = countdown(T0_MS)._replace(misses=2)
    assert timer_state(None, T0_MS, None) == "never-set"
    assert timer_state(timer, T0_MS + 60_000, 5) == "expired"
    assert timer_state(timer, T0_MS, None) == "running"
    assert timer_state(timer, T0_MS, 2) == "running"
    assert timer_state(timer, T0_MS, 1) == "missed"


def test_no_misses_before_the_first(app: TestApp, clock: FakeClock) -> None:
    answer = app.get("/job/60").json
    assert answer["misses"] == 0 and "last_miss" not in answer
    assert answer["ended_miss"] is False
    clock.advance(59.999)
    assert app.get("/job/60").json["ended_miss"] is False
    check = app.get("/job").json
    assert check["misses"] == 0 and "last_miss" not in check


def test_a_reset_at_the_exact_second_of_expiry_counts_a_miss(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(60)
    answer = app.get("/job/60").json
    assert answer["ended_miss"] is True
    assert answer["misses"] == 1
    assert answer["last_miss"] == {
        "expired_at": T0 + 60,
        "reset_at": T0 + 60,
        "overdue_seconds": 0,
    }


def test_misses_add_up_and_show_everywhere(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(90.5)
    app.get("/job/60")
    clock.advance(30)
    assert app.get("/job/60").json["ended_miss"] is False
    clock.advance(125)
    answer = app.get("/job/60").json
    assert answer["misses"] == 2
    assert answer["last_miss"] == {
        "expired_at": T0 + 180,
        "reset_at": T0 + 245,
        "overdue_seconds": 65,
    }
    check = app.get("/job").json
    assert check["misses"] == 2 and check["last_miss"] == answer["last_miss"]
    deleted = app.delete("/job").json
    assert deleted["misses"] == 2 and deleted["last_miss"] == answer["last_miss"]
    assert app.get("/job/60").json["misses"] == 0


def test_misses_are_forgotten_with_the_timer(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/10")
    clock.advance(20)
    assert app.get("/job/10").json["misses"] == 1
    clock.advance(10 + 30 * 86400)
    answer = app.get("/job/10").json
    assert answer["misses"] == 0 and answer["ended_miss"] is False
    assert app.get("/job").json["misses"] == 0


def test_since_reports_a_miss_the_poller_has_not_seen(
    app: TestApp, clock: FakeClock
) -> None:
    app.get("/job/60")
    clock.advance(70)
    app.get("/job/60")  # expired and reset between two polls
    assert app.get("/job").status_int == 200
    answer = app.get("/job?since=0", status=504)
    assert answer.json["status"] == "missed"
    assert answer.json["misses"] == 1
    assert answer.headers["X-Timer-Status"] == "missed"
    assert answer.json["errorMessage"] == "timer missed an expiry"
    assert answer.json["message"] == "Timer expired and was reset since your last check"
    assert answer.json["timer"] == "job"
    assert app.get("/job?since=1").status_int == 200
    assert app.head("/job?since=0", status=504).body == b""


def test_since_does_not_hide_an_expiry(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(60)
    assert app.get("/job?since=5", status=504).json["status"] == "expired"


@pytest.mark.parametrize("since", ["-1", "x", "1.5", "", "99999999999"])
def test_bad_since_is_400(app: TestApp, since: str) -> None:
    app.get("/job/60")
    assert "since" in app.get(f"/job?since={since}", status=400).json["errorMessage"]


def test_a_reset_in_time_keeps_the_last_miss(app: TestApp, clock: FakeClock) -> None:
    app.get("/job/60")
    clock.advance(70)
    app.get("/job/60")
    clock.advance(30)
    answer = app.get("/job/60").json
    last_miss = {"expired_at": T0 + 60, "reset_at": T0 + 70, "overdue_seconds": 10}
    assert (answer["misses"], answer["last_miss"]) == (1, last_miss)
    assert app.get("/job").json["last_miss"] == last_miss


def test_the_badge_and_the_text_view_forget_a_miss_after_a_day(
    app: TestApp, clock: FakeClock
) -> None:
    """Without since, a miss shows (amber, `missed`) until 24 hours after
    the reset that ended it, to the millisecond of that whole second; with
    since, as the poller's count says."""
    app.get("/job/60")
    clock.advance(70.5)
    app.get("/job/1w")  # ends a miss at T0 + 70 (whole seconds)
    end_of_day = T0 + 70 + 86400
    clock.now = end_of_day - 0.001
    assert app.get("/job?format=text").text.startswith("missed 1 remaining ")
    assert app.get("/job?format=shields").json["color"] == "yellow"
    assert app.get("/job?format=shields").json["message"] == "missed 1× · running"
    text = app.get("/job?format=text")
    assert (text.status_int, text.headers["X-Timer-Status"]) == (200, "running")
    clock.now = end_of_day
    assert app.get("/job?format=text").text.startswith("running ")
    assert app.get("/job?format=shields").json["color"] == "brightgreen"
    assert "#4c1" in app.get("/job?format=svg").text
    since = app.get("/job?format=shields&since=0").json
    assert (since["color"], since["message"]) == ("yellow", "missed 1× · running")
    assert app.get("/job?format=text&since=0", status=504).text.startswith("missed")


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
