"""Beyond TimerCheck: missed expiries, prefetchers that must not reset, and the
badge and text views. Through WebTest on both stores, with the fake clock."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from webtest import TestApp

from fakes import START, FailingStore, FakeClock
from timercheck import App, StoreUnavailable, human_duration

T0 = int(START)


# -- missed expiries --


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
    from timercheck import Miss, Timer

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


def test_repeated_failure_reports_are_one_outage(
    app: TestApp, clock: FakeClock
) -> None:
    """`job.sh || curl .../job/0` on every failing run: one miss in all, once
    a run succeeds, dated from the last failure report."""
    app.get("/job/60")
    clock.advance(10)
    assert app.get("/job/0").json["ended_miss"] is False
    for _ in range(3):
        clock.advance(60)
        answer = app.get("/job/0").json
        assert (answer["ended_miss"], answer["misses"]) == (False, 0)
    assert app.get("/job?since=0", status=504).json["status"] == "expired"
    clock.advance(30)
    answer = app.get("/job/60").json
    assert (answer["ended_miss"], answer["misses"]) == (True, 1)
    last_miss = {"expired_at": T0 + 190, "reset_at": T0 + 220, "overdue_seconds": 30}
    assert answer["last_miss"] == last_miss


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


# -- prefetchers and link unfurlers --

UNFURLERS = [
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Slackbot 1.0 (+https://api.slack.com/robots)",
    "Twitterbot/1.0",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "TelegramBot (like TwitterBot)",
    "WhatsApp/2.23.20.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (Macintosh) AppleWebKit (KHTML, like Gecko) Applebot/0.1",
    "Mastodon/4.2.0 (http.rb/5.1.1; +https://mastodon.social/)",
    "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
    "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
    "Mozilla/5.0 (Windows NT 10.0) MicrosoftPreview/2.0 +https://aka.ms/MicrosoftPreview",
]
TOOLS = [
    "curl/8.5.0",
    "Wget/1.21.4",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.22621",
    "Uptime-Kuma/1.23.11",
    "",
]


@pytest.mark.parametrize("agent", [*UNFURLERS, "slackbot 1.0", "TWITTERBOT/1.0"])
def test_link_unfurlers_never_reset(app: TestApp, clock: FakeClock, agent: str) -> None:
    app.get("/job/60")
    clock.advance(60)
    answer = app.get("/job/600", headers={"User-Agent": agent}, status=504)
    assert answer.json["status"] == "expired"
    assert answer.headers["X-Timer-Ignored"].startswith("link preview")
    assert app.get("/job", status=504).json["start_seconds"] == 60
    fresh = app.get("/other/600", headers={"User-Agent": agent}, status=404)
    assert fresh.headers["X-Timer-Status"] == "never-set"
    app.get("/other", status=404)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Purpose": "prefetch"},
        {"Sec-Purpose": "prefetch;prerender"},
        {"Purpose": "prefetch"},
        {"X-Purpose": "preview"},
        {"X-Moz": "prefetch"},
    ],
)
def test_prefetches_never_reset(app: TestApp, headers: dict[str, str]) -> None:
    answer = app.get("/job/60", headers=headers, status=404)
    assert answer.headers["X-Timer-Ignored"] == "prefetch"
    app.get("/job", status=404)


@pytest.mark.parametrize("agent", TOOLS)
def test_tools_and_unknown_agents_still_set(app: TestApp, agent: str) -> None:
    answer = app.get("/job/60", headers={"User-Agent": agent})
    assert answer.json["message"] == "Timer countdown updated"
    assert "X-Timer-Ignored" not in answer.headers


def test_post_and_put_set_whatever_the_agent(app: TestApp) -> None:
    app.post("/job/60", headers={"User-Agent": "Twitterbot/1.0"})
    app.put("/job2/60", headers={"Purpose": "prefetch"})
    app.get("/job")
    app.get("/job2")


# -- views: svg, shields, text --


def badge(app: TestApp, path: str) -> tuple[Any, ET.Element]:
    answer = app.get(path)
    assert answer.status_int == 200
    assert answer.content_type == "image/svg+xml"
    assert answer.headers["Cache-Control"] == "no-store"
    return answer, ET.fromstring(answer.body)


def texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]


@pytest.mark.parametrize(
    ("setup", "path", "state", "message", "color", "width"),
    [
        ([], "/job?format=svg", "never-set", "never set", "#9f9f9f", 95),
        (
            [("/job/2580", 0)],
            "/job?format=svg",
            "running",
            "running · 43m left",
            "#4c1",
            141,
        ),
        (
            [("/job/60", 7560)],
            "/job?format=svg",
            "expired",
            "expired · 2h 5m ago",
            "#e05d44",
            155,
        ),
        (
            [("/job/60", 70), ("/job/86400", 0)],
            "/job?format=svg",
            "running",
            "missed 1× · running",
            "#dfb317",
            155,
        ),
        (
            [("/job/60", 70), ("/job/60", 70), ("/job/60", 70), ("/job/86400", 0)],
            "/job?format=svg&since=1",
            "missed",
            "missed 2× · running",
            "#dfb317",
            155,
        ),
        (
            [("/job/60", 70), ("/job/86400", 0)],
            "/job?format=svg&since=1",
            "running",
            "running · 1d left",
            "#4c1",
            131,
        ),
    ],
)
def test_svg_badge(
    app: TestApp,
    clock: FakeClock,
    setup: list[tuple[str, float]],
    path: str,
    state: str,
    message: str,
    color: str,
    width: int,
) -> None:
    for set_path, then in setup:
        app.get(set_path)
        clock.advance(then)
    answer, svg = badge(app, path)
    assert answer.headers["X-Timer-Status"] == state
    assert texts(svg) == ["job", "job", message, message]
    assert color in answer.text
    assert svg.get("width") == str(width)


def test_badge_width_grows_with_the_text(app: TestApp) -> None:
    _, short = badge(app, "/a?format=svg")
    _, long = badge(app, f"/{'w' * 60}?format=svg")
    assert int(long.get("width")) > int(short.get("width")) + 300


def test_badge_head_has_no_body(app: TestApp) -> None:
    answer = app.head("/job?format=svg")
    assert answer.status_int == 200 and answer.body == b""


@pytest.mark.parametrize(
    ("setup", "query", "message", "color", "state"),
    [
        ([], "", "never set", "lightgrey", "never-set"),
        ([("/job/3600", 0)], "", "running · 1h left", "brightgreen", "running"),
        ([("/job/60", 3)], "", "running · 57s left", "brightgreen", "running"),
        ([("/job/60", 60 + 3 * 86400)], "", "expired · 3d ago", "red", "expired"),
        (
            [("/job/60", 70), ("/job/60", 70), ("/job/600", 0)],
            "&since=1",
            "missed 1× · running",
            "yellow",
            "missed",
        ),
        (
            [("/job/60", 70), ("/job/600", 0)],
            "",
            "missed 1× · running",
            "yellow",
            "running",
        ),
    ],
)
def test_shields_endpoint(
    app: TestApp,
    clock: FakeClock,
    setup: list[tuple[str, float]],
    query: str,
    message: str,
    color: str,
    state: str,
) -> None:
    for set_path, then in setup:
        app.get(set_path)
        clock.advance(then)
    answer = app.get(f"/job?format=shields{query}")
    assert answer.status_int == 200
    assert answer.headers["X-Timer-Status"] == state
    assert answer.json == {
        "schemaVersion": 1,
        "label": "job",
        "message": message,
        "color": color,
    }


def test_text_view(app: TestApp, clock: FakeClock) -> None:
    answer = app.get("/job?format=text", status=404)
    assert (answer.text, answer.content_type) == ("never-set\n", "text/plain")
    app.get("/job/2550")
    clock.advance(30)
    answer = app.get("/job?format=text")
    assert answer.text == "running 2520\n"
    assert answer.headers["X-Timer-Status"] == "running"
    clock.advance(2550)
    assert app.get("/job?format=text", status=504).text == "expired 30\n"
    app.get("/job/60")
    missed = app.get("/job?format=text&since=0", status=504)
    assert missed.text == "missed 1 remaining 60\n"
    assert "running" not in missed.text  # a keyword monitor alerts on it
    assert app.get("/job?format=text&since=1").text == "running 60\n"


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


def test_unknown_format_is_400(app: TestApp) -> None:
    assert "format" in app.get("/job?format=xml", status=400).json["errorMessage"]


@pytest.mark.parametrize("query", ["format=xml", "format=", "since=x", "since=-1"])
def test_a_bad_query_on_a_set_url_is_400_and_sets_nothing(
    app: TestApp, query: str
) -> None:
    answer = app.get(f"/job/60?{query}", status=400).json
    assert answer["errorMessage"].startswith("400: ")
    app.get("/job", status=404)


def test_a_set_answers_in_json_whatever_the_format(app: TestApp) -> None:
    answer = app.get("/job/60?format=svg&since=3")
    assert answer.json["message"] == "Timer countdown updated"


RUNNING_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="141" height="20" role="img"'
    ' aria-label="job: running · 43m left"><title>job: running · 43m left</title>'
    '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb"'
    ' stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
    '<clipPath id="r"><rect width="141" height="20" rx="3" fill="#fff"/></clipPath>'
    '<g clip-path="url(#r)"><rect width="29" height="20" fill="#555"/><rect x="29"'
    ' width="112" height="20" fill="#4c1"/><rect width="141" height="20"'
    ' fill="url(#s)"/></g><g fill="#fff" text-anchor="middle"'
    ' font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
    '<text x="14.5" y="15" fill="#010101" fill-opacity=".3">job</text>'
    '<text x="14.5" y="14">job</text>'
    '<text x="85.0" y="15" fill="#010101" fill-opacity=".3">running · 43m left</text>'
    '<text x="85.0" y="14">running · 43m left</text></g></svg>'
)


def test_the_svg_badge_is_drawn_as_shields_io_draws_it(
    app: TestApp, clock: FakeClock
) -> None:
    """Widths from Verdana 11px: j 3, o 7, b 7, plus 12 of padding; texts
    centred in each half, with shields.io's shadow one pixel lower."""
    app.get("/job/2580")
    assert app.get("/job?format=svg").text == RUNNING_SVG


