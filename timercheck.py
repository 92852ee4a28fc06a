"""timercheck: countdown timers over HTTP, a dead man's switch for cron jobs.

GET    /                   200 OK, for load balancer health checks
GET    /{timer}            200 while running, 504 once expired, 404 if never set
GET    /{timer}/{seconds}  start or restart the countdown (POST and PUT too)
DELETE /{timer}            forget the timer

python timercheck.py [serve | create-table]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import queue
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any, NamedTuple, Protocol

import boto3
import botocore.config
import botocore.exceptions
import waitress

log = logging.getLogger("timercheck")
access_log = logging.getLogger("timercheck.access")


# -- config --


@dataclass(frozen=True)
class Config:
    table_name: str | None = None  # set: DynamoDB; unset: the SQLite file
    sqlite_path: str = "timercheck.db"
    region: str | None = None
    retention_days: int = 30
    host: str = "0.0.0.0"
    port: int = 8080
    threads: int = 8
    channel_timeout: int = 75  # above the ALB's 60 s idle timeout
    connection_limit: int = 1000
    trusted_proxy: str | None = None
    trusted_proxy_count: int = 1
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        def integer(name: str, default: int) -> int:
            return int(env.get(name) or default)

        return cls(
            table_name=env.get("TABLE_NAME") or None,
            sqlite_path=env.get("TIMERCHECK_DB") or cls.sqlite_path,
            region=env.get("REGION") or env.get("AWS_REGION") or None,
            retention_days=integer("TIMERCHECK_RETENTION_DAYS", cls.retention_days),
            host=env.get("HOST") or cls.host,
            port=integer("PORT", cls.port),
            threads=integer("TIMERCHECK_THREADS", cls.threads),
            channel_timeout=integer("TIMERCHECK_CHANNEL_TIMEOUT", cls.channel_timeout),
            connection_limit=integer(
                "TIMERCHECK_CONNECTION_LIMIT", cls.connection_limit
            ),
            trusted_proxy=env.get("TIMERCHECK_TRUSTED_PROXY") or None,
            trusted_proxy_count=integer(
                "TIMERCHECK_TRUSTED_PROXY_COUNT", cls.trusted_proxy_count
            ),
            log_level=(env.get("LOG_LEVEL") or cls.log_level).upper(),
        )


# -- timers --

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
RESERVED_NAMES = frozenset({"robots.txt"})
SECONDS = re.compile(r"([0-9]{1,10})([smhdw]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SECONDS = 999_999_999
CONTROL = re.compile(r"[\x00-\x20\x7f]")
BAD_PATH = "400: the path must be /{timer} or /{timer}/{seconds}"


class Timer(NamedTuple):
    name: str
    start_ms: int  # epoch milliseconds
    seconds: int
    expires_at: int  # epoch seconds after which the timer reads as never set

    def elapsed(self, now_ms: int) -> int:
        # Clamped: another task's clock may run slightly ahead of ours.
        return max(0, now_ms - self.start_ms) // 1000

    def remaining(self, now_ms: int) -> int:
        # <= 0 exactly when now >= start + seconds (TimerCheck.io's rule).
        return self.seconds - self.elapsed(now_ms)

    def state(self, now_ms: int) -> str:
        return "running" if self.remaining(now_ms) > 0 else "expired"

    def describe(self, now_ms: int) -> dict[str, Any]:
        elapsed = self.elapsed(now_ms)
        return {
            "start_time": self.start_ms // 1000,
            "start_seconds": self.seconds,
            "seconds_elapsed": elapsed,
            "seconds_remaining": self.seconds - elapsed,
        }


# -- storage --


class StoreUnavailable(Exception):
    """The store could not answer: down, throttled, locked, misconfigured."""


class Store(Protocol):
    def get(self, name: str) -> Timer | None: ...

    def put(self, timer: Timer) -> Timer | None:
        """Store the timer and return the one it replaced."""

    def delete(self, name: str) -> Timer | None:
        """Remove the timer and return it."""


class SqliteStore:
    """Timers in one SQLite file: WAL, one connection per thread, one writer."""

    def __init__(self, path: str, timeout: float = 2.0) -> None:
        self.path, self.timeout = path, timeout
        self._local = threading.local()
        # Our own threads queue here instead of in SQLite's sleeping busy
        # handler; the busy timeout then only waits for other processes.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=self.timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=self.path.startswith("file:"),
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # Under WAL, NORMAL survives a crash of the process (not of the OS).
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS timers (timer TEXT PRIMARY KEY,"
                " start_ms INTEGER NOT NULL, seconds INTEGER NOT NULL,"
                " expires_at INTEGER NOT NULL, old_start_ms INTEGER,"
                " old_seconds INTEGER, old_expires_at INTEGER)"
            )
        except BaseException:
            db.close()
            raise
        return db

    def _run(self, sql: str, args: tuple[Any, ...], write: bool) -> Any:
        if write and not self._write_lock.acquire(timeout=self.timeout):
            raise StoreUnavailable("sqlite: timed out waiting for the write lock")
        try:
            db = getattr(self._local, "db", None)
            if db is None:
                db = self._local.db = self._connect()
            return db.execute(sql, args).fetchone()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"sqlite: {e}") from e
        finally:
            if write:
                self._write_lock.release()

    def get(self, name: str) -> Timer | None:
        row = self._run(GET_SQL, (name,), write=False)
        return Timer(name, *row) if row else None

    def put(self, timer: Timer) -> Timer | None:
        row = self._run(PUT_SQL, timer, write=True)
        return Timer(timer.name, *row) if row[0] is not None else None

    def delete(self, name: str) -> Timer | None:
        row = self._run(DELETE_SQL, (name,), write=True)
        return Timer(name, *row) if row else None


GET_SQL = "SELECT start_ms, seconds, expires_at FROM timers WHERE timer = ?"
# One statement, so one transaction: the update's right-hand sides read the
# row as it was, and RETURNING hands back the timer this put replaced.
PUT_SQL = """
    INSERT INTO timers (timer, start_ms, seconds, expires_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (timer) DO UPDATE SET
        old_start_ms = start_ms, old_seconds = seconds, old_expires_at = expires_at,
        start_ms = excluded.start_ms, seconds = excluded.seconds,
        expires_at = excluded.expires_at
    RETURNING old_start_ms, old_seconds, old_expires_at
"""
DELETE_SQL = (
    "DELETE FROM timers WHERE timer = ? RETURNING start_ms, seconds, expires_at"
)


def dynamodb_client(region: str | None = None, pool: int = 10) -> Any:
    """One client for the whole process: creating one costs over 100 ms."""
    config = botocore.config.Config(
        connect_timeout=1,
        read_timeout=1.5,
        retries={"mode": "standard", "total_max_attempts": 2},
        max_pool_connections=pool,
        parameter_validation=False,
    )
    return boto3.session.Session().client("dynamodb", region_name=region, config=config)


class DynamoStore:
    """Timers in a DynamoDB table, one item per timer, hash key `timer`."""

    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self.client = client or dynamodb_client()

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, operation)(TableName=self.table, **kwargs)
        except (botocore.exceptions.BotoCoreError, ClientError) as e:
            raise StoreUnavailable(f"dynamodb {operation}: {error_code(e)}") from e

    def get(self, name: str) -> Timer | None:
        answer = self._call("get_item", Key=key(name), ConsistentRead=True)
        return from_item(name, answer.get("Item"))

    def put(self, timer: Timer) -> Timer | None:
        item = {
            "timer": {"S": timer.name},
            "start_time": {
                "N": f"{timer.start_ms // 1000}.{timer.start_ms % 1000:03d}"
            },
            "start_seconds": {"N": str(timer.seconds)},
            "expires_at": {"N": str(timer.expires_at)},
        }
        answer = self._call("put_item", Item=item, ReturnValues="ALL_OLD")
        return from_item(timer.name, answer.get("Attributes"))

    def delete(self, name: str) -> Timer | None:
        answer = self._call("delete_item", Key=key(name), ReturnValues="ALL_OLD")
        return from_item(name, answer.get("Attributes"))

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


ClientError = botocore.exceptions.ClientError


def error_code(e: Exception) -> str:
    if isinstance(e, ClientError):
        return e.response.get("Error", {}).get("Code", "ClientError")
    return type(e).__name__


def key(name: str) -> dict[str, dict[str, str]]:
    return {"timer": {"S": name}}


def from_item(name: str, item: dict[str, Any] | None) -> Timer | None:
    if not item:
        return None
    return Timer(
        name,
        int(Decimal(item["start_time"]["N"]) * 1000),
        int(item["start_seconds"]["N"]),
        int(item["expires_at"]["N"]) if "expires_at" in item else 2**62,
    )


class Breaker:
    """Fails fast while the store is down, so that store calls stuck on their
    timeouts cannot take every waitress thread (and with them `GET /`).

    The store counts as down after `failures` failures in a row (then calls
    fail at once for `pause` seconds, after which one call at a time probes
    it), or while two calls have been waiting on it for over `stuck` seconds.
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

    def _check(self) -> float:
        now = self.clock()
        if self._failed >= self.failures:
            with self._lock:
                if now < self._closed_until:
                    raise StoreUnavailable("store down: failing fast")
                self._closed_until = now + self.pause  # this call is the probe
        if len(self._waiting) >= 2:
            started = list(self._waiting.values())
            if sum(now - t > self.stuck for t in started) >= 2:
                raise StoreUnavailable("store not answering: failing fast")
        return now

    def _call(self, method: Callable[[Any], Any], arg: Any) -> Any:
        now = self._check()
        try:
            self._slots.get(timeout=0.25)
        except queue.Empty:
            raise StoreUnavailable("every store slot is busy") from None
        me = threading.get_ident()
        self._waiting[me] = now
        try:
            result = method(arg)
        except StoreUnavailable:
            with self._lock:
                self._failed += 1
                if self._failed >= self.failures:
                    self._closed_until = self.clock() + self.pause
            raise
        finally:
            del self._waiting[me]
            self._slots.put(None)
        if self._failed:
            with self._lock:
                self._failed = 0
        return result

    def get(self, name: str) -> Timer | None:
        return self._call(self.store.get, name)

    def put(self, timer: Timer) -> Timer | None:
        return self._call(self.store.put, timer)

    def delete(self, name: str) -> Timer | None:
        return self._call(self.store.delete, name)


def make_store(config: Config) -> Store:
    if config.table_name:
        client = dynamodb_client(config.region, pool=config.threads + 2)
        store: Store = DynamoStore(config.table_name, client)
    else:
        store = SqliteStore(config.sqlite_path)
    return Breaker(store, slots=max(1, config.threads - 2))


def describe_store(config: Config) -> str:
    if config.table_name:
        return f"dynamodb table={config.table_name}"
    return f"sqlite path={config.sqlite_path}"


# -- http --


class HTTPError(Exception):
    def __init__(
        self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, list(headers)


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str
    state: str | None = None  # X-Timer-Status: running, expired or never-set
    headers: list[tuple[str, str]] = field(default_factory=list)


def valid_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise HTTPError(
            400,
            "400: a timer name is 1 to 128 characters from A-Z a-z 0-9 . _ ~ -"
            " and starts with a letter or digit",
        )
    if name in RESERVED_NAMES:
        raise HTTPError(400, "400: that timer name is reserved")
    return name


def parse_seconds(text: str) -> int:
    match = SECONDS.fullmatch(text)
    if not match:
        raise HTTPError(
            400,
            "400: seconds must be 1 to 10 digits, optionally followed by one"
            " unit s, m, h, d or w (90, 90s, 70m, 25h, 7d, 2w)",
        )
    seconds = int(match[1]) * UNITS[match[2]]
    if seconds > MAX_SECONDS:
        raise HTTPError(400, f"400: seconds must be at most {MAX_SECONDS} in all")
    return seconds


def never_set(name: str) -> Reply:
    return Reply(
        404,
        {"timer": name, "errorMessage": "404: timer has never been set"},
        "never-set",
    )


def check_reply(timer: Timer, now_ms: int, message: str | None = None) -> Reply:
    body = {"timer": timer.name, "status": "ok", "now": now_ms // 1000}
    body.update(timer.describe(now_ms))
    if timer.remaining(now_ms) > 0:
        body["message"] = message or "Timer still running"
        return Reply(200, body, "running")
    body["status"] = "expired"
    body["message"] = message or "Timer timed out"
    if message:
        return Reply(200, body, "expired")
    body["errorMessage"] = "timer timed out"
    return Reply(504, body, "expired")


def health(app: App, now_ms: int) -> Reply:
    return Reply(200, "OK")


def robots(app: App, now_ms: int) -> Reply:
    return Reply(200, "User-agent: *\nDisallow: /\n")


def check_timer(app: App, now_ms: int, name: str) -> Reply:
    timer = app.live(app.store.get(valid_name(name)), now_ms)
    return check_reply(timer, now_ms) if timer else never_set(name)


def peek_timer(app: App, now_ms: int, name: str, seconds: str) -> Reply:
    """HEAD of a set URL: link checkers send it, so it must set nothing."""
    valid_name(name)
    parse_seconds(seconds)
    return check_timer(app, now_ms, name)


def set_timer(app: App, now_ms: int, name: str, seconds: str) -> Reply:
    name, count = valid_name(name), parse_seconds(seconds)
    timer = Timer(name, now_ms, count, now_ms // 1000 + count + app.retention)
    old = app.live(app.store.put(timer), now_ms)
    body = {
        "timer": name,
        "status": "ok",
        "now": now_ms // 1000,
        "message": "Timer countdown updated",
        "new_start_time": now_ms // 1000,
        "new_start_seconds": timer.seconds,
    }
    if old:
        body.update(old.describe(now_ms))
    return Reply(200, body, timer.state(now_ms))


def delete_timer(app: App, now_ms: int, name: str) -> Reply:
    timer = app.live(app.store.delete(valid_name(name)), now_ms)
    return check_reply(timer, now_ms, "Timer deleted") if timer else never_set(name)


ROUTES: list[tuple[re.Pattern[str], dict[str, Callable[..., Reply]]]] = [
    (re.compile(r"/"), {"GET": health, "HEAD": health}),
    (re.compile(r"/robots\.txt"), {"GET": robots, "HEAD": robots}),
    (
        re.compile(r"/([^/]*)"),
        {"GET": check_timer, "HEAD": check_timer, "DELETE": delete_timer},
    ),
    (
        re.compile(r"/([^/]*)/([^/]*)"),
        {"GET": set_timer, "HEAD": peek_timer, "POST": set_timer, "PUT": set_timer},
    ),
]
STATUS_LINES = {s.value: f"{s.value} {s.phrase}" for s in HTTPStatus}
JSON = json.JSONEncoder(separators=(",", ":"))


class App:
    """The WSGI application. The store and the clock are injected."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        retention_days: int = 30,
    ) -> None:
        self.store, self.clock = store, clock
        self.retention = retention_days * 86400

    def live(self, timer: Timer | None, now_ms: int) -> Timer | None:
        """The timer, unless its retention has run out (the TTL may lag)."""
        if timer is None or now_ms >= timer.expires_at * 1000:
            return None
        return timer

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        started = time.perf_counter()
        request_id = os.urandom(8).hex()
        method = environ["REQUEST_METHOD"]
        handler_name, name = "-", None
        try:
            handler, args = route(
                method, environ.get("PATH_INFO") or "/", environ.get("REQUEST_URI", "")
            )
            handler_name, name = handler.__name__, args[0] if args else None
            reply = handler(self, round(self.clock() * 1000), *args)
        except HTTPError as e:
            reply = Reply(e.status, {"errorMessage": e.message}, headers=e.headers)
        except StoreUnavailable as e:
            log.warning("request %s: store unavailable: %s", request_id, e)
            reply = Reply(
                503,
                {"errorMessage": "503: timer store unavailable"},
                headers=[("Retry-After", "5")],
            )
        except Exception:
            log.exception("request %s: unhandled error", request_id)
            reply = Reply(500, {"errorMessage": "500: server error"})
        if isinstance(reply.body, str):
            content_type, data = "text/plain", reply.body.encode()
        else:
            reply.body["request_id"] = request_id
            content_type = "application/json"
            data = JSON.encode(reply.body).encode()
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("X-Request-Id", request_id),
            *reply.headers,
        ]
        if reply.state:
            headers.append(("X-Timer-Status", reply.state))
        start_response(STATUS_LINES[reply.status], headers)
        access_log.info(
            "%s %s %s %s %d %.1fms %s",
            request_id,
            method,
            handler_name,
            name_hash(name),
            reply.status,
            (time.perf_counter() - started) * 1000,
            environ.get("REMOTE_ADDR", "-"),
        )
        return [b""] if method == "HEAD" else [data]


def route(
    method: str, path: str, raw_target: str
) -> tuple[Callable[..., Reply], tuple[str, ...]]:
    """The handler for a request and the parts of the path it takes."""
    # waitress decodes %2F before the app sees the path, drops tabs from it,
    # and reads //x/5 as host x, path /5: a name must not turn into two path
    # segments or into another name.
    raw_path = raw_target.partition("?")[0]
    if raw_path.startswith("//"):
        raise HTTPError(400, BAD_PATH)
    if "%2f" in raw_path.lower() or CONTROL.search(raw_path):
        valid_name("/")
    for pattern, methods in ROUTES:
        if match := pattern.fullmatch(path):
            if method not in methods:
                allow = ", ".join(methods)
                raise HTTPError(405, "405: method not allowed", [("Allow", allow)])
            return methods[method], match.groups()
    raise HTTPError(400, BAD_PATH)


def name_hash(name: str | None) -> str:
    """Logs name a timer by a short hash: anyone who knows a name can reset it."""
    return hashlib.blake2b(name.encode(), digest_size=4).hexdigest() if name else "-"


# -- entry point --


def server_options(config: Config) -> dict[str, Any]:
    """waitress's settings for this service (the benchmark serves with them too)."""
    options: dict[str, Any] = {
        "host": config.host,
        "port": config.port,
        "threads": config.threads,
        "ident": "timercheck",
        "channel_timeout": config.channel_timeout,
        "cleanup_interval": 1,  # else idle channels outlive channel_timeout by 30 s
        "connection_limit": config.connection_limit,
        "max_request_body_size": 16384,
        "asyncore_use_poll": True,
        "clear_untrusted_proxy_headers": True,
    }
    if config.trusted_proxy:
        options["trusted_proxy"] = config.trusted_proxy
        options["trusted_proxy_count"] = config.trusted_proxy_count
        options["trusted_proxy_headers"] = "x-forwarded-for x-forwarded-proto"
    return options


def serve(config: Config) -> None:
    app = App(make_store(config), retention_days=config.retention_days)
    server = waitress.create_server(app, **server_options(config))
    signal.signal(signal.SIGTERM, stop)
    log.info(
        "timercheck serving on http://%s:%s with %s",
        server.effective_host,
        server.effective_port,
        describe_store(config),
    )
    try:
        server.run()  # returns on SystemExit, having closed the sockets
    finally:
        server.task_dispatcher.shutdown(timeout=5)
    log.info("timercheck stopped")


def stop(signum: int, frame: object) -> None:
    # As PID 1 in a container, waitress would ignore SIGTERM.
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "create-table"],
        help="serve HTTP (the default), or create the DynamoDB table TABLE_NAME",
    )
    args = parser.parse_args(argv)
    config = Config.from_env()
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # An access line for every request: skip what our format never shows.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    try:
        if args.command == "create-table":
            if not config.table_name:
                parser.error("create-table needs TABLE_NAME")
            DynamoStore(
                config.table_name, dynamodb_client(config.region)
            ).create_table()
            log.info("table %s is ready", config.table_name)
        else:
            serve(config)
    except (botocore.exceptions.BotoCoreError, ClientError) as e:
        log.error("cannot use DynamoDB: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
