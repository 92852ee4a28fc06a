"""timercheck: countdown timers over HTTP, a dead man's switch for cron jobs.

GET    /                   200 OK, for load balancer health checks
GET    /{timer}            200 while running, 504 once expired, 404 if never set
GET    /{timer}/{seconds}  start or restart the countdown (POST and PUT too)
DELETE /{timer}            forget the timer
GET    /{timer}?since=N    504 if it expired and was reset unseen since N misses
GET    /{timer}?format=    history (the newest 20 sets), html (a page, which a
                           browser's Accept also gets), svg, shields or text
GET    /-/{token}          a read-only URL: any check of the timer, never a write

python timercheck.py [serve | create-table | hash NAME]

The module reads from the model out to the server, and each section uses
only what is above it; type annotations alone name things further down
(a handler's `app: App`, a DynamoStore's `api: DynamoDB`):
  config          Config, from the environment
  timers          Timer, what a reset means, its history, and the contract
                  of a store
  secrets         the store's secret: read-only tokens, keyed name hashes
  views           Reply and HTTPError, and the views of a timer: JSON,
                  history, text, badges, and the page for people
  requests        names, seconds and the query; prefetchers and link
                  unfurlers
  handlers        one per route, the route table
  app             App: handle, encode, respond
  stores          SqliteStore beside its SQL; DynamoStore beside its item
                  mapping
  breaker         Breaker, which keeps a failing store from taking every
                  thread
  wire            DynamoDB's API by hand: SigV4, one HTTP/1.1 exchange per
                  operation
  waitress hooks  health first within a budget, accept bursts, shedding by
                  time waited, a deadline on a request's arrival, one send
                  an answer, no write spin
  entry point     make_store, the log, the threads beside the server; serve
                  and main, which tie the rest together and so come last
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import html
import importlib.metadata
import inspect
import io
import ipaddress
import json
import logging
import math
import os
import queue
import random
import re
import resource
import select
import signal
import socket
import sqlite3
import ssl
import struct
import sys
import threading
import time
import traceback
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from http import HTTPStatus
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3
import botocore.config
import botocore.exceptions
import botocore.handlers
import botocore.retries.standard as retries
import botocore.session
import botocore.utils
import httptools
import waitress
import waitress.channel
import waitress.parser
import waitress.proxy_headers
import waitress.server
import waitress.task
from botocore.awsrequest import AWSPreparedRequest, HeadersDict
from botocore.httpsession import get_cert_path
from botocore.retries.quota import RetryQuota
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ClientError = botocore.exceptions.ClientError
T = TypeVar("T")
log = logging.getLogger("timercheck")
access_log = logging.getLogger("timercheck.access")


# -- config --


class ConfigError(ValueError):
    """A setting in the environment that the service cannot run with."""


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def valid_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        labels = text.split(".")
        numeric = all(label.isdigit() for label in labels)  # a bad IPv4 address
        return not numeric and all(HOST_NAME.fullmatch(label) for label in labels)


def sqlite_in_memory(path: str) -> bool:
    if path == ":memory:":
        return True
    if not path.startswith("file:"):
        return False
    location, _, query = path[5:].partition("?")
    return location in ("", ":memory:") or "mode=memory" in query.split("&")


@dataclass(frozen=True)
class Setting:
    """One environment variable: what it sets, how it is read, and its range."""

    name: str
    attribute: str  # Config's
    kind: str  # text, sqlite, host, integer or level
    default: str | int | None
    meaning: str
    low: int = 0
    high: int = 0

    def allowed(self) -> str:
        if self.kind == "integer":
            return f"{self.low} to {self.high}"
        if self.kind == "level":
            return ", ".join(LEVELS)
        if self.kind == "host":
            return "an IP address or a host name"
        if self.kind == "sqlite":
            return "a file path, or a file: URI"
        return "any text"

    def parse(self, text: str) -> str | int:
        problem = self.problem(text)
        if problem:
            raise ConfigError(
                f"{self.name}={text!r}: {problem}; allowed: {self.allowed()}"
            )
        if self.kind == "integer":
            return int(text)
        return text.upper() if self.kind == "level" else text

    def problem(self, text: str) -> str | None:
        if self.kind == "integer":
            if not re.fullmatch(r"-?[0-9]+", text, re.ASCII):
                return "not a whole number"
            if text.startswith("-"):
                return "out of range"
            if len(text) > 9 or not self.low <= int(text) <= self.high:
                return "out of range"
        elif self.kind == "level" and text.upper() not in LEVELS:
            return "not a log level"
        elif self.kind == "host" and not valid_host(text):
            return "not an IP address or a host name"
        elif self.kind == "sqlite" and sqlite_in_memory(text):
            return "an in-memory database: each thread would get its own, empty"
        return None


SETTINGS = (
    Setting(
        "TABLE_NAME", "table_name", "text", None,
        "DynamoDB table of timers; unset: the SQLite file",
    ),
    Setting(
        "TIMERCHECK_DB", "sqlite_path", "sqlite", "timercheck.db",
        "SQLite file of timers, used when TABLE_NAME is unset",
    ),
    Setting(
        "REGION", "region", "text", None,
        "AWS region of the table; unset: AWS_REGION, then boto3's default",
    ),
    Setting(
        "TIMERCHECK_RETENTION_DAYS", "retention_days", "integer", 30,
        "days a timer is remembered after it expired", 1, 3650,
    ),
    Setting(
        "TIMERCHECK_MAX_SECONDS", "max_seconds", "integer", 34_560_000,
        "the longest period a set may give: 400 days, a yearly job with a"
        " month to spare", 1, 999_999_999,
    ),
    Setting(
        "TIMERCHECK_SETS_PER_MINUTE", "sets_per_minute", "integer", 600,
        "sets one client may make a minute, all at once or spread out; past"
        " it, 429 with Retry-After", 1, 1_000_000,
    ),
    Setting(
        "HOST", "host", "host", "127.0.0.1",
        "address to listen on; 0.0.0.0 for every interface (the image sets it)",
    ),
    Setting(
        "PORT", "port", "integer", 8080,
        "port to listen on; 0: any free port, logged at start", 0, 65535,
    ),
    Setting(
        "TIMERCHECK_THREADS", "threads", "integer", None,
        "worker threads, all but 2 of which may wait on the store;"
        " unset: 8 on DynamoDB, 4 on SQLite", 1, 256,
    ),
    Setting(
        "TIMERCHECK_CHANNEL_TIMEOUT", "channel_timeout", "integer", 75,
        "seconds an idle connection is kept (above the ALB's 60)", 1, 86400,
    ),
    Setting(
        "TIMERCHECK_REQUEST_TIMEOUT", "request_timeout", "integer", 10,
        "seconds a request may take to arrive whole from its first byte;"
        " a connection past it is closed", 1, 3600,
    ),
    Setting(
        "TIMERCHECK_CONNECTION_LIMIT", "connection_limit", "integer", 8000,
        "open connections accepted at once; the open-file limit is raised to fit",
        1, 100000,
    ),
    Setting(
        "TIMERCHECK_MAX_WAIT_MS", "max_wait_ms", "integer", 2000,
        "a timer request queued longer than this is answered 503 with Retry-After",
        1, 60000,
    ),
    Setting(
        "TIMERCHECK_TRUSTED_PROXY", "trusted_proxy", "text", None,
        "address of the proxy whose X-Forwarded-For names the client; * for any",
    ),
    Setting(
        "TIMERCHECK_TRUSTED_PROXY_COUNT", "trusted_proxy_count", "integer", 1,
        "proxies in front of the service", 1, 10,
    ),
    Setting(
        "LOG_LEVEL", "log_level", "level", "INFO",
        "the least important log lines written; DEBUG adds one a store call",
    ),
)  # fmt: skip
DEFAULTS = {setting.attribute: setting.default for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    table_name: str | None = DEFAULTS["table_name"]
    sqlite_path: str = DEFAULTS["sqlite_path"]
    region: str | None = DEFAULTS["region"]
    retention_days: int = DEFAULTS["retention_days"]
    max_seconds: int = DEFAULTS["max_seconds"]
    sets_per_minute: int = DEFAULTS["sets_per_minute"]
    host: str = DEFAULTS["host"]
    port: int = DEFAULTS["port"]
    threads: int | None = DEFAULTS["threads"]
    channel_timeout: int = DEFAULTS["channel_timeout"]
    request_timeout: int = DEFAULTS["request_timeout"]
    connection_limit: int = DEFAULTS["connection_limit"]
    max_wait_ms: int = DEFAULTS["max_wait_ms"]
    trusted_proxy: str | None = DEFAULTS["trusted_proxy"]
    trusted_proxy_count: int = DEFAULTS["trusted_proxy_count"]
    log_level: str = DEFAULTS["log_level"]

    @property
    def workers(self) -> int:
        """SQLite's work is CPU-bound: past 4 threads they only compete for
        the GIL with the thread that accepts connections, and under load a
        health probe waits. DynamoDB's threads mostly wait on the network."""
        return self.threads or (8 if self.table_name else 4)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """The settings in the environment; an empty value counts as unset.
        Raises ConfigError, naming the variable, for a value out of range."""
        values = {}
        for setting in SETTINGS:
            text = env.get(setting.name, "")
            if setting.name == "REGION":
                text = text or env.get("AWS_REGION", "")
            if text:
                values[setting.attribute] = setting.parse(text)
        return cls(**values)


# -- timers --


class Miss(NamedTuple):
    """An expiry that a reset ended, perhaps unseen between two polls."""

    expired_at: int
    reset_at: int
    overdue_seconds: int


class Timer(NamedTuple):
    name: str
    start_ms: int  # epoch milliseconds
    seconds: int
    expires_at: int  # epoch seconds after which the timer reads as never set
    misses: int = 0  # resets that came after an expiry, since it was first set
    last_miss: Miss | None = None
    # (start_ms, seconds) of its latest sets, oldest first, where the store
    # was asked for them: up to KEPT_RESETS, this countdown's own last.
    resets: tuple[tuple[int, int], ...] = ()

    def elapsed(self, now_ms: int) -> int:
        # Clamped: another task's clock may run slightly ahead of ours.
        return max(0, now_ms - self.start_ms) // 1000

    def remaining(self, now_ms: int) -> int:
        # <= 0 exactly when now >= start + seconds (TimerCheck.io's rule).
        return self.seconds - self.elapsed(now_ms)

    def forgotten(self, now_ms: int) -> bool:
        """Past its retention: it reads as never set (the store's TTL may lag)."""
        return now_ms >= self.expires_at * 1000

    def countdown(self, now_ms: int) -> dict[str, Any]:
        elapsed = self.elapsed(now_ms)
        return {
            "start_time": self.start_ms // 1000,
            "start_seconds": self.seconds,
            "seconds_elapsed": elapsed,
            "seconds_remaining": self.seconds - elapsed,
        }

    def miss_fields(self) -> dict[str, Any]:
        if self.last_miss is None:
            return {"misses": self.misses}
        return {"misses": self.misses, "last_miss": self.last_miss._asdict()}


def remembered(timer: Timer | None, now_ms: int) -> Timer | None:
    return None if timer is None or timer.forgotten(now_ms) else timer


class Reset(NamedTuple):
    """What a reset means, given the timer it replaced in the store."""

    replaced: Timer | None  # the countdown it ended, unless never set or forgotten
    timer: Timer  # the new countdown, carrying the misses on
    miss: Miss | None  # the expiry it ended, which the store must count
    forget_misses: bool  # the replaced timer was forgotten but kept its misses


