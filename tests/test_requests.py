"""Requests: labels and the query; link unfurlers and prefetchers."""

from __future__ import annotations

import pytest
from webtest import TestApp

from fakes import FakeClock
from support import (
    read_only_url,
)

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


@pytest.mark.parametrize("query", ["format=xml", "format=", "since=x", "since=-1"])
def test_a_bad_query_on_a_set_url_is_400_and_sets_nothing(
    app: TestApp, query: str
) -> None:
    answer = app.get(f"/job/60?{query}", status=400).json
    assert answer["errorMessage"].startswith("400: ")
    app.get("/job", status=404)


@pytest.mark.parametrize(
    "label",
    [
        "",
        "x" * 65,
        "a\nb",
        "a\x1bb",
        "a\tb",
        "a\x7fb",
        "a\x85b",  # C1: next line
        "a\x9bb",  # C1: control sequence introducer
        "a\u202eb",  # right-to-left override
        "a\u2066b",  # left-to-right isolate
        "a\u200fb",  # right-to-left mark
        "a\u061cb",  # Arabic letter mark
        "a\u200bb",  # zero-width space
        "a\u200db",  # zero-width joiner
        "a\ufeffb",  # zero-width no-break space
        "a\u2028b",  # line separator
        "a\u2029b",  # paragraph separator
        "a\ue000b",  # private use
        "a\U000e0001b",  # language tag
    ],
)
def test_a_bad_label_is_400(app: TestApp, label: str) -> None:
    url = read_only_url(app, "job")
    answer = app.get(url, params={"format": "svg", "label": label}, status=400).json
    message = (
        "400: label must be 1 to 64 printable characters: no control, bidi,"
        " zero-width or line separator characters"
    )
    assert answer["errorMessage"] == message


@pytest.mark.parametrize(
    "label", ["x", "y" * 64, "nightly backup", "a·b", "café", "日本語", "ok 🕒"]
)
def test_a_label_of_1_to_64_printable_characters(app: TestApp, label: str) -> None:
    url = read_only_url(app, "job")
    assert (
        app.get(url, params={"format": "shields", "label": label}).json["label"]
        == label
    )