def test_badge_when_the_store_is_down(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = TestApp(App(FailingStore(StoreUnavailable("sqlite: disk I/O error")), clock))
    answer = app.get("/job?format=svg")
    assert answer.status_int == 200 and answer.content_type == "image/svg+xml"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    _, svg = badge(app, "/job?format=svg")
    assert texts(svg) == ["job", "job", "unavailable", "unavailable"]
    assert 'fill="#9f9f9f"' in answer.text
    assert "X-Timer-Status" not in answer.headers
    shields = app.get("/job?format=shields")
    assert shields.json == {
        "schemaVersion": 1,
        "label": "job",
        "message": "unavailable",
        "color": "lightgrey",
    }
    assert "X-Timer-Status" not in shields.headers
    text = app.get("/job?format=text", status=503)
    assert text.text == "unavailable\n"
    assert text.headers["Retry-After"] == "5"
    request_id = app.get("/job", status=503).headers["X-Request-Id"]
    said = [r.getMessage() for r in caplog.records if r.name == "timercheck"]
    assert said == ["store unavailable: sqlite: disk I/O error"] * 4 + [
        f"request {request_id}: store unavailable: sqlite: disk I/O error"
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (59, "59s"),
        (60, "1m"),
        (2580, "43m"),
        (3599, "59m"),
        (3600, "1h"),
        (7500, "2h 5m"),
        (86399, "23h 59m"),
        (86400, "1d"),
        (3 * 86400, "3d"),
        (3 * 86400 + 7200, "3d 2h"),
    ],
)
def test_human_durations(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text