def reset(stored: Timer | None, countdown: Timer, now_ms: int) -> Reset:
    """A reset after an expiry ends a miss; a forgotten timer starts again at
    no misses; a reset in time carries the misses on, and so does a failure
    report (a reset to 0 seconds), which ends no outage."""
    replaced = remembered(stored, now_ms)
    if replaced is None:
        return Reset(None, countdown, None, bool(stored and stored.misses))
    if replaced.remaining(now_ms) > 0 or countdown.seconds == 0:
        # A failure report (seconds 0) on an expired timer is the same outage.
        carried = countdown._replace(
            misses=replaced.misses, last_miss=replaced.last_miss
        )
        return Reset(replaced, carried, None, False)
    expired_ms = replaced.start_ms + replaced.seconds * 1000
    miss = Miss(expired_ms // 1000, now_ms // 1000, (now_ms - expired_ms) // 1000)
    missed = countdown._replace(misses=replaced.misses + 1, last_miss=miss)
    return Reset(replaced, missed, miss, False)


HISTORY = 20  # entries a history shows
KEPT_RESETS = HISTORY + 1  # the oldest shown needs the deadline before it
# A reset is kept as one number, start_ms * PACKED + seconds: 22 digits, or
# 12 bytes in a DynamoDB item, where a map of the fields would take 49.
PACKED = 1_000_000_000  # above MAX_SECONDS
PACKED_DIGITS = 22  # until start_ms takes 14 digits, in the year 2286


def pack(start_ms: int, seconds: int) -> str:
    return f"{start_ms * PACKED + seconds:0{PACKED_DIGITS}d}"


def unpack(number: str) -> tuple[int, int]:
    packed = int(number) if number.isdigit() else int(Decimal(number))
    start_ms, seconds = divmod(packed, PACKED)
    return start_ms, seconds


class Entry(NamedTuple):
    """One set of a timer's history, against the countdown it replaced."""

    reset_ms: int
    seconds: int
    overdue_seconds: int | None  # None: there was no deadline before it
    gap_ms: int | None  # since the set before it
    period: int | None  # the seconds that set gave
    late: bool  # at or after that set's deadline

    def fields(self) -> dict[str, Any]:
        return {
            "reset_at": self.reset_ms // 1000,
            "seconds": self.seconds,
            "overdue_seconds": self.overdue_seconds,
        }


def history(timer: Timer, retention: int) -> list[Entry]:
    """The newest HISTORY sets, newest first. A set with no deadline before
    it (the first, or the first after the timer was forgotten: `retention`
    seconds past its expiry) starts the history: nothing older is shown."""
    entries: list[Entry] = []
    for i in range(len(timer.resets) - 1, -1, -1):
        if len(entries) == HISTORY:
            break
        reset_ms, seconds = timer.resets[i]
        if i == 0:
            entries.append(Entry(reset_ms, seconds, None, None, None, False))
            break
        before_ms, before = timer.resets[i - 1]
        deadline_ms = before_ms + before * 1000
        if reset_ms >= (before_ms // 1000 + before + retention) * 1000:
            entries.append(Entry(reset_ms, seconds, None, None, None, False))
            break
        late = reset_ms >= deadline_ms
        overdue = (reset_ms - deadline_ms) // 1000 if late else 0
        gap_ms = reset_ms - before_ms
        entries.append(Entry(reset_ms, seconds, overdue, gap_ms, before, late))
    return entries


def timer_state(timer: Timer | None, now_ms: int, since: int | None) -> str:
    """What a poller is told: `since` is the count of misses it has seen."""
    if timer is None:
        return "never-set"
    if timer.remaining(now_ms) <= 0:
        return "expired"
    if since is not None and timer.misses > since:
        return "missed"
    return "running"


class StoreUnavailable(Exception):
    """The store could not answer: down, throttled, locked, misconfigured."""


class Store(Protocol):
    def get(self, name: str, resets: bool = False) -> Timer | None:
        """The timer, with its latest resets if asked (a check does not
        need them)."""

    def put(self, timer: Timer) -> Timer | None:
        """Store the timer's countdown, keeping its misses, add it to its
        latest resets (at least KEPT_RESETS of them kept), and return the timer
        it replaced."""

    def delete(self, name: str) -> Timer | None:
        """Remove the timer and return it."""

    def add_miss(self, name: str, miss: Miss) -> int:
        """Count one more miss, atomically; return the count."""

    def clear_misses(self, name: str) -> None:
        """Forget the misses of a timer that was itself forgotten."""

    def secret(self) -> bytes:
        """The store's own random secret, made by whichever task asks first."""


# -- secrets --

TOKEN = re.compile(r"[A-Za-z0-9_-]{22,400}")
SECRET_BYTES = 32  # a store makes its secret this long
DAMAGED = (
    "the store's secret is damaged ({} bytes where {} were made): sets and"
    " read-only URLs answer 503 until it is deleted, and a new one is made"
    ' (docs/operating.md, "The secret")'
)


def derive(secret: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, None, b"timercheck " + purpose).derive(secret)


class TokenKeys:
    """What the store's secret gives every task alike: a timer's read-only
    token (its name under AES-SIV, deterministic and authenticated, so the
    same name always has the same token and no token can be made or read
    without the secret) and the keyed hash that names a timer in logs."""

    def __init__(self, secret: bytes) -> None:
        self._siv = AESSIV(derive(secret, b"read-only token", 64))
        self._log_key = derive(secret, b"log name hash", 32)

    def token(self, name: str) -> str:
        # Padded to 32 bytes (a name has no NUL), so a token shows at most
        # which of four lengths its name falls in, not the length.
        data = name.encode()
        sealed = self._siv.encrypt(data + b"\0" * (-len(data) % 32), None)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def name(self, token: str) -> str | None:
        """The name a token was made from; None for any other string."""
        if not TOKEN.fullmatch(token):
            return None
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            # base64 ignores the spare bits of a last character: one spelling
            # only, so that nothing keyed on the URL can be sidestepped.
            if base64.urlsafe_b64encode(sealed).rstrip(b"=").decode() != token:
                return None
            return self._siv.decrypt(sealed, None).rstrip(b"\0").decode()
        except (InvalidTag, binascii.Error, ValueError):
            return None

    def name_hash(self, name: str) -> str:
        return hashlib.blake2b(
            name.encode(), key=self._log_key, digest_size=12
        ).hexdigest()


# -- views --


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    state: str | None = None  # X-Timer-Status: running, expired, missed, never-set
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/plain"  # of a str body; a dict is JSON


class HTTPError(Exception):
    """An answer with an errorMessage, which starts with its status."""

    def __init__(
        self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.headers = status, list(headers)

    def reply(self) -> Reply:
        body = {"errorMessage": str(self)}
        return Reply(self.status, body, headers=list(self.headers))


STATE_STATUS = {"running": 200, "expired": 504, "missed": 504, "never-set": 404}
JSON = json.JSONEncoder(separators=(",", ":"))
JSON_DECODER = json.JSONDecoder()


def human_duration(seconds: int) -> str:
    """43m, 2h 5m, 3d: a duration for people."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def check_fields(label: str, timer: Timer, now_ms: int, status: str) -> dict[str, Any]:
    """What a check, and a delete, say of a timer (its name, or the label of
    a read-only URL)."""
    return {
        "timer": label,
        "status": status,
        "now": now_ms // 1000,
        **timer.countdown(now_ms),
        **timer.miss_fields(),
    }


def json_view(
    name: str, timer: Timer | None, now_ms: int, state: str, since: int | None
) -> Reply:
    if timer is None:
        body = {"timer": name, "errorMessage": "404: timer has never been set"}
    elif state == "running":
        body = check_fields(name, timer, now_ms, "ok")
        body["message"] = "Timer still running"
    elif state == "missed":
        body = check_fields(name, timer, now_ms, "missed")
        body["message"] = "Timer expired and was reset since your last check"
        body["errorMessage"] = "timer missed an expiry"
    else:
        body = check_fields(name, timer, now_ms, "expired")
        body["message"] = "Timer timed out"
        body["errorMessage"] = "timer timed out"
    return Reply(STATE_STATUS[state], body, state)


# Without ?since=, the badge and the text view have no poller's count of
# misses: they show a miss for a day after it ended, then forget it, so that a
# README badge does not cry wolf for ever. X-Timer-Status, like the JSON,
# reports a miss only to a poller that passes since.
MISS_SHOWN = 86400  # seconds


def shown_state(timer: Timer | None, now_ms: int, state: str, since: int | None) -> str:
    """The state the badge and the text view show."""
    if timer is None or state != "running" or since is not None:
        return state
    miss = timer.last_miss
    recent = miss is not None and now_ms < (miss.reset_at + MISS_SHOWN) * 1000
    return "missed" if recent else state


def text_view(
    name: str, timer: Timer | None, now_ms: int, state: str, since: int | None
) -> Reply:
    shown = shown_state(timer, now_ms, state, since)
    if timer is None:
        line = "never-set"
    elif shown == "expired":
        line = f"expired {-timer.remaining(now_ms)}"
    elif shown == "missed":  # no word a keyword monitor would take for health
        line = f"missed {timer.misses} remaining {timer.remaining(now_ms)}"
    else:
        line = f"running {timer.remaining(now_ms)}"
    return Reply(STATE_STATUS[state], line + "\n", state)


# Verdana 11px, as shields.io draws badges; other characters count as 7.
CHAR_WIDTHS = {c: 3 for c in "ijl.,:;'!|"} | {c: 4 for c in "frt -()[]·"}
CHAR_WIDTHS |= {c: 10 for c in "mwMW%"} | {"×": 8}


def text_width(text: str) -> int:
    return sum(CHAR_WIDTHS.get(c, 7) for c in text)


# An SVG opened on its own is a document: no scripts, nothing fetched.
# (Every answer says nosniff: `respond`.)
NO_SCRIPT = "default-src 'none'; style-src 'unsafe-inline'"
SVG_HEADERS = (("Content-Security-Policy", NO_SCRIPT),)


def svg_badge(label: str, message: str, color: str) -> str:
    left, right = text_width(label) + 12, text_width(message) + 12
    width = left + right
    label, message = html.escape(label), html.escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20"'
        f' role="img" aria-label="{label}: {message}"><title>{label}: {message}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb"'
        ' stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/>'
        f'</clipPath><g clip-path="url(#r)"><rect width="{left}" height="20"'
        f' fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{color}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g><g fill="#fff"'
        ' text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif"'
        ' font-size="11">'
        f'<text x="{left / 2}" y="15" fill="#010101" fill-opacity=".3">{label}</text>'
        f'<text x="{left / 2}" y="14">{label}</text>'
        f'<text x="{left + right / 2}" y="15" fill="#010101" fill-opacity=".3">'
        f"{message}</text>"
        f'<text x="{left + right / 2}" y="14">{message}</text></g></svg>'
    )


SHIELDS_COLORS = {  # shields.io's colour names
    "running": "brightgreen",
    "expired": "red",
    "missed": "yellow",
    "never-set": "lightgrey",
    "unavailable": "lightgrey",
}
SVG_COLORS = {  # the same colours, as shields.io draws them
    "running": "#4c1",
    "expired": "#e05d44",
    "missed": "#dfb317",
    "never-set": "#9f9f9f",
    "unavailable": "#9f9f9f",
}


def badge(
    timer: Timer | None, now_ms: int, state: str, since: int | None
) -> tuple[str, str]:
    """The badge's own state, and its message."""
    if timer is None:
        return state, "never set"
    remaining = timer.remaining(now_ms)
    if state == "expired":
        return state, f"expired · {human_duration(-remaining)} ago"
    if shown_state(timer, now_ms, state, since) == "missed":
        return "missed", f"missed {timer.misses - (since or 0)}× · running"
    return state, f"running · {human_duration(remaining)} left"


def shields_reply(name: str, message: str, color: str, state: str | None) -> Reply:
    """Only the keys shields.io's endpoint schema knows: no request_id."""
    body = {"schemaVersion": 1, "label": name, "message": message, "color": color}
    return Reply(200, JSON.encode(body), state, [], "application/json")


def shields_view(
    name: str, timer: Timer | None, now_ms: int, state: str, since: int | None
) -> Reply:
    shown, message = badge(timer, now_ms, state, since)
    return shields_reply(name, message, SHIELDS_COLORS[shown], state)


def svg_view(
    name: str, timer: Timer | None, now_ms: int, state: str, since: int | None
) -> Reply:
    shown, message = badge(timer, now_ms, state, since)
    svg = svg_badge(name, message, SVG_COLORS[shown])
    return Reply(200, svg, state, list(SVG_HEADERS), "image/svg+xml")


def history_view(
    name: str,
    timer: Timer | None,
    now_ms: int,
    state: str,
    since: int | None,
    entries: list[Entry],
) -> Reply:
    """The JSON check, and the timer's history."""
    reply = json_view(name, timer, now_ms, state, since)
    reply.body["history"] = [entry.fields() for entry in entries]  # type: ignore[index]
    return reply


# -- views: the page for people --

PAGE_HEADERS = (
    # no script, nothing fetched, and never inside another site's frame
    ("Content-Security-Policy", f"{NO_SCRIPT}; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),  # the read-only URL is a secret
)
PAGE_REFRESH = 30  # seconds
STATE_WORDS = {
    "running": "Running",
    "expired": "Expired",
    "missed": "Missed",
    "never-set": "Never set",
    "unavailable": "Unavailable",
}
PAGE_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}"
    "main{max-width:44rem;margin:0 auto;padding:1.5rem}"
    "h1{font-size:1.5rem;margin:0 0 .5rem;overflow-wrap:anywhere}"
    "h2{font-size:1.1rem;margin:1.5rem 0 .5rem}"
    ".state{display:inline-block;padding:.2rem .8rem;border-radius:1rem;"
    "color:#fff;font-weight:600}"
    ".running{background:#3a9a0e}.expired{background:#c8442e}"
    ".missed{background:#a88200}.never-set,.unavailable{background:#6e6e6e}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}"
    "dt{color:#555}dd{margin:0}"
    "table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:.2rem .5rem;border-bottom:1px solid #ddd}"
    "td.late{color:#c8442e;font-weight:600}"
    "svg{width:100%;height:auto;background:#fff;border:1px solid #ddd}"
    "figure{margin:0}figcaption,footer{color:#555;font-size:.9rem}a{white-space:nowrap}"
)
CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 640, 200, 24


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def lateness(entry: Entry) -> str:
    overdue = entry.overdue_seconds or 0
    return f"late by {human_duration(overdue)}" if overdue else "late by under 1s"


def chart(entries: list[Entry]) -> str:
    """An SVG of the gap between consecutive resets (bars, red when late)
    against the period each gap had (a dark line), oldest on the left."""
    gaps = [e for e in reversed(entries) if e.gap_ms is not None]
    late = sum(e.late for e in gaps)
    if gaps:
        longest = max(gaps, key=lambda e: e.gap_ms or 0)
        summary = (
            f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''} between resets,"
            f" {late} of them late. The longest"
            f" was {human_duration((longest.gap_ms or 0) // 1000)} against a period of"
            f" {human_duration(longest.period or 0)}."
        )
    else:
        summary = "No gaps yet: the chart needs two resets."
    top = max([1.0] + [max(e.gap_ms or 0, (e.period or 0) * 1000) for e in gaps])
    top *= 1.15
    inner = CHART_HEIGHT - 2 * CHART_PAD
    slot = (CHART_WIDTH - 2 * CHART_PAD) / max(len(gaps), 1)
    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg"'
        f' viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img"'
        ' aria-labelledby="chart-title chart-desc">'
        '<title id="chart-title">Time between resets against the period</title>'
        f'<desc id="chart-desc">{html.escape(summary)}</desc>'
        f'<line x1="{CHART_PAD}" y1="{CHART_HEIGHT - CHART_PAD}"'
        f' x2="{CHART_WIDTH - CHART_PAD}" y2="{CHART_HEIGHT - CHART_PAD}"'
        ' stroke="#999"/>'
        f'<text x="{CHART_PAD}" y="16" font-size="12" fill="#555">'
        f"{human_duration(round(top / 1000))}</text>"
    ]
    for i, entry in enumerate(gaps):
        gap, period = entry.gap_ms or 0, (entry.period or 0) * 1000
        height = gap / top * inner
        x = CHART_PAD + i * slot
        period_y = CHART_HEIGHT - CHART_PAD - period / top * inner
        said = (
            f"{utc(entry.reset_ms // 1000)}: {human_duration(gap // 1000)} after"
            f" the reset before, against a period of"
            f" {human_duration(entry.period or 0)}"
            + (f", {lateness(entry)}" if entry.late else "")
        )
        colour = SVG_COLORS["expired" if entry.late else "running"]
        bar_y = CHART_HEIGHT - CHART_PAD - height
        parts.append(
            f'<g class="{"late" if entry.late else "on-time"}"><title>{said}</title>'
            f'<rect x="{x + slot * 0.2:.1f}" y="{bar_y:.1f}"'
            f' width="{slot * 0.6:.1f}" height="{height:.1f}" fill="{colour}"/>'
            f'<line x1="{x + slot * 0.1:.1f}" x2="{x + slot * 0.9:.1f}"'
            f' y1="{period_y:.1f}" y2="{period_y:.1f}" stroke="#222"'
            ' stroke-width="2"/></g>'
        )
    parts.append("</svg>")
    return (
        f"<figure>{''.join(parts)}<figcaption>{html.escape(summary)} Bars: the"
        " time between two resets, red when the second came late. Lines: the"
        " period the first one set.</figcaption></figure>"
    )


def history_rows(entries: list[Entry]) -> str:
    rows = []
    for entry in entries:
        if entry.overdue_seconds is None:
            cell = "<td>first set</td>"
        elif entry.late:
            cell = f'<td class="late">{lateness(entry)}</td>'
        else:
            cell = "<td>on time</td>"
        rows.append(
            f"<tr><td><time>{utc(entry.reset_ms // 1000)}</time></td>"
            f"<td>{human_duration(entry.seconds)}</td>{cell}</tr>"
        )
    return "".join(rows)


def page(
    label: str,
    timer: Timer | None,
    now_ms: int,
    state: str,
    entries: list[Entry],
) -> str:
    """The page a person reads: no script, nothing fetched, refreshed."""
    words = STATE_WORDS[state]
    if state == "unavailable":
        told = "The timer store is not answering. This page tries again shortly."
    elif timer is None:
        told = "This timer has never been set, or it was deleted or forgotten."
    elif state == "running":
        left = timer.remaining(now_ms)
        told = f"{human_duration(left)} left ({left} s)."
    elif state == "missed":
        told = (
            "It expired and was reset since your last check;"
            f" {human_duration(timer.remaining(now_ms))} left."
        )
    else:
        since_expiry = -timer.remaining(now_ms)
        told = f"It expired {human_duration(since_expiry)} ago ({since_expiry} s)."
    facts = []
    if timer is not None:
        deadline = (timer.start_ms + timer.seconds * 1000) // 1000
        facts += [
            ("Deadline", f"<time>{utc(deadline)}</time>"),
            ("Period", f"{human_duration(timer.seconds)} ({timer.seconds} s)"),
            ("Last reset", f"<time>{utc(timer.start_ms // 1000)}</time>"),
            ("Misses", str(timer.misses)),
        ]
        if miss := timer.last_miss:
            facts.append(
                (
                    "Last miss",
                    f"expired <time>{utc(miss.expired_at)}</time>, reset"
                    f" <time>{utc(miss.reset_at)}</time>,"
                    f" {human_duration(miss.overdue_seconds)} late",
                )
            )
    label = html.escape(label)
    body = [
        f"<h1>{label}</h1>",
        f'<p><span id="state" class="state {state}">{words}</span> {told}</p>',
    ]
    if facts:
        body.append(
            "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
        )
    if entries:
        body += [
            "<h2>Resets</h2>",
            chart(entries),
            "<table><thead><tr><th>Reset (UTC)</th><th>Period</th><th>Overdue"
            f"</th></tr></thead><tbody>{history_rows(entries)}</tbody></table>",
        ]
    body.append(
        f"<footer><p>Checked <time>{utc(now_ms // 1000)}</time>; this page"
        f" refreshes every {PAGE_REFRESH} s. The same as JSON:"
        ' <a href="?format=history">?format=history</a>.</p></footer>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{PAGE_REFRESH}">'
        f"<title>{label}: {words}</title><style>{PAGE_STYLE}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>"
    )


def html_view(
    name: str,
    timer: Timer | None,
    now_ms: int,
    state: str,
    since: int | None,
    entries: list[Entry],
) -> Reply:
    text = page(name, timer, now_ms, state, entries)
    headers = list(PAGE_HEADERS)
    return Reply(STATE_STATUS[state], text, state, headers, "text/html; charset=utf-8")


View = Callable[[str, Timer | None, int, str, int | None], Reply]
VIEWS: dict[str, View] = {
    "json": json_view,
    "text": text_view,
    "shields": shields_view,
    "svg": svg_view,
}
HistoryView = Callable[[str, Timer | None, int, str, int | None, list[Entry]], Reply]
HISTORY_VIEWS: dict[str, HistoryView] = {"history": history_view, "html": html_view}


def unavailable_view(view: str, name: str, now_ms: int) -> Reply:
    """A badge still draws when the store is down (image proxies drop 5xx)."""
    if view == "svg":
        svg = svg_badge(name, "unavailable", SVG_COLORS["unavailable"])
        return Reply(200, svg, None, list(SVG_HEADERS), "image/svg+xml")
    if view == "shields":
        color = SHIELDS_COLORS["unavailable"]
        return shields_reply(name, "unavailable", color, None)
    if view == "html":
        text = page(name, None, now_ms, "unavailable", [])
        headers = [*PAGE_HEADERS, ("Retry-After", "5")]
        return Reply(503, text, None, headers, "text/html; charset=utf-8")
    return Reply(503, "unavailable\n", None, [("Retry-After", "5")])


# -- requests --

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
RESERVED_NAMES = frozenset({"robots.txt"})
SECONDS = re.compile(r"([0-9]{1,10})([smhdw]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SECONDS = 999_999_999
CONTROL = re.compile(r"[\x00-\x20\x7f]")
BAD_PATH = "the path must be /{timer} or /{timer}/{seconds}"
BAD_NAME = (
    "a timer name is 1 to 128 characters from A-Z a-z 0-9 . _ ~ -"
    " and starts with a letter or digit"
)
DIGITS = re.compile(r"[0-9]{1,10}")
PERCENT = (
    "the path is never percent-encoded: a timer name, its seconds and a"
    " read-only token are written only with A-Z a-z 0-9 . _ ~ -"
)


class Request(NamedTuple):
    method: str
    now_ms: int
    environ: dict[str, Any]
    query: dict[str, str]


def valid_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise HTTPError(400, BAD_NAME)
    if name in RESERVED_NAMES:
        raise HTTPError(400, "that timer name is reserved")
    return name


def parse_seconds(text: str, most: int = MAX_SECONDS) -> int:
    match = SECONDS.fullmatch(text)
    if not match:
        raise HTTPError(
            400,
            "seconds must be 1 to 10 digits, optionally followed by one"
            " unit s, m, h, d or w (90, 90s, 70m, 25h, 7d, 2w)",
        )
    seconds = int(match[1]) * UNITS[match[2]]
    if seconds > most:
        raise HTTPError(
            400,
            f"seconds must be at most {most} in all"
            f" ({human_duration(most)}, TIMERCHECK_MAX_SECONDS)",
        )
    return seconds


# The Unicode categories of characters that do not show as themselves.
MISLEADING = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def parse_label(req: Request) -> str:
    """A read-only URL's badge label, which the name must not be. Nothing in
    it may change how the text around it reads: no control characters, no
    bidi controls or zero-width characters (format characters), no line or
    paragraph separators, nothing unassigned."""
    label = req.query.get("label", "timer")
    if not 1 <= len(label) <= 64 or any(
        unicodedata.category(c) in MISLEADING for c in label
    ):
        raise HTTPError(
            400,
            "label must be 1 to 64 printable characters: no control, bidi,"
            " zero-width or line separator characters",
        )
    return label


def prefers_html(environ: dict[str, Any]) -> bool:
    """A browser's Accept lists text/html first; curl's `*/*` and monitors'
    `application/json, ...` do not."""
    first = environ.get("HTTP_ACCEPT", "").partition(",")[0].partition(";")[0]
    return first.strip().lower() == "text/html"


def parse_query(req: Request) -> tuple[str, int | None]:
    """The view asked for (?format=) and the misses the poller has seen (?since=)."""
    view = req.query.get("format", "json")
    if view not in VIEWS and view not in HISTORY_VIEWS:
        raise HTTPError(400, "format must be json, history, html, svg, shields or text")
    since = req.query.get("since")
    if since is None:
        return view, None
    if not DIGITS.fullmatch(since):
        raise HTTPError(400, "since must be a count of misses, 0 or more")
    return view, int(since)


# -- requests: link unfurlers and prefetchers, whose GET of a set URL sets nothing --

UNFURLERS = re.compile(
    r"\b("
    + "|".join(
        map(
            re.escape,
            [
                "Slackbot", "Slack-ImgProxy", "Twitterbot", "facebookexternalhit",
                "Facebot", "Discordbot", "TelegramBot", "WhatsApp", "LinkedInBot",
                "SkypeUriPreview", "MicrosoftPreview", "Googlebot",
                "Google-PageRenderer", "AdsBot-Google", "bingbot", "BingPreview",
                "Applebot", "DuckDuckBot", "YandexBot", "Baiduspider", "redditbot",
                "Pinterestbot", "Embedly", "Iframely", "vkShare", "Mastodon",
                "Snapchat", "Viber", "KakaoTalk-Scrap", "Mattermost-Bot",
                "RocketChat", "Zulip", "Bytespider", "GPTBot", "ChatGPT-User",
                "ClaudeBot", "PerplexityBot", "AhrefsBot", "SemrushBot", "MJ12bot",
                "DotBot", "PetalBot", "SeznamBot", "ia_archiver",
            ],
        )
    )
    + r")",
    re.IGNORECASE,
)  # fmt: skip


AGENT_PREFIX = 512  # the bots put their names early; a huge User-Agent costs no more
PURPOSE_HEADERS = ("HTTP_SEC_PURPOSE", "HTTP_PURPOSE", "HTTP_X_PURPOSE", "HTTP_X_MOZ")


def ignored_because(environ: dict[str, Any]) -> str | None:
    for header in PURPOSE_HEADERS:
        purpose = environ.get(header, "").lower()
        if "prefetch" in purpose or "preview" in purpose:
            return "prefetch"
    agent = environ.get("HTTP_USER_AGENT", "")[:AGENT_PREFIX]
    if match := UNFURLERS.search(agent):
        return f"link preview ({match[1]})"
    return None


# -- requests: how many sets one client may make --


def network(client: str) -> str:
    if ":" not in client:
        return client
    try:
        return str(ipaddress.IPv6Network(f"{client}/64", strict=False))
    except ValueError:
        return client


class SetBudget:
    """The sets each client may still make: `per_minute` at once, given back
    at a sixtieth of that a second (a bucket of tokens a client). A client
    is the address its access line names; an IPv6 one counts by its /64,
    which a host is commonly given whole."""

    MOST_CLIENTS = 100_000  # counted at once; beyond, the full ones are forgotten

    def __init__(self, per_minute: int) -> None:
        self.size, self.rate = float(per_minute), per_minute / 60
        self.lock = threading.Lock()
        self.left: dict[str, tuple[float, float]] = {}  # client: (sets left, when)

    def take(self, client: str, now: float) -> float:
        """0 when the client may set now, which is counted; otherwise the
        seconds until it may."""
        key = network(client)
        with self.lock:
            left, when = self.left.get(key, (self.size, now))
            left = min(self.size, left + max(0.0, now - when) * self.rate)
            if left < 1:
                return round((1 - left) / self.rate, 3)  # to the millisecond
            if key not in self.left and len(self.left) >= self.MOST_CLIENTS:
                self.forget_full(now)
            self.left[key] = (left - 1, now)
            return 0.0

    def forget_full(self, now: float) -> None:
        """A client whose bucket has filled again is as if never counted; if
        too many are still counting, all are forgotten (the WAF's rule is
        the guard against that many addresses)."""
        for key, (left, when) in list(self.left.items()):
            if left + (now - when) * self.rate >= self.size:
                del self.left[key]
        if len(self.left) >= self.MOST_CLIENTS:
            self.left.clear()


# -- handlers --


def health(app: App, req: Request) -> Reply:
    return Reply(200, "OK")


def robots(app: App, req: Request) -> Reply:
    return Reply(200, "User-agent: *\nDisallow: /\n")


def check(
    app: App, req: Request, name: str, label: str, negotiate: bool = True
) -> Reply:
    """A check in the view the query asks for; without one, a page for a
    browser (unless `negotiate` is off) and JSON for everyone else."""
    view, since = parse_query(req)
    negotiated = negotiate and "format" not in req.query
    if negotiated and prefers_html(req.environ):
        view = "html"
    try:
        timer = remembered(app.store.get(name, view in HISTORY_VIEWS), req.now_ms)
    except StoreUnavailable as e:
        if view in ("json", "history"):
            raise
        log.warning("store unavailable: %s", e)
        return unavailable_view(view, label, req.now_ms)
    state = timer_state(timer, req.now_ms, since)
    if view in HISTORY_VIEWS:
        entries = history(timer, app.retention) if timer else []
        reply = HISTORY_VIEWS[view](label, timer, req.now_ms, state, since, entries)
    else:
        reply = VIEWS[view](label, timer, req.now_ms, state, since)
    if negotiated:
        reply.headers.append(("Vary", "Accept"))
    return reply


def check_timer(app: App, req: Request, name: str) -> Reply:
    return check(app, req, valid_name(name), name)


def read_only_check(app: App, req: Request, token: str) -> Reply:
    """A check through a read-only URL: any view, never a write, and never
    the name, which the token stands for."""
    label = parse_label(req)
    name = app.token_keys().name(token)
    if name is None:
        raise HTTPError(404, "no timer has that read-only URL")
    return check(app, req, name, label)


def peek_timer(app: App, req: Request, name: str, seconds: str) -> Reply:
    """HEAD of a set URL: link checkers send it, so it must set nothing."""
    parse_seconds(seconds, app.max_seconds)
    return check(app, req, valid_name(name), name, negotiate=False)


HOST_HEADER = re.compile(r"[A-Za-z0-9.:\[\]-]{1,255}")


def request_origin(environ: dict[str, Any]) -> str:
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "localhost")
    if not HOST_HEADER.fullmatch(host):
        host = environ.get("SERVER_NAME", "localhost")
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}"


def set_timer(app: App, req: Request, name: str, seconds_text: str) -> Reply:
    name, now = valid_name(name), req.now_ms
    seconds = parse_seconds(seconds_text, app.max_seconds)
    parse_query(req)  # a set answers in JSON, but a bad query is a 400 here too
    if req.method == "GET" and (reason := ignored_because(req.environ)):
        reply = check(app, req, name, name, negotiate=False)
        reply.headers.append(("X-Timer-Ignored", reason))
        return reply
    if wait := app.set_budget.take(req.environ.get("REMOTE_ADDR", "-"), now / 1000):
        raise HTTPError(
            429,
            f"too many sets from one client: {app.set_budget.size:.0f} a minute",
            [("Retry-After", str(math.ceil(wait)))],
        )
    token = app.token_keys().token(name)  # before the write: a 503 here sets nothing
    countdown = Timer(name, now, seconds, now // 1000 + seconds + app.retention)
    outcome = reset(app.store.put(countdown), countdown, now)
    timer = outcome.timer
    if outcome.miss:
        timer = timer._replace(misses=app.store.add_miss(name, outcome.miss))
    elif outcome.forget_misses:
        app.store.clear_misses(name)
    body = {
        "timer": name,
        "status": "ok",
        "now": now // 1000,
        "message": "Timer countdown updated",
        "new_start_time": now // 1000,
        "new_start_seconds": seconds,
    }
    if outcome.replaced:
        body.update(outcome.replaced.countdown(now))
    body.update(timer.miss_fields())
    body["ended_miss"] = outcome.miss is not None
    body["read_only_token"] = token
    body["read_only_url"] = f"{request_origin(req.environ)}/-/{token}"
    return Reply(200, body, timer_state(timer, now, None))


def delete_timer(app: App, req: Request, name: str) -> Reply:
    timer = remembered(app.store.delete(valid_name(name)), req.now_ms)
    state = timer_state(timer, req.now_ms, None)
    if timer is None:
        return json_view(name, None, req.now_ms, state, None)
    body = check_fields(name, timer, req.now_ms, "ok" if state == "running" else state)
    body["message"] = "Timer deleted"
    return Reply(200, body, state)


READ_ONLY = "this is a read-only URL: it answers GET and HEAD, and never sets"
ROUTES: list[tuple[re.Pattern[str], dict[str, Callable[..., Reply]]]] = [
    (re.compile(r"/"), {"GET": health, "HEAD": health}),
    (re.compile(r"/robots\.txt"), {"GET": robots, "HEAD": robots}),
    (re.compile(r"/-/([^/]*)"), {"GET": read_only_check, "HEAD": read_only_check}),
    (
        re.compile(r"/([^/]*)"),
        {"GET": check_timer, "HEAD": check_timer, "DELETE": delete_timer},
    ),
    (
        re.compile(r"/([^/]*)/([^/]*)"),
        {"GET": set_timer, "HEAD": peek_timer, "POST": set_timer, "PUT": set_timer},
    ),
]


def route(
    method: str, path: str, raw_target: str
) -> tuple[Callable[..., Reply], tuple[str, ...]]:
    """The handler for a request and the parts of the path it takes."""
    # waitress decodes %2F before the app sees the path, drops tabs from it,
    # and reads //x/5 as host x, path /5: a name must not turn into two path
    # segments or into another name, nor have a second spelling.
    raw_path = raw_target.partition("?")[0]
    if raw_path.startswith("//"):
        raise HTTPError(400, BAD_PATH)
    if "%" in raw_path:
        raise HTTPError(400, PERCENT)
    if CONTROL.search(raw_path):
        raise HTTPError(400, BAD_NAME)
    for pattern, methods in ROUTES:
        if match := pattern.fullmatch(path):
            if method not in methods:
                allow = ", ".join(methods)
                message = READ_ONLY if path.startswith("/-/") else "method not allowed"
                raise HTTPError(405, message, [("Allow", allow)])
            return methods[method], match.groups()
    if path.startswith("/-/"):  # a set, or anything else, below a read-only URL
        raise HTTPError(405, READ_ONLY, [("Allow", "GET, HEAD")])
    raise HTTPError(400, BAD_PATH)


# -- app --

STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
MAX_QUERY = 1024  # characters
MAX_FIELDS = 16  # query parameters
MAX_HEADERS = 64  # distinct header names
STORE_UNAVAILABLE = HTTPError(503, "timer store unavailable", [("Retry-After", "5")])
WAITED = "timercheck.waited"  # seconds the request waited for a thread
UNSHED = frozenset({"health", "robots"})  # they never touch the store


def overloaded() -> HTTPError:
    # Retries spread over 1 to 4 s, so that a storm does not come back whole.
    wait = str(random.randint(1, 4))
    return HTTPError(503, "overloaded: try again shortly", [("Retry-After", wait)])


UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str, limit: int) -> str:
    """Text for a log line: control characters escaped, then cut to a limit,
    so nobody can forge a line, hide one, or fill the log."""
    text = UNSAFE.sub(lambda m: f"\\x{ord(m[0]):02x}", text)
    return text if len(text) <= limit else text[:limit] + "..."


def encode(reply: Reply, request_id: str) -> tuple[str, bytes]:
    """The content type and the body's bytes; a JSON body gets the request id."""
    if isinstance(reply.body, str):
        return reply.content_type, reply.body.encode()
    reply.body["request_id"] = request_id
    return "application/json", JSON.encode(reply.body).encode()


def respond(
    start_response: Callable[..., Any],
    reply: Reply,
    content_type: str,
    data: bytes,
    request_id: str,
) -> None:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(data))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Request-Id", request_id),
        *reply.headers,
    ]
    if reply.state:
        headers.append(("X-Timer-Status", reply.state))
    start_response(STATUS_LINES[reply.status], headers)


def access_line(
    environ: dict[str, Any],
    request_id: str,
    handler: str,
    name_hash: str,
    reply: Reply,
    started: float,
) -> str:
    method = printable(environ["REQUEST_METHOD"], 16)
    client = printable(environ.get("REMOTE_ADDR", "-"), 64)
    return (
        f"{request_id} {method} {handler} {name_hash} {reply.status}"
        f" {(time.perf_counter() - started) * 1000:.1f}ms {client}"
    )


def check_limits(environ: dict[str, Any]) -> None:
    """waitress caps the head at 16 KB; within it, the query and the number
    of headers are capped too."""
    if len(environ.get("QUERY_STRING", "")) > MAX_QUERY:
        raise HTTPError(414, "the query string is too long")
    if len(environ) > MAX_HEADERS:
        headers = sum(name.startswith("HTTP_") for name in environ)
        if headers > MAX_HEADERS:
            raise HTTPError(431, "too many header fields")


PROXY_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto"})


def forwarded(environ: dict[str, Any], trusted: str | None, count: int) -> None:
    """What a trusted proxy says of the client (X-Forwarded-For, -Proto), read
    as waitress reads it, into REMOTE_ADDR and wsgi.url_scheme; every other
    proxy header, and any from anyone else, dropped. Here and not in waitress,
    whose reading raises on some headers (IndexError on `:.`): a 400, not a
    500, and a client that is not an IP address (a zone suffix included) is
    `-`."""
    untrusted = waitress.proxy_headers.PROXY_HEADERS
    if trusted and (trusted == "*" or environ.get("REMOTE_ADDR") == trusted):
        try:
            untrusted = waitress.proxy_headers.parse_proxy_headers(
                environ, trusted_proxy_count=count, trusted_proxy_headers=PROXY_HEADERS
            )
        except Exception:
            raise HTTPError(400, "a proxy header is malformed") from None
        try:
            address = ipaddress.ip_address(environ.get("REMOTE_ADDR", ""))
            if getattr(address, "scope_id", None) is not None:
                raise ValueError("a zone: any text may follow the %")
        except ValueError:
            environ["REMOTE_ADDR"] = "-"
    waitress.proxy_headers.clear_untrusted_headers(environ, untrusted)


class App:
    """The WSGI application. The store and the clock are injected."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        retention_days: int = 30,
        access: Callable[[str], None] | None = None,
        max_wait: float = 2.0,
        trusted_proxy: str | None = None,
        trusted_proxy_count: int = 1,
        max_seconds: int = DEFAULTS["max_seconds"],
        sets_per_minute: int = DEFAULTS["sets_per_minute"],
    ) -> None:
        self.store, self.clock = store, clock
        self.retention = retention_days * 86400
        self.max_seconds = max_seconds
        self.set_budget = SetBudget(sets_per_minute)
        self.max_wait = max_wait
        self.trusted_proxy, self.trusted_proxy_count = (
            trusted_proxy,
            trusted_proxy_count,
        )
        self.access = access or (lambda line: access_log.info("%s", line))
        self._token_keys: TokenKeys | None = None
        self._secret = b""

    def token_keys(self) -> TokenKeys:
        """From the store's secret, fetched once (StoreUnavailable until then),
        and again by `follow_secret`."""
        if self._token_keys is None:
            self.refresh_token_keys()
        return self._token_keys  # type: ignore[return-value]

    def refresh_token_keys(self) -> None:
        """Adopt the store's current secret: a new one when it was deleted
        (which revokes every read-only URL), made by whichever task asks
        first and taken by the others."""
        secret = self.store.secret()
        if len(secret) != SECRET_BYTES:  # never adopted: every task would differ
            raise StoreUnavailable(DAMAGED.format(len(secret), SECRET_BYTES))
        if secret != self._secret:
            if self._token_keys is not None:
                log.warning(
                    "the store's secret changed: read-only URLs made before"
                    " no longer answer"
                )
            self._token_keys, self._secret = TokenKeys(secret), secret

    def name_hash(self, name: str | None) -> str:
        """Logs name a timer by a keyed hash: whoever knows a name can reset
        it, and an unkeyed hash falls to a dictionary. Until the keys are
        loaded (at start, or by the first set) the hash is `?`."""
        if not name:
            return "-"
        return self._token_keys.name_hash(name) if self._token_keys else "?"

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        started = time.perf_counter()
        request_id = f"{random.getrandbits(64):016x}"  # a log's, no secret
        handler, name, reply = self.handle(environ, request_id)
        content_type, data = encode(reply, request_id)
        respond(start_response, reply, content_type, data, request_id)
        name_hash = self.name_hash(name)
        self.access(
            access_line(environ, request_id, handler, name_hash, reply, started)
        )
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [data]

    def handle(
        self, environ: dict[str, Any], request_id: str
    ) -> tuple[str, str | None, Reply]:
        """Route and answer: (the handler's name, the timer's name, the reply).
        Every error becomes its answer here."""
        handler_name, name = "-", None
        try:
            check_limits(environ)
            forwarded(environ, self.trusted_proxy, self.trusted_proxy_count)
            handler, args = route(
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO") or "/",
                environ.get("REQUEST_URI", ""),
            )
            handler_name, name = handler.__name__, args[0] if args else None
            # A request that waited this long for a thread is answered
            # without the store: its client will have given up, or soon
            # will, and the threads go to requests that can still be met.
            if environ.get(WAITED, 0) > self.max_wait and handler_name not in UNSHED:
                raise overloaded()
            return handler_name, name, handler(self, self.request(environ), *args)
        except HTTPError as e:
            reply = e.reply()
        except StoreUnavailable as e:
            log.warning("request %s: store unavailable: %s", request_id, e)
            reply = STORE_UNAVAILABLE.reply()
        except Exception:
            log.exception("request %s: unhandled error", request_id)
            reply = HTTPError(500, "server error").reply()
        return handler_name, name, reply

    def request(self, environ: dict[str, Any]) -> Request:
        query = environ.get("QUERY_STRING")
        try:
            fields = (
                parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS)
                if query
                else []
            )
        except ValueError:
            raise HTTPError(400, "too many query parameters") from None
        return Request(
            environ["REQUEST_METHOD"],
            round(self.clock() * 1000),  # read once per request
            environ,
            dict(fields),
        )


# -- stores --

MISSES = "misses, miss_expired_at, miss_reset_at, miss_overdue"
GET_SQL = f"SELECT start_ms, seconds, expires_at, {MISSES} FROM timers WHERE timer = ?"
# The latest resets, packed, oldest first, as one string of fixed width: a
# set appends and cuts it with string functions (JSON's took 10% more CPU).
RESETS_TEXT = KEPT_RESETS * PACKED_DIGITS
GET_RESETS_SQL = f"""
    SELECT start_ms, seconds, expires_at, {MISSES}, resets FROM timers WHERE timer = ?
"""
# One statement, so one transaction: the update's right-hand sides read the
# row as it was, and RETURNING hands back the timer this put replaced.
PUT_SQL = f"""
    INSERT INTO timers (timer, start_ms, seconds, expires_at, resets)
    VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (timer) DO UPDATE SET
        old_start_ms = start_ms, old_seconds = seconds, old_expires_at = expires_at,
        start_ms = excluded.start_ms, seconds = excluded.seconds,
        expires_at = excluded.expires_at,
        resets = substr(ifnull(resets, '') || excluded.resets, -{RESETS_TEXT})
    RETURNING old_start_ms, old_seconds, old_expires_at, {MISSES}
"""
DELETE_SQL = f"""
    DELETE FROM timers WHERE timer = ?
    RETURNING start_ms, seconds, expires_at, {MISSES}
"""
ADD_MISS_SQL = """
    UPDATE timers SET misses = misses + 1, miss_expired_at = ?, miss_reset_at = ?,
        miss_overdue = ?
    WHERE timer = ? RETURNING misses
"""
# Forgotten timers, a batch at a time so that a set waits for one batch at most.
PURGE_BATCH = 500
PURGE_SQL = """
    DELETE FROM timers WHERE timer IN
        (SELECT timer FROM timers WHERE expires_at <= ? LIMIT ?)
"""
CLEAR_MISSES_SQL = """
    UPDATE timers SET misses = 0, miss_expired_at = NULL, miss_reset_at = NULL,
        miss_overdue = NULL
    WHERE timer = ?
"""


SECRETS_TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
)
GET_SECRET_SQL = "SELECT value FROM secrets WHERE name = 'timercheck'"
MAKE_SECRET_SQL = """
    INSERT INTO secrets (name, value) VALUES ('timercheck', ?)
    ON CONFLICT (name) DO UPDATE SET value = value RETURNING value
"""


def from_row(name: str, row: tuple[Any, ...] | None) -> Timer | None:
    if row is None or row[0] is None:
        return None
    miss = Miss(*row[4:7]) if row[4] is not None else None
    text = (row[7] or "") if len(row) > 7 else ""
    resets = tuple(
        unpack(text[i : i + PACKED_DIGITS]) for i in range(0, len(text), PACKED_DIGITS)
    )
    return Timer(name, row[0], row[1], row[2], row[3], miss, resets)


def file_of(path: str) -> str:
    """The file a SQLite path or `file:` URI names."""
    return unquote(urlsplit(path).path) if path.startswith("file:") else path


def why_not_opened(path: str) -> str:
    """What the file system says of a path SQLite could not open."""
    path = file_of(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return " (it is a directory)"
    if not os.path.isdir(folder):
        return f" (no such directory: {folder})"
    if not os.path.exists(path):
        if not os.access(folder, os.W_OK):
            return f" (the directory {folder} is not writable)"
        return " (no such file)"
    if not os.access(path, os.R_OK):
        return " (not readable)"
    if not os.access(folder, os.W_OK):
        return f" (SQLite keeps its -wal and -shm files in {folder}, not writable)"
    return ""


class SqliteStore:
    """Timers in one SQLite file: WAL, one connection per thread, one writer."""

    def __init__(self, path: str, timeout: float = 2.0) -> None:
        self.path, self.timeout = path, timeout
        self._local = threading.local()
        # Our own threads queue here instead of in SQLite's sleeping busy
        # handler; the busy timeout then only waits for other processes.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if not sqlite_in_memory(self.path) and "mode=ro" not in self.path:
            # Every name in it is a write capability, and it holds the secret:
            # made for the service's user only, whatever the umask. SQLite
            # gives the -wal and -shm files it makes the database's mode.
            try:
                os.close(
                    os.open(
                        file_of(self.path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
                    )
                )
            except OSError:
                pass  # there already, or SQLite says why it cannot be
        db = sqlite3.connect(
            self.path,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=self.path.startswith("file:"),
        )
        try:
            try:
                db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as e:
                if "readonly" not in str(e):
                    raise  # a read-only file reads in the journal mode it has
            # Under WAL, NORMAL survives a crash of the process (not of the OS).
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS timers (timer TEXT PRIMARY KEY,"
                " start_ms INTEGER NOT NULL, seconds INTEGER NOT NULL,"
                " expires_at INTEGER NOT NULL, misses INTEGER NOT NULL DEFAULT 0,"
                " miss_expired_at INTEGER, miss_reset_at INTEGER,"
                " miss_overdue INTEGER, old_start_ms INTEGER, old_seconds INTEGER,"
                " old_expires_at INTEGER, resets TEXT)"
            )
            columns = [row[1] for row in db.execute("PRAGMA table_info(timers)")]
            if "resets" not in columns:  # a file from before histories
                with contextlib.suppress(sqlite3.OperationalError):  # read-only
                    db.execute("ALTER TABLE timers ADD COLUMN resets TEXT")
            db.execute(
                "CREATE INDEX IF NOT EXISTS timers_expires_at ON timers (expires_at)"
            )
        except BaseException:
            db.close()
            raise
        return db

    def exposed(self) -> str | None:
        """A warning if the database file can be read by anyone but its
        owner (the owner's group included)."""
        path = file_of(self.path)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return None
        if not mode & 0o077:
            return None
        return (
            f"the SQLite database {os.path.abspath(path)} is open to others"
            f" (mode {mode & 0o777:04o}): every timer name in it can reset its"
            f" timer, and it holds the secret; fix: chmod 600 {os.path.abspath(path)}"
        )

    def open_now(self) -> str | None:
        """Open the database as the first request would, and try a write that
        is rolled back: ConfigError, naming the path and why, if it cannot be
        opened or made; a warning if sets will fail (it opens read-only)."""
        try:
            db = self._local.db = self._connect()
        except sqlite3.Error as e:
            raise ConfigError(
                f"cannot open the SQLite database {self.path}: {e}"
                f"{why_not_opened(self.path)}"
            ) from None
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("CREATE TABLE timercheck_write_probe (x)")
            finally:
                db.execute("ROLLBACK")
        except sqlite3.Error as e:
            return (
                f"the SQLite database {self.path} cannot be written ({e}):"
                " checks answer, every set, reset and delete will answer 503"
            )
        return None

    def _run(self, sql: str, args: tuple[Any, ...], write: bool) -> Any:
        if write and not self._write_lock.acquire(timeout=self.timeout):
            raise StoreUnavailable("sqlite: timed out waiting for the write lock")
        try:
            db = getattr(self._local, "db", None)
            if db is None:
                db = self._local.db = self._connect()
            cursor = db.execute(sql, args)
            return cursor.fetchone() if cursor.description else cursor.rowcount
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # our bug, not the store's trouble: a 500
        except sqlite3.Error as e:
            raise StoreUnavailable(f"sqlite: {e}") from e
        finally:
            if write:
                self._write_lock.release()

    def get(self, name: str, resets: bool = False) -> Timer | None:
        sql = GET_RESETS_SQL if resets else GET_SQL
        return from_row(name, self._run(sql, (name,), write=False))

    def put(self, timer: Timer) -> Timer | None:
        args = (*timer[:4], pack(timer.start_ms, timer.seconds))
        return from_row(timer.name, self._run(PUT_SQL, args, write=True))

    def delete(self, name: str) -> Timer | None:
        return from_row(name, self._run(DELETE_SQL, (name,), write=True))

    def add_miss(self, name: str, miss: Miss) -> int:
        row = self._run(ADD_MISS_SQL, (*miss, name), write=True)
        return row[0] if row else 0

    def clear_misses(self, name: str) -> None:
        self._run(CLEAR_MISSES_SQL, (name,), write=True)

    def purge(self, now: int, batch: int = PURGE_BATCH) -> int:
        """Delete up to `batch` timers forgotten by `now` (epoch seconds);
        the number deleted."""
        return self._run(PURGE_SQL, (now, batch), write=True)

    def secret(self) -> bytes:
        # Made here, not with the timers table: a file from before secrets,
        # opened read-only, still serves checks.
        self._run(SECRETS_TABLE_SQL, (), write=True)
        row = self._run(GET_SECRET_SQL, (), write=False)
        if row is None:  # the first process to ask makes it; a racer gets it
            row = self._run(MAKE_SECRET_SQL, (os.urandom(SECRET_BYTES),), write=True)
        return row[0] if isinstance(row[0], bytes) else b""  # not bytes: damaged


def error_code(e: Exception) -> str:
    if isinstance(e, ClientError):
        return e.response.get("Error", {}).get("Code", "ClientError")
    return type(e).__name__


SECRET_ITEM = "~secret"


def item_key(name: str) -> dict[str, dict[str, str]]:
    return {"timer": {"S": name}}


def from_item(
    name: str, item: dict[str, Any] | None, was: str = "", resets: bool = False
) -> Timer | None:
    """The timer an item holds, or with `was`, the one it held before the
    set that wrote it: its countdown from the attributes that set kept
    (prefixed `was_`, NULL where there was none), its misses the item's own
    (a set leaves them as they are), its resets if asked."""
    if not item or "NULL" in item.get(f"{was}start_time", {}):
        return None
    expires_at = item.get(f"{was}expires_at", {}).get("N")
    miss = item.get("last_miss")
    return Timer(
        name,
        int(Decimal(item[f"{was}start_time"]["N"]) * 1000),
        int(item[f"{was}start_seconds"]["N"]),
        2**62 if expires_at is None else int(expires_at),
        int(item["misses"]["N"]) if "misses" in item else 0,
        Miss(**{k: int(v["N"]) for k, v in miss["M"].items()}) if miss else None,
        tuple(sorted(map(unpack, item["resets"]["NS"])))
        if resets and "resets" in item
        else (),
    )


class ConditionFailed(Exception):
    """A write's condition did not hold; the item as it stood, where the
    server sent it (moto does; dynalite does not)."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("the condition failed")
        self.item = item


def unreadable_is_unavailable(method: Callable[..., T]) -> Callable[..., T]:
    """An answer the store cannot read (an item without its fields, an
    endpoint that only looks like DynamoDB) is the store's fault: a 503."""

    @functools.wraps(method)
    def read(self: Any, *args: Any) -> T:
        try:
            return method(self, *args)
        except (
            LookupError,
            TypeError,
            ValueError,
            AttributeError,
            ArithmeticError,
        ) as e:
            kind = type(e).__name__
            raise StoreUnavailable(
                f"dynamodb: an answer it cannot read ({kind})"
            ) from e

    return read


def write_id() -> dict[str, str]:
    """A write's own id (64 random bits: ids need only differ from one
    another): its retry, after an answer lost on the way back, must not
    apply it twice."""
    return {"S": f"{random.getrandbits(64):016x}"}


# A set keeps, in the item, the countdown it replaced (its right-hand sides
# read the item as it was), and its id. A retry whose first attempt was
# applied then fails its condition, and its answer comes from what the item
# kept.
PUT_UPDATE = (
    "SET was_start_time = if_not_exists(start_time, :null),"
    " was_start_seconds = if_not_exists(start_seconds, :null),"
    " was_expires_at = if_not_exists(expires_at, :null),"
    " start_time = :s, start_seconds = :n, expires_at = :e, set_id = :id"
    " ADD resets :reset"
)
# The resets are a number set, which ADD grows in the same update and which
# sorts by time (a list's elements would each cost a map to parse). A set
# cannot be added to and cut in one update (the paths overlap), so it grows
# to TRIM_AT and a second write cuts it back to KEPT_RESETS: one set in
# TRIM_AT - KEPT_RESETS costs two writes. At TRIM_AT the largest item (a
# 128-character name, every number at its longest) is still under 1 KB, one
# write unit (docs/operating.md).
TRIM_AT = 44
PUT_CONDITION = "attribute_not_exists(set_id) OR set_id <> :id"
ADD_MISS_UPDATE = "ADD misses :one SET last_miss = :miss, miss_id = :id"
ADD_MISS_CONDITION = (
    "attribute_exists(#timer) AND (attribute_not_exists(miss_id) OR miss_id <> :id)"
)


class DynamoStore:
    """Timers in a DynamoDB table, one item per timer, hash key `timer`."""

    def __init__(self, table: str, api: DynamoDB) -> None:
        self.table, self.api = table, api
        self.client = api.client  # boto3's, to create the table

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.api.call(operation, {"TableName": self.table, **kwargs})
        except (botocore.exceptions.BotoCoreError, ClientError) as e:
            code = error_code(e)
            if code == "ConditionalCheckFailedException":
                item = e.response.get("Item")  # type: ignore[attr-defined]
                raise ConditionFailed(item) from e
            if code == "ResourceNotFoundException":
                raise StoreUnavailable(
                    f"dynamodb {operation}: the table {self.table} does not exist"
                    f" ({code}): create it with `TABLE_NAME={self.table}"
                    " python timercheck.py create-table`, or deploy the stack"
                    " that makes it"
                ) from e
            if isinstance(e, botocore.exceptions.ConnectionError):
                raise StoreUnavailable(
                    f"dynamodb {operation}: cannot reach {self.api.url} ({code})"
                ) from e
            raise StoreUnavailable(f"dynamodb {operation}: {code}") from e

    def _item(self, name: str) -> dict[str, Any] | None:
        answer = self._call("GetItem", Key=item_key(name), ConsistentRead=True)
        return answer.get("Item")

    def _write_once(
        self, name: str, id_name: str, write: dict[str, str], **update: Any
    ) -> dict[str, Any] | None:
        """An UpdateItem of the timer whose condition holds only until its
        id `write` is in the item (under `id_name`), and the item after it;
        None if it was not applied. An attempt that was applied but whose
        answer was lost makes the retry's condition fail: the item then
        comes with that failure, or from a read after it."""
        try:
            answer = self._call(
                "UpdateItem",
                Key=item_key(name),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **update,
            )
        except ConditionFailed as failed:
            item = failed.item if failed.item is not None else self._item(name)
            return item if item is not None and item.get(id_name) == write else None
        return answer["Attributes"]

    @unreadable_is_unavailable
    def get(self, name: str, resets: bool = False) -> Timer | None:
        return from_item(name, self._item(name), resets=resets)

    @unreadable_is_unavailable
    def put(self, timer: Timer) -> Timer | None:
        start = f"{timer.start_ms // 1000}.{timer.start_ms % 1000:03d}"
        write = write_id()
        item = self._write_once(
            timer.name,
            "set_id",
            write,
            UpdateExpression=PUT_UPDATE,
            ConditionExpression=PUT_CONDITION,
            ExpressionAttributeValues={
                ":s": {"N": start},
                ":n": {"N": str(timer.seconds)},
                ":e": {"N": str(timer.expires_at)},
                ":null": {"NULL": True},
                ":id": write,
                ":reset": {"NS": [pack(timer.start_ms, timer.seconds)]},
            },
        )
        if item is None:  # applied, then another set came before we could read
            raise StoreUnavailable("dynamodb UpdateItem: its answer was lost")
        if len(kept := item.get("resets", {}).get("NS", ())) >= TRIM_AT:
            self._trim(timer.name, kept)
        return from_item(timer.name, item, was="was_")

    def _trim(self, name: str, kept: list[str]) -> None:
        """Cut the resets back to the newest KEPT_RESETS of those `kept`.
        The oldest go by value, so a cut from a stale view, another task's
        cut and this cut's own retry all leave the newest; the condition
        keeps a cut of a timer deleted meanwhile from making an item of its
        key alone. A cut that fails is left to the next set: the set itself
        was applied."""
        oldest = sorted(kept, key=unpack)[: len(kept) - KEPT_RESETS]
        try:
            self._call(
                "UpdateItem",
                Key=item_key(name),
                UpdateExpression="DELETE resets :oldest",
                ConditionExpression="attribute_exists(resets)",
                ExpressionAttributeValues={":oldest": {"NS": oldest}},
            )
        except ConditionFailed:
            pass
        except StoreUnavailable as e:
            log.warning("resets not trimmed, left to the next set: %s", e)

    @unreadable_is_unavailable
    def add_miss(self, name: str, miss: Miss) -> int:
        write = write_id()
        item = self._write_once(
            name,
            "miss_id",
            write,
            UpdateExpression=ADD_MISS_UPDATE,
            ConditionExpression=ADD_MISS_CONDITION,
            ExpressionAttributeNames={"#timer": "timer"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":miss": {"M": {k: {"N": str(v)} for k, v in miss._asdict().items()}},
                ":id": write,
            },
        )
        return int(item["misses"]["N"]) if item else 0  # 0: deleted meanwhile

    def clear_misses(self, name: str) -> None:
        try:
            self._call(
                "UpdateItem",
                Key=item_key(name),
                UpdateExpression="REMOVE misses, last_miss",
                ConditionExpression="attribute_exists(#timer)",
                ExpressionAttributeNames={"#timer": "timer"},
            )
        except ConditionFailed:
            pass  # deleted meanwhile

    @unreadable_is_unavailable
    def delete(self, name: str) -> Timer | None:
        answer = self._call("DeleteItem", Key=item_key(name), ReturnValues="ALL_OLD")
        return from_item(name, answer.get("Attributes"))

    @unreadable_is_unavailable
    def secret(self) -> bytes:
        """Kept in the table, under a key no timer name can take (a name
        starts with a letter or digit); the first task to ask makes it."""
        answer = self._call(
            "UpdateItem",
            Key=item_key(SECRET_ITEM),
            UpdateExpression="SET secret = if_not_exists(secret, :new)",
            # The wire carries binary attributes in base64.
            ExpressionAttributeValues={
                ":new": {"B": base64.b64encode(os.urandom(SECRET_BYTES)).decode()}
            },
            ReturnValues="ALL_NEW",
        )
        try:
            return base64.b64decode(answer["Attributes"]["secret"]["B"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            return b""  # not binary, or not base64: damaged

    def create_table(self) -> None:
        """Create the table as extensions/service-ecs.yml does, if it is missing."""
        try:
            self.client.create_table(
                TableName=self.table,
                KeySchema=[{"AttributeName": "timer", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "timer", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as e:
            if error_code(e) != "ResourceInUseException":
                raise
            log.info("table %s exists already", self.table)
        self.client.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        try:
            self.client.update_time_to_live(
                TableName=self.table,
                TimeToLiveSpecification={
                    "Enabled": True,
                    "AttributeName": "expires_at",
                },
            )
        except ClientError as e:  # some local servers have no TTL at all
            log.warning("table %s: TTL not enabled (%s)", self.table, error_code(e))


# -- breaker --


class Breaker:
    """Fails fast while the store is down, so that store calls stuck on their
    timeouts cannot take every waitress thread (and with them `GET /`).

    The store counts as down after `failures` failures in a row (then calls
    fail at once for `pause` seconds, after which one call at a time probes
    it), or while two calls have been waiting on it for over `stuck` seconds
    and no call has come back for as long. Under CPU overload calls are slow
    but keep coming back, so overload does not look like a store that is down.
    At most `slots` calls wait on the store at once, so some threads are
    always left for everything else.
    """

    def __init__(
        self,
        store: Store,
        failures: int = 3,
        pause: float = 2.0,
        slots: int = 6,
        stuck: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.failures, self.pause = store, failures, pause
        self.stuck, self.clock = stuck, clock
        self._lock = threading.Lock()
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(slots):
            self._slots.put(None)
        self._failed = 0
        self._closed_until = 0.0
        self._waiting: dict[int, float] = {}  # thread id: when its call began
        self._answered = clock()  # when a call last came back

    def _check(self) -> float:
        now = self.clock()
        if self._failed >= self.failures:
            with self._lock:
                if now < self._closed_until:
                    raise StoreUnavailable("store down: failing fast")
                self._closed_until = now + self.pause  # this call is the probe
        if len(self._waiting) >= 2 and now - self._answered > self.stuck:
            started = list(self._waiting.values())
            if sum(now - t > self.stuck for t in started) >= 2:
                raise StoreUnavailable("store not answering: failing fast")
        return now

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        now = self._check()
        try:
            self._slots.get(timeout=0.25)
        except queue.Empty:
            raise StoreUnavailable("every store slot is busy") from None
        me = threading.get_ident()
        self._waiting[me] = now
        started = time.perf_counter()
        try:
            result = method(*args)
        except StoreUnavailable:
            with self._lock:
                self._failed += 1
                if self._failed >= self.failures:
                    self._closed_until = self.clock() + self.pause
            raise
        finally:
            del self._waiting[me]
            self._slots.put(None)
            self._answered = self.clock()
            if log.isEnabledFor(logging.DEBUG):  # the operation, never the name
                took = (time.perf_counter() - started) * 1000
                log.debug("store %s: %.1f ms", method.__name__, took)
        if self._failed:
            with self._lock:
                self._failed = 0
        return result

    def get(self, name: str, resets: bool = False) -> Timer | None:
        return self._call(self.store.get, name, resets)

    def put(self, timer: Timer) -> Timer | None:
        return self._call(self.store.put, timer)

    def delete(self, name: str) -> Timer | None:
        return self._call(self.store.delete, name)

    def add_miss(self, name: str, miss: Miss) -> int:
        return self._call(self.store.add_miss, name, miss)

    def clear_misses(self, name: str) -> None:
        self._call(self.store.clear_misses, name)

    def secret(self) -> bytes:
        return self._call(self.store.secret)


# -- wire --

# DynamoDB's JSON API by hand, in place of boto3's client for the calls a
# request makes. Per GetItem, boto3's client spent 610 to 670 µs of CPU,
# http.client 185 µs, and this wire 93 µs (docs/operating.md, "Performance").
# Libraries still do what they do well: httptools frames the answers,
# botocore decides retries, resolves credentials and proxies, and boto3's
# client resolves the region and the endpoint and creates the table.


CONNECT_TIMEOUT = 1.0  # seconds
READ_TIMEOUT = 1.5  # seconds
ATTEMPTS = 2  # the first included
DEADLINE = 4.0  # seconds for a call, every attempt and wait included


def dynamodb_client(region: str | None = None) -> Any:
    """boto3's client: it resolves the region and the endpoint
    (AWS_ENDPOINT_URL_DYNAMODB included) for the wire, and creates the
    table, giving up as the wire does."""
    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": ATTEMPTS},
    )
    return boto3.session.Session().client("dynamodb", region_name=region, config=config)


class Stamp:
    """`time.strftime` of a time's second, made once a second: a request's
    log line and signature each need one."""

    def __init__(self, form: str, convert: Callable[[float], time.struct_time]) -> None:
        self.form, self.convert = form, convert
        self.last = (-1, "")  # a second, and its stamp: replaced whole

    def __call__(self, now: float) -> str:
        second, text = self.last
        if int(now) != second:
            text = time.strftime(self.form, self.convert(now))
            self.last = int(now), text
        return text


SIGV4 = "AWS4-HMAC-SHA256"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(
    headers: Mapping[str, str], body: bytes, key_id: str, key: bytes, scope: str
) -> str:
    """SigV4's Authorization for a POST to / with no query, signing every
    header given (lower-case names, `host` and `x-amz-date` among them)."""
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names)
    request = f"POST\n/\n\n{canonical}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
    digest = hashlib.sha256(request.encode()).hexdigest()
    to_sign = f"{SIGV4}\n{headers['x-amz-date']}\n{scope}\n{digest}"
    signature = hmac.new(key, to_sign.encode(), "sha256").hexdigest()  # OpenSSL's
    return (
        f"{SIGV4} Credential={key_id}/{scope},"
        f" SignedHeaders={signed}, Signature={signature}"
    )


class DynamoAnswer(NamedTuple):  # what botocore's retry policy reads of a response
    status_code: int
    headers: Mapping[str, str]  # lower-case names
    content: bytes


MAX_ANSWER = 1 << 20  # bytes; DynamoDB's largest item is 400 KB
RECEIVE = 65536  # bytes a read asks for


KEPT_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"x-amz-crc32"})


class Framing:
    """httptools' callbacks for the answers on one connection, one request's
    at a time (httptools, the binding of Node's llhttp, parsed a DynamoDB
    answer in 3.0 µs here; h11 took 58 µs). It passes over 1xx answers, and
    anything after the final answer, or an answer whose end only a closed
    connection could tell, is an error: nothing that could belong to another
    request is ever read as this one's answer."""

    __slots__ = ("parser", "status", "headers", "body", "keep", "done")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.start()

    def start(self) -> None:
        """Ready for the answer to the next request."""
        self.status = 0
        self.headers: dict[str, str] = {}  # those it reads, lower-case
        self.body: list[bytes] = []
        self.keep = self.done = False

    def on_message_begin(self) -> None:
        if self.done:
            raise ValueError("more after the answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        if (name := name.lower()) in KEPT_HEADERS:
            self.headers[name.decode()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status == 101:
            raise ValueError("an upgrade")
        if self.status >= 200 and not (
            "content-length" in self.headers
            or self.headers.get("transfer-encoding", "").lower().endswith("chunked")
        ):
            raise ValueError("an answer with no length")
        self.keep = self.parser.should_keep_alive()  # not known once it ends

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        if self.status < 200:  # 100 Continue, 103 Early Hints: more to come
            self.headers = {}
        else:
            self.done = True

    def answer(self) -> DynamoAnswer:
        return DynamoAnswer(self.status, self.headers, b"".join(self.body))


class ProxyAt(NamedTuple):
    """An HTTP proxy, from HTTP_PROXY or HTTPS_PROXY as botocore reads them."""

    address: tuple[str, int]
    authorization: str | None  # Proxy-Authorization, from user:password@
    shown: str  # the URL without its password, for the log


def proxy_for(url: str) -> ProxyAt | None:
    """The proxy botocore would send a request for `url` through (NO_PROXY
    honoured), or None. ConfigError for one this service cannot use."""
    scheme = urlsplit(url).scheme
    proxy = botocore.utils.get_environ_proxies(url).get(scheme)
    if not proxy:
        return None
    variable = f"{scheme.upper()}_PROXY"
    parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"{variable} must be an http:// proxy URL")
    credentials = None
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        credentials = "Basic " + base64.b64encode(user.encode()).decode()
    port = parts.port or 80
    return ProxyAt(
        (parts.hostname, port), credentials, f"http://{parts.hostname}:{port}"
    )


def set_timeouts(sock: socket.socket, seconds: float) -> None:
    """The kernel's timeouts on a blocking socket: one system call a read,
    where Python's own timeout polls before each."""
    whole = int(seconds)
    value = struct.pack("@ll", whole, max(1, int((seconds - whole) * 1e6)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def stale(link: Link, tls: bool) -> bool:
    """Whether an idle kept-alive connection has something to read, or its
    end, before a request is sent: a stray answer, or the server's close.
    Under TLS, bytes the TLS layer holds, or encrypted bytes in the kernel."""
    return bool(
        (tls and link.sock.pending())  # type: ignore[union-attr]
        or link.poller.poll(0)
    )


class Link(threading.local):
    """A thread's kept-alive connection: its socket, the kernel timeout the
    socket has, a poller that tells what waits on it, and the framing of its
    answers; and the buffer the thread reads into."""

    sock: socket.socket | None = None
    timeout = 0.0

    def __init__(self) -> None:
        self.buffer = bytearray(RECEIVE)
        self.view = memoryview(self.buffer)

    def open(self, sock: socket.socket) -> None:
        self.sock, self.timeout = sock, 0.0
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.framing = Framing()


def item_matches(key: dict[str, Any] | None, fields: dict[str, Any]) -> bool:
    """Whether an answer's item, where it carries one, has the key asked for."""
    item = fields.get("Item") or fields.get("Attributes")
    if not item or key is None:
        return True
    if not isinstance(item, dict):
        return False
    for name, value in key.items():
        if item.get(name) != value:
            return False
    return True


class Tunnel:
    """httptools' callbacks for a proxy's answer to CONNECT: its head only."""

    __slots__ = ("parser", "status")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()


def tunnel(
    sock: socket.socket, host: str, authorization: str | None, deadline: float
) -> None:
    """Ask an HTTP proxy for a connection to `host` (CONNECT), for TLS, by
    the call's deadline: a proxy that drips its answer must not hold the
    thread past it."""
    request = f"CONNECT {host} HTTP/1.1\r\nhost: {host}\r\n"
    if authorization:
        request += f"proxy-authorization: {authorization}\r\n"
    sock.sendall(f"{request}\r\n".encode())
    framing, head = Tunnel(), b""
    while not framing.status:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the proxy did not answer CONNECT by the deadline")
        sock.settimeout(left)
        chunk = sock.recv(RECEIVE)
        head += chunk
        if not chunk or len(head) > MAX_ANSWER:
            raise ValueError("the proxy did not answer CONNECT")
        framing.parser.feed_data(chunk)
    if not 200 <= framing.status < 300 or not head.endswith(b"\r\n\r\n"):
        raise ValueError(f"the proxy answered CONNECT with {framing.status}")


@functools.cache
def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle or get_cert_path(True))


class DynamoDB:
    """DynamoDB's JSON API, one signed POST per operation, on one kept-alive
    connection per thread. boto3 resolves the credentials (refreshed as the
    task role's rotate), and botocore decides what is retried, after how
    long, and how many retries a failing store gets (its standard mode's
    retry quota). A call ends by `deadline` seconds, every attempt and wait
    included.

    botocore's `before-send` event is emitted as its client does, so that
    what stands in for DynamoDB there (moto, a test's fault) answers here
    too; but only where something may listen, since building botocore's
    request for it cost 6 µs a call: where a library hooks every client's
    (moto does, once imported), or where `before_send` is set.

    Every answer that carries an item is checked against the key asked for:
    HTTP/1.1 pairs answers with requests by their order alone, and a server
    or proxy that breaks the order must cost a retry, never a wrong timer."""

    VERSION = "DynamoDB_20120810"

    def __init__(
        self,
        client: Any,
        credentials: Any = None,
        attempts: int = ATTEMPTS,
        timeouts: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
        deadline: float = DEADLINE,
    ) -> None:
        self.url = client.meta.endpoint_url.rstrip("/") + "/"
        parts = urlsplit(self.url)
        default_port = 443 if parts.scheme == "https" else 80
        self.address = (parts.hostname or "", parts.port or default_port)
        # Named as botocore's SigV4Auth names it: lower case, the port only
        # when it is not the scheme's own.
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        self.host = (
            host if parts.port in (None, default_port) else f"{host}:{parts.port}"
        )
        self.tls = parts.scheme == "https"
        self.proxy = proxy_for(self.url)
        # Through a proxy, a plain-HTTP request names the whole URL; under
        # TLS the proxy only carries the connection (CONNECT).
        target = self.url if self.proxy and not self.tls else "/"
        self.request_line = f"POST {target} HTTP/1.1\r\n"
        if self.proxy and self.proxy.authorization and not self.tls:
            self.request_line += f"proxy-authorization: {self.proxy.authorization}\r\n"
        self.ca_bundle = None
        if self.tls:  # AWS_CA_BUNDLE, or the profile's ca_bundle, as botocore
            self.ca_bundle = botocore.session.get_session().get_config_variable(
                "ca_bundle"
            )
        self.client = client
        self.region = client.meta.region_name
        self.events = client.meta.events
        self.service = client.meta.service_model
        self.credentials = credentials
        self.timeouts = timeouts
        self.deadline = deadline
        detector = retries.ThrottlingErrorDetector(retries.RetryEventAdapter())
        self.policy = retries.RetryPolicy(
            retries.StandardRetryConditions(max_attempts=attempts),
            retries.ExponentialBackoff(
                service_name="dynamodb", throttling_detector=detector
            ),
        )
        self.quota = retries.RetryQuotaChecker(RetryQuota(), detector)
        self._link = Link()
        self._signing_keys: dict[tuple[str, str], bytes] = {}
        self._stamp = Stamp("%Y%m%dT%H%M%SZ", time.gmtime)  # x-amz-date
        self.before_send = any(
            event.startswith("before-send")
            for event, *_ in botocore.handlers.BUILTIN_HANDLERS
        )

    def call(self, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The operation's answer; botocore's exceptions as its client raises
        them (ClientError for an error DynamoDB answered, with the item of a
        failed condition where the server sends it)."""
        body = JSON.encode(payload).encode()
        deadline = time.monotonic() + self.deadline
        request_context: dict[str, Any] = {}
        attempt = 0
        while True:
            attempt += 1
            answer, failure, error = None, None, None
            try:
                answer = self.send(operation, body, deadline)
            except botocore.exceptions.BotoCoreError as e:
                failure = e
            if answer is not None:
                fields, error, failure = self.read(answer, payload.get("Key"))
                if fields is not None:
                    self.quota.release_retry_quota(request_context, answer)
                    return fields
                if failure is not None:
                    answer = None
            context = retries.RetryContext(
                attempt_number=attempt,
                operation_model=self.service.operation_model(operation),
                parsed_response=error,
                http_response=answer,
                caught_exception=failure,
                request_context=request_context,
            )
            delay = 0.0
            retry = self.policy.should_retry(context)
            if retry:
                delay = self.policy.compute_retry_delay(context)
                retry = time.monotonic() + delay < deadline
            if not (retry and self.quota.acquire_retry_quota(context)):
                if failure is not None:
                    raise failure
                raise ClientError(error or {}, operation)
            time.sleep(delay)

    def read(
        self, answer: DynamoAnswer, key: dict[str, Any] | None
    ) -> tuple[
        dict[str, Any] | None,
        dict[str, Any] | None,
        botocore.exceptions.BotoCoreError | None,
    ]:
        """What an answer says: its fields, or the error DynamoDB answered, or
        a fault to retry; none of them for a body that fails its CRC32, which
        botocore's retry policy reads from the answer itself."""
        crc = answer.headers.get("x-amz-crc32")
        if crc is not None and int(crc) != zlib.crc32(answer.content):
            return None, None, None
        try:
            content = answer.content
            fields = JSON_DECODER.decode(content.decode()) if content else {}
            if not isinstance(fields, dict):
                raise ValueError("an answer that is not a JSON object")
        except ValueError as e:
            if answer.status_code == 200:  # garbled: a transient fault
                return None, None, self.fault(e)
            fields = None
        error = None
        if answer.status_code != 200:
            fields = error = self.error(answer.status_code, fields)
        if not item_matches(key, fields):
            return None, None, self.fault(ValueError("an answer about another item"))
        return (None, error, None) if error else (fields, None, None)

    def fault(self, cause: Exception) -> botocore.exceptions.BotoCoreError:
        """A transient fault for the retry policy; the connection that
        brought it is not used again."""
        self.drop()
        return botocore.exceptions.HTTPClientError(error=cause)

    @staticmethod
    def error(status: int, fields: Any) -> dict[str, Any]:
        """An error answer as botocore's client parses it: the code is the
        end of `__type`, or the status when there is none; a failed
        condition's item where the server sends it."""
        if not isinstance(fields, dict):
            fields = {}
        kind = fields.get("__type", "")
        error = {
            "Error": {"Code": str(kind).rpartition("#")[2] or str(status)},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        if "Item" in fields:
            error["Item"] = fields["Item"]
        return error

    def signed_headers(self, operation: str, body: bytes, now: float) -> dict[str, str]:
        credentials = self.credentials
        if credentials is None:
            credentials = self.credentials = boto3.session.Session().get_credentials()
        if credentials is None:
            raise botocore.exceptions.NoCredentialsError()
        frozen = credentials.get_frozen_credentials()
        stamp = self._stamp(now)
        date = stamp[:8]
        signing = self._signing_keys.get((frozen.secret_key, date))
        if signing is None:
            signing = signing_key(frozen.secret_key, date, self.region, "dynamodb")
            self._signing_keys = {(frozen.secret_key, date): signing}
        headers = {
            "content-type": "application/x-amz-json-1.0",
            "host": self.host,
            "x-amz-date": stamp,
            "x-amz-target": f"{self.VERSION}.{operation}",
        }
        if frozen.token:
            headers["x-amz-security-token"] = frozen.token
        scope = f"{date}/{self.region}/dynamodb/aws4_request"
        headers["authorization"] = authorization(
            headers, body, frozen.access_key, signing, scope
        )
        return headers

    def send(self, operation: str, body: bytes, deadline: float) -> DynamoAnswer:
        headers = self.signed_headers(operation, body, time.time())
        if self.before_send:
            request = AWSPreparedRequest(
                "POST", self.url, HeadersDict(headers), body, False
            )
            _, stand_in = self.events.emit_until_response(
                f"before-send.dynamodb.{operation}", request=request
            )
            if stand_in is not None:
                return DynamoAnswer(
                    stand_in.status_code, stand_in.headers, stand_in.content
                )
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"{self.request_line}{head}content-length: {len(body)}\r\n\r\n"
        return self.post(head.encode() + body, deadline)

    def post(self, request: bytes, deadline: float) -> DynamoAnswer:
        """One request and its answer on this thread's connection, by the
        deadline."""
        link = self._link
        sock = self.connection(deadline)
        framing = link.framing
        framing.start()
        received = 0
        try:
            self.fit_timeout(deadline)
            sock.sendall(request)
            while True:
                got = sock.recv_into(link.buffer)
                if not got:
                    raise ValueError("the answer was cut short")
                received += got
                if received > MAX_ANSWER:
                    raise ValueError(f"an answer over {MAX_ANSWER} bytes")
                framing.parser.feed_data(link.view[:got])
                if framing.done:
                    break
                self.fit_timeout(deadline)
        except (
            TimeoutError,
            BlockingIOError,
            ssl.SSLWantReadError,
            ssl.SSLWantWriteError,
        ) as e:
            self.drop()
            raise botocore.exceptions.ReadTimeoutError(
                endpoint_url=self.url, error=e
            ) from e
        except (OSError, ValueError, httptools.HttpParserError) as e:
            self.drop()
            raise botocore.exceptions.ConnectionClosedError(
                endpoint_url=self.url, error=e
            ) from e
        if not framing.keep:
            self.drop()
        return framing.answer()

    def fit_timeout(self, deadline: float) -> None:
        """Keep the socket's timeout within the call's deadline: a read
        timeout alone lets a server that drips a byte at a time hold a
        thread for minutes."""
        link = self._link
        want = min(self.timeouts[1], deadline - time.monotonic())
        if want <= 0:
            raise TimeoutError("the call's deadline passed")
        # A new connection has none yet (0.0): it always gets one, the
        # deadline's rest where that is shorter than a read timeout.
        if (
            not link.timeout
            or want < link.timeout
            or link.timeout < self.timeouts[1] <= want
        ):
            set_timeouts(link.sock, want)  # type: ignore[arg-type]
            link.timeout = want

    def connection(self, deadline: float) -> socket.socket:
        link = self._link
        if link.sock is not None and stale(link, self.tls):
            self.drop()  # closed by the server while idle, or a stray answer
        if link.sock is None:
            link.open(self.connect(deadline))
        return link.sock  # type: ignore[return-value]

    def connect(self, deadline: float) -> socket.socket:
        """A new connection to the store, through the proxy if there is one,
        left blocking: the kernel's timeouts are set before each use."""
        timeout = min(self.timeouts[0], deadline - time.monotonic())
        sock = None
        try:
            if timeout <= 0:
                raise TimeoutError("the call's deadline passed")
            sock = socket.create_connection(
                self.proxy.address if self.proxy else self.address, timeout
            )
            if self.tls:
                if self.proxy:
                    tunnel(sock, self.host, self.proxy.authorization, deadline)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("the call's deadline passed")
                    sock.settimeout(min(timeout, left))  # for the TLS handshake
                sock = tls_context(self.ca_bundle).wrap_socket(
                    sock, server_hostname=self.address[0]
                )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(None)
            return sock
        except TimeoutError as e:
            if sock is not None:
                sock.close()
            raise botocore.exceptions.ConnectTimeoutError(
                endpoint_url=self.url, error=e
            ) from e
        except (OSError, ValueError, httptools.HttpParserError) as e:
            if sock is not None:
                sock.close()
            raise botocore.exceptions.EndpointConnectionError(
                endpoint_url=self.url, error=e
            ) from e

    def drop(self) -> None:
        link = self._link
        if link.sock is not None:
            link.sock.close()
            link.sock = None


# -- waitress hooks --

# waitress 3.0.2 (requirements.txt pins it), changed where it fell short,
# each change measured in docs/operating.md: the task queue serves a load
# balancer's probe first (within a budget of jumps), the listener accepts a
# storm in bursts, its upkeep closes a connection whose request is late, the parser
# stamps when a request arrived (shedding by time waited), a worker sends an
# answer in one send (19 µs), and the main loop no longer spins while a
# worker writes (38 µs). `waitress_gaps` checks at start that this waitress
# still has every internal these rely on.


class TimedRequestParser(waitress.parser.HTTPRequestParser):
    """waitress's parser, stamping when a request had been read whole (the
    wait that sheds it counts from there), and sending no 100 Continue to a
    request without a body."""

    arrived = 0.0  # time.monotonic() when the request had been read whole

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.begun = time.monotonic()  # made when its first byte came

    def received(self, data: bytes) -> int:
        taken = super().received(data)
        if self.completed and not self.arrived:
            self.arrived = time.monotonic()
        return taken

    def parse_header(self, header_plus: bytes) -> None:
        # waitress 3.0.2 answers `Expect: 100-continue` on a request without
        # a body with a 100, then waits for a body that never comes.
        super().parse_header(header_plus)
        if not self.chunked and not self.content_length:
            self.expect_continue = False


class TimedTask(waitress.task.WSGITask):
    """waitress's task, telling the app how long its request waited for a
    thread (`WAITED`), and sending a whole answer in one send."""

    def get_environment(self) -> dict[str, Any]:
        environ = super().get_environment()
        environ[WAITED] = time.monotonic() - self.request.arrived
        return environ

    def write(self, data: bytes) -> None:
        """The head and a whole body in memory go out in one send; waitress
        sends the head on its own first (19 µs more a request,
        docs/operating.md)."""
        if self.wrote_header or not self.complete:
            super().write(data)
            return
        head = self.build_response_header()
        self.wrote_header = True
        if (
            data
            and self.has_body
            and not self.chunked_response
            and self.content_length == len(data)
        ):
            self.content_bytes_written += len(data)
            self.channel.write_soon(head + data)
            return
        self.channel.write_soon(head)
        super().write(data)


class NoSpinChannel(waitress.channel.HTTPChannel):
    """waitress's connection, except that the main loop waits to write only
    what a worker left behind. waitress asks poll() for POLLOUT whenever the
    output buffer holds anything, and so also while a worker is sending its
    answer under the output lock: poll() says writable at once, the loop
    fails to take the lock and goes round again, rebuilding its poll set.
    That cost about 38 µs a request (docs/operating.md). A worker that
    cannot send all it wrote wakes the loop (waitress's `write_soon` and
    its high-water mark both pull the trigger), so the loop need not watch
    while it sends."""

    parser_class = TimedRequestParser
    task_class = TimedTask
    left_behind = False  # a flush ended with bytes the socket did not take

    def _flush_some(self, do_close: bool = True) -> bool:
        sent = super()._flush_some(do_close=do_close)
        self.left_behind = self.total_outbufs_len > 0
        return sent

    def writable(self) -> bool:
        if self.will_close or self.close_when_flushed:
            return True
        return bool(self.total_outbufs_len) and (not self.requests or self.left_behind)


HEALTH_JUMPS = 10  # a second, and at most this many at once


def health_check(channel: Any) -> bool:
    """Whether the request a connection is queued for is `GET /` or `HEAD /`
    (however many more it pipelined behind it)."""
    request = channel.requests[0]  # a bad one may lack a path or a method
    path, method = getattr(request, "path", ""), getattr(request, "command", "")
    return path == "/" and method in ("GET", "HEAD")


class HealthFirstDispatcher(waitress.task.ThreadedTaskDispatcher):
    """waitress's queue of connections with a request to serve, except that
    a health check goes first: behind a storm of timer requests it would
    wait its turn past the load balancer's timeout, and the task would be
    replaced just when it is needed most.

    What no client can make happen: requests already queued are passed by
    more than HEALTH_JUMPS health checks at once, or more than HEALTH_JUMPS
    a second after that. However `GET /` arrives (pipelined, in pairs,
    behind or ahead of a timer request, on fresh connections), a health
    check beyond that budget waits in line like any request, so a timer
    request's wait grows by at most that many answers of `/` a second
    (about 100 µs each, docs/operating.md). A load balancer probes each
    task once every 30 s from each of its nodes: far inside the budget."""

    jumps = HEALTH_JUMPS
    clock = staticmethod(time.monotonic)

    def __init__(self) -> None:
        super().__init__()
        self.allowance, self.counted = float(self.jumps), self.clock()

    def add_task(self, channel: Any) -> None:
        if not health_check(channel):
            channel.jumped = False
            super().add_task(channel)
            return
        with self.lock:
            now = self.clock()
            elapsed = now - self.counted
            self.allowance = min(self.jumps, self.allowance + elapsed * self.jumps)
            self.counted = now
            channel.jumped = self.allowance >= 1
            if channel.jumped:
                self.allowance -= 1
                ahead = 0  # those that jumped before it keep their order
                while ahead < len(self.queue) and self.queue[ahead].jumped:
                    ahead += 1
                self.queue.insert(ahead, channel)
            else:
                self.queue.append(channel)
            self.queue_cv.notify()


def readable_now(sock: Any) -> bool:
    """Whether a socket has something to read, at once; poll(), not select():
    descriptors run past 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


ACCEPT_BURST = 256


def accept_bursts(listener: Any) -> None:
    """waitress accepts one connection per turn of its loop, and reads a new
    connection's request only on the next turn, after every other open
    connection: with thousands open, a turn takes a large part of a second,
    and a storm of new connections (the load balancer's probe among them)
    would wait turns in the kernel. Accept what is waiting, up to the
    connection limit, and read each request that has already arrived."""
    accept_one = listener.handle_accept

    def accept() -> None:
        for _ in range(ACCEPT_BURST):
            before = len(listener._map)
            accept_one()
            if len(listener._map) == before:
                return
            channel = next(reversed(listener._map.values()))
            if channel.readable() and readable_now(channel.socket):
                channel.handle_read_event()
            if len(listener._map) >= listener.adj.connection_limit:
                return

    listener.handle_accept = accept


WAITRESS_BUILT_FOR = "3.0.2"  # requirements.txt pins it


def close_late_requests(listener: Any, seconds: float) -> None:
    """waitress closes a connection once it has been idle for its channel
    timeout, and a client that sends a byte of a head now and then is never
    idle: a few thousand such clients hold every connection for as long as
    they like. Once a second, waitress's upkeep also closes a connection
    whose request has not arrived whole `seconds` after its first byte came
    (unless the connection is still answering an earlier request, and so not
    reading)."""
    close_idle = listener.maintenance

    def maintenance(now: float) -> None:
        close_idle(now)
        begun_by = time.monotonic() - seconds
        for channel in listener.active_channels.values():
            request = channel.request
            if (
                request is not None
                and not channel.requests
                and getattr(request, "begun", begun_by) < begun_by
            ):
                channel.will_close = True

    listener.maintenance = maintenance


def waitress_gaps() -> list[str]:
    """The waitress internals the service relies on that this waitress lacks,
    each with what it is for: each is checked on a real object, so that on
    another release nothing the service claims is quietly off."""
    dispatcher = HealthFirstDispatcher()
    try:
        server = waitress.create_server(
            lambda environ, start_response: [],
            host="127.0.0.1",
            port=0,
            _dispatcher=dispatcher,
        )
    except TypeError:
        return ["create_server(_dispatcher=) (health first)"]
    except OSError:  # nowhere to listen here: the listener's class instead
        server = None
    listener = server or waitress.server.BaseWSGIServer
    channel, parser = waitress.channel.HTTPChannel, waitress.parser.HTTPRequestParser
    try:
        needs = {
            "the task queue's queue, queue_cv and lock (health first)": (
                dispatcher,
                ("queue", "queue_cv", "lock"),
            ),
            "a listener's _map, adj, channel_class, handle_accept (accept bursts)": (
                listener,
                ("channel_class", "handle_accept")
                + (("_map", "adj") if server else ()),
            ),
            "a listener's maintenance, active_channels (a deadline on a"
            " request's arrival)": (
                listener,
                ("maintenance",) + (("active_channels",) if server else ()),
            ),
            "HTTPChannel's request, will_close (a deadline on a request's arrival)": (
                channel,
                ("request", "will_close"),
            ),
            "HTTPChannel's parser_class, task_class (shedding by time waited)": (
                channel,
                ("parser_class", "task_class"),
            ),
            "HTTPRequestParser's received, completed, chunked, content_length,"
            " expect_continue (shedding by time waited; Expect without a body)": (
                parser,
                (
                    "received",
                    "completed",
                    "chunked",
                    "content_length",
                    "expect_continue",
                ),
            ),
            "WSGITask.get_environment (shedding by time waited)": (
                waitress.task.WSGITask,
                ("get_environment",),
            ),
            "WSGITask's write, build_response_header, wrote_header, complete,"
            " has_body, chunked_response, content_length, content_bytes_written"
            " (one send an answer)": (
                waitress.task.WSGITask,
                (
                    "write",
                    "build_response_header",
                    "wrote_header",
                    "complete",
                    "has_body",
                    "chunked_response",
                    "content_length",
                    "content_bytes_written",
                ),
            ),
            "HTTPChannel's _flush_some, writable, write_soon, total_outbufs_len,"
            " will_close, close_when_flushed (no write spin)": (
                channel,
                (
                    "_flush_some",
                    "writable",
                    "write_soon",
                    "total_outbufs_len",
                    "will_close",
                    "close_when_flushed",
                ),
            ),
            "proxy_headers' parse_proxy_headers, clear_untrusted_headers,"
            " PROXY_HEADERS (proxy headers)": (
                waitress.proxy_headers,
                ("parse_proxy_headers", "clear_untrusted_headers", "PROXY_HEADERS"),
            ),
        }
        gaps = [
            need
            for need, (where, names) in needs.items()
            if not all(hasattr(where, name) for name in names)
        ]
    finally:
        if server is not None:
            server.close()
    source = inspect.getsource(channel)
    if "while serving %s" not in source or "self.requests" not in source:
        gaps.append(
            "HTTPChannel's requests, and 'while serving' in its log lines"
            " (health first; no request path in the log)"
        )
    if "pull_trigger" not in inspect.getsource(channel.write_soon):
        gaps.append("HTTPChannel.write_soon waking the loop (no write spin)")
    return gaps


# -- entry point --


def dynamo_store(config: Config) -> DynamoStore:
    return DynamoStore(config.table_name, DynamoDB(dynamodb_client(config.region)))


def make_store(config: Config) -> Breaker:
    if config.table_name:
        dynamo = dynamo_store(config)
        if proxy := dynamo.api.proxy:
            log.info("dynamodb: calls go through the proxy %s", proxy.shown)
        store: Store = dynamo
    else:
        store = SqliteStore(config.sqlite_path)
    return Breaker(store, slots=max(1, config.workers - 2))


def store_label(config: Config) -> str:
    if config.table_name:
        return f"dynamodb table={config.table_name}"
    return f"sqlite path={config.sqlite_path}"


def server_options(config: Config) -> dict[str, Any]:
    """waitress's settings for this service (the benchmark serves with them too)."""
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "threads": config.workers,
        "ident": "timercheck",
        "channel_timeout": config.channel_timeout,
        "cleanup_interval": 1,  # else idle channels outlive channel_timeout by 30 s
        "connection_limit": config.connection_limit,
        # A storm of new connections waits here, not in SYN retries (the
        # kernel caps it at net.core.somaxconn).
        "backlog": 4096,
        "max_request_body_size": 16384,
        # An ALB accepts request lines and headers up to 16 KB; waitress's
        # default of 256 KB let one head cost 150 to 250 ms of CPU
        # (docs/operating.md, "Request heads").
        "max_request_header_size": 16384,
        "asyncore_use_poll": True,
        # The app reads proxy headers itself (`forwarded`).
        "clear_untrusted_proxy_headers": False,
    }
    return options


SPARE_FILES = 64  # listeners, the log, waitress's trigger, the process's own
FILES_PER_THREAD = 3  # its store connection: SQLite's file and -wal, or a socket


def spare_files(threads: int) -> int:
    """Files the process holds besides its connections: each worker thread,
    and the threads that purge and follow the secret, keep their own store
    connection open."""
    return SPARE_FILES + FILES_PER_THREAD * (threads + 2)


def fit_open_files(connection_limit: int, threads: int) -> int:
    """Raise the soft open-file limit to hold the connection limit and what
    the threads keep open, as far as the hard limit allows; the connection
    limit that fits."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    spare = spare_files(threads)
    wanted = connection_limit + spare
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < raised:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        log.info("raised the open-file limit from %d to %d", soft, raised)
        soft = raised
    if soft != resource.RLIM_INFINITY and soft < wanted:
        fitted = max(1, soft - spare)
        log.warning(
            "open-file limit %d (hard) holds %d connections, not %d",
            soft, fitted, connection_limit,
        )  # fmt: skip
        return fitted
    return connection_limit


SERVING = re.compile(r"(while serving) .*", re.S)


class SafeLines(logging.Filter):
    """Every line the process logs, waitress's included: control characters
    escaped and long lines cut, and no request path (a path holds a timer's
    name or token; waitress logs it when a client disconnects)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.name.startswith("waitress"):
            message = SERVING.sub(r"\1 a request", message)
        if record.exc_info and record.exc_info[1] is not None:
            # A traceback is part of its line, the exception first: cut at
            # the end, a long one keeps what went wrong.
            kind, error, stack = record.exc_info
            last = traceback.format_exception_only(kind, error)[-1].strip()
            message += f": {last} | " + "".join(traceback.format_tb(stack))
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = printable(message, 2000), None
        return True


ACCESS_LEVEL_NAME = "INFO timercheck.access"


def access_writer(stream: Any) -> Callable[[str], None]:
    """Access lines in the log's format, without a log record per request
    (which took a fifth of a check's CPU, docs/operating.md), and left in
    the stream's buffer: `flush_often` sends them on. A warning or an error
    goes through logging, which flushes each, the access lines before it
    included."""
    if not access_log.isEnabledFor(logging.INFO):
        return lambda line: None
    lock = threading.Lock()
    stamp = Stamp("%Y-%m-%d %H:%M:%S", time.localtime)

    def write(line: str) -> None:
        now = time.time()
        text = f"{stamp(now)},{int(now % 1 * 1000):03d} {ACCESS_LEVEL_NAME} {line}\n"
        with lock:
            stream.write(text)

    return write


FLUSH_EVERY = 1.0  # seconds: what a crash can lose of the access lines


@contextlib.contextmanager
def buffered(stream: Any) -> Iterator[None]:
    """The stream held in its buffer until flushed, even where
    PYTHONUNBUFFERED (the Dockerfile sets it) or a terminal would send each
    line at once; flushed and put back as it was at the end."""
    if not isinstance(stream, io.TextIOWrapper):
        yield
        return
    lines, through = stream.line_buffering, stream.write_through
    stream.reconfigure(line_buffering=False, write_through=False)
    try:
        yield
    finally:
        stream.flush()
        stream.reconfigure(line_buffering=lines, write_through=through)


def flush_often(stream: Any, stop: threading.Event, every: float = FLUSH_EVERY) -> None:
    """Flush the access lines once a second, until stopped: a flush after
    each line cost about 5 µs a request (docs/operating.md)."""
    while not stop.wait(every):
        stream.flush()


PROBE_SAYS_EVERY = 60.0  # seconds between two lines saying the store is down


def probe(
    app: App,
    retry: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Say at start whether the store answers, and load the keys from its
    secret, trying again until it answers; serve either way (`/` with 200,
    timers with 503s: in ECS a crash loop would hide the reason). The reason
    is logged at once, then at most once a minute, and again if it changes."""
    said, said_at = "", 0.0
    while True:
        try:
            app.store.get("timercheck-startup-probe")
            app.token_keys()
        except StoreUnavailable as e:
            now = clock()
            if str(e) != said or now - said_at >= PROBE_SAYS_EVERY:
                log.error("the timer store is unavailable: %s", e)
                said, said_at = str(e), now
            sleep(retry)
        else:
            log.info("the timer store answers")
            return


SECRET_EVERY = 60.0  # seconds


def follow_secret(app: App, stop: threading.Event, every: float = SECRET_EVERY) -> None:
    """Read the store's secret again every minute, until stopped, so that
    every task behind the load balancer adopts a changed one within a
    minute."""
    while not stop.wait(every):
        try:
            app.refresh_token_keys()
        except StoreUnavailable:
            pass  # the requests that meet the outage say so


PURGE_EVERY = 60.0  # seconds


def purge_forgotten(
    store: SqliteStore, stop: threading.Event, every: float = PURGE_EVERY
) -> None:
    """DynamoDB's TTL deletes forgotten timers; on SQLite this thread does,
    every minute until stopped, so that the file stops growing with every
    name ever used."""
    failing = False
    while not stop.wait(every):
        try:
            while store.purge(int(time.time())) == PURGE_BATCH:
                pass
        except StoreUnavailable as e:
            if not failing:
                log.warning("cannot purge forgotten timers: %s", e)
            failing = True
        else:
            failing = False


def stop(signum: int, frame: object) -> None:
    # As PID 1 in a container, waitress would ignore SIGTERM.
    raise SystemExit(0)


def serve(config: Config) -> int:
    fitted = fit_open_files(config.connection_limit, config.workers)
    config = replace(config, connection_limit=fitted)
    store = make_store(config)
    app = App(
        store,
        retention_days=config.retention_days,
        access=access_writer(sys.stdout),
        max_wait=config.max_wait_ms / 1000,
        trusted_proxy=config.trusted_proxy,
        trusted_proxy_count=config.trusted_proxy_count,
        max_seconds=config.max_seconds,
        sets_per_minute=config.sets_per_minute,
    )
    if gaps := waitress_gaps():
        log.error(
            "waitress %s lacks what this service, built for waitress %s, relies on: %s",
            importlib.metadata.version("waitress"),
            WAITRESS_BUILT_FOR,
            "; ".join(gaps),
        )
        return 2
    read_only = False
    if isinstance(store.store, SqliteStore):
        try:
            if warning := store.store.open_now():
                log.warning("%s", warning)
                read_only = True
            if warning := store.store.exposed():
                log.warning("%s", warning)
        except ConfigError as e:
            log.error("%s", e)
            return 1
    dispatcher = HealthFirstDispatcher()
    try:
        server = waitress.create_server(
            app, _dispatcher=dispatcher, **server_options(config)
        )
    except (OSError, ValueError) as e:  # a port taken, a host not ours or unknown
        cause = e.__context__ if isinstance(e, ValueError) else e
        reason = getattr(cause, "strerror", None) or str(cause or e)
        log.error("cannot listen on %s port %s: %s", config.host, config.port, reason)
        return 1
    # A host name may resolve to several addresses, each its own listener in
    # the map the loop serves (beside the loop's own trigger).
    listeners = (
        [server]
        if isinstance(server, waitress.server.BaseWSGIServer)
        else [
            d
            for d in server.map.values()
            if isinstance(d, waitress.server.BaseWSGIServer)
        ]
    )
    for listener in listeners:
        listener.channel_class = NoSpinChannel
        accept_bursts(listener)
        close_late_requests(listener, config.request_timeout)
        host = listener.effective_host
        log.info(
            "timercheck serving on http://%s:%s with %s, %d threads,"
            " up to %d connections, shedding requests that waited over %d ms",
            f"[{host}]" if ":" in host else host,
            listener.effective_port,
            store_label(config),
            config.workers,
            config.connection_limit,
            round(app.max_wait * 1000),
        )
    dispatcher.set_thread_count(config.workers)
    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=probe, args=(app,), daemon=True).start()
    stopping = threading.Event()
    threading.Thread(target=follow_secret, args=(app, stopping), daemon=True).start()
    flusher = threading.Thread(
        target=flush_often, args=(sys.stdout, stopping), daemon=True
    )
    flusher.start()
    if isinstance(store.store, SqliteStore) and not read_only:
        threading.Thread(
            target=purge_forgotten, args=(store.store, stopping), daemon=True
        ).start()
    with buffered(sys.stdout):
        try:
            server.run()  # on SystemExit, waitress stops its workers and returns
        finally:
            stopping.set()
            flusher.join()
    log.info("timercheck stopped")
    return 0


def thread_failed(failure: threading.ExceptHookArgs) -> None:
    """A thread's uncaught error is a log line like any other (escaped, cut),
    not Python's multi-line report on stderr."""
    if failure.exc_type is not SystemExit:
        log.error(
            "thread %s: unexpected error",
            failure.thread.name if failure.thread else "?",
            exc_info=(failure.exc_type, failure.exc_value, failure.exc_traceback),
        )


def print_hash(
    config: Config, name: str | None, parser: argparse.ArgumentParser
) -> int:
    """Print the keyed hash that access lines give the timer `name`, from
    the store's secret, as the server reads it."""
    if not name or not NAME.fullmatch(name):
        parser.error(f"hash needs a timer's name: {BAD_NAME}")
    app = App(make_store(config))
    try:
        app.refresh_token_keys()
    except StoreUnavailable as e:
        log.error("cannot read the store's secret: %s", e)
        return 1
    print(app.name_hash(name))
    return 0


def settings_help() -> str:
    lines = ["settings, from the environment (an empty value counts as unset):"]
    for setting in SETTINGS:
        default = "unset" if setting.default is None else setting.default
        lines.append(f"  {setting.name}")
        lines.append(f"      {setting.meaning}")
        lines.append(f"      default: {default}; allowed: {setting.allowed()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "create-table", "hash"],
        help="serve HTTP (the default), create the DynamoDB table TABLE_NAME,"
        " or print the hash that log lines give the timer NAME",
    )
    parser.add_argument("name", nargs="?", help="the timer's name, for hash")
    given = sys.argv[1:] if argv is None else argv
    for n, arg in enumerate(given):
        option, _, value = arg.partition("=")
        setting = option.lstrip("-").upper().replace("-", "_")
        if option.startswith("-") and setting in {s.name for s in SETTINGS}:
            value = value or (given[n + 1] if n + 1 < len(given) else "...")
            parser.error(
                f"{option} is not an option: settings come from the environment,"
                f" as in {setting}={value} python timercheck.py"
            )
    args = parser.parse_args(argv)
    try:
        config = Config.from_env()
    except ConfigError as e:
        parser.error(str(e))
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(SafeLines())
    threading.excepthook = thread_failed
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    try:
        if args.command == "hash":
            return print_hash(config, args.name, parser)
        if args.name:
            parser.error(f"{args.command} takes no name")
        if args.command == "create-table":
            if not config.table_name:
                parser.error("create-table needs TABLE_NAME")
            dynamo_store(config).create_table()
            log.info("table %s is ready", config.table_name)
            return 0
        return serve(config)
    except (botocore.exceptions.BotoCoreError, ClientError) as e:
        log.error("cannot use DynamoDB: %s", e)
        return 1
    except ConfigError as e:  # a proxy it cannot use, found with the endpoint
        parser.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
