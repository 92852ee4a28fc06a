"""The entry point: serve and main, start and stop, the log and its lines,
the threads beside the server, and the open-file limit."""

from __future__ import annotations

import io
import logging
import os
import re
import resource
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from webtest import TestApp

import timercheck
from fakes import (
    FailingStore,
    FakeClock,
    Limits,
    Rounds,
)
from support import (
    ROOT,
    Process,
    call,
    clients,
    dynamo_env,
    free_port,
    main_exits,
    moto_server,
    rows,
    service,
    start,
)
from timercheck import (
    App,
    Breaker,
    Config,
    DynamoDB,
    DynamoStore,
    SafeLines,
    SqliteStore,
    StoreUnavailable,
    Timer,
    access_writer,
    fit_open_files,
    flush_often,
    make_store,
    printable,
    probe,
    purge_forgotten,
)


def test_default_store_is_sqlite(tmp_path: Any, clock: FakeClock) -> None:
    store = make_store(Config(sqlite_path=str(tmp_path / "t.db")))
    TestApp(App(store, clock)).get("/job/60")
    assert (tmp_path / "t.db").exists()


def test_the_default_sqlite_store_waits_2_seconds_for_another_process(
    tmp_path: Any,
) -> None:
    """As the README says; SQLite reports its own busy timeout."""
    store = make_store(Config(sqlite_path=str(tmp_path / "t.db"))).store
    assert store._run("PRAGMA busy_timeout", (), write=False) == (2000,)


def run_probe(app: App, **kwargs: Any) -> None:
    """The probe retries until the store answers: give up on it after 5 s."""
    thread = threading.Thread(target=probe, args=(app,), kwargs=kwargs, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "the probe never saw the store answer"


def test_start_up_probe_says_whether_the_store_answers(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck")
    app = App(store)
    assert app.name_hash("job") == "?"
    run_probe(app)
    assert re.fullmatch(r"[0-9a-f]{24}", app.name_hash("job"))
    flaky = FailingStore(StoreUnavailable("sqlite: unable to open database file"))
    fail = flaky.get

    def get(*args: Any) -> None:  # down for three tries: said once
        try:
            return fail(*args)
        finally:
            flaky.down = flaky.calls < 3

    flaky.get = get  # type: ignore[method-assign]
    waits: list[float] = []
    run_probe(App(flaky), sleep=waits.append)
    assert waits == [5.0, 5.0, 5.0]  # tries again every 5 s
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.INFO, "the timer store answers"),
        (
            logging.ERROR,
            "the timer store is unavailable: sqlite: unable to open database file",
        ),
        (logging.INFO, "the timer store answers"),
    ]


def test_an_access_line_is_stamped_to_the_millisecond(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, "timercheck.access")
    stream = io.StringIO()
    write = access_writer(stream)
    monkeypatch.setattr(timercheck.time, "time", lambda: 1795929826.9995)
    write("a line")
    second = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1795929826))
    assert stream.getvalue() == f"{second},999 INFO timercheck.access a line\n"


def test_the_server_writes_access_lines_in_the_log_format(
    store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck.access")
    stream = io.StringIO()
    app = TestApp(
        App(store, clock, access=access_writer(stream)),
        extra_environ={"REMOTE_ADDR": "127.0.0.1"},
    )
    app.get("/secret-timer-name/60")
    app.get("/")
    first, second = stream.getvalue().splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO timercheck.access [0-9a-f]{16}"
        r" GET set_timer [0-9a-f]{24} 200 \d+\.\dms 127\.0\.0\.1",
        first,
    )
    assert second.endswith(" GET health - 200 " + second.split()[-2] + " 127.0.0.1")


def test_access_lines_follow_the_log_level(
    store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "timercheck.access")
    stream = io.StringIO()
    TestApp(App(store, clock, access=access_writer(stream))).get("/")
    assert stream.getvalue() == ""


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = start({"PORT": str(port)}, tmp_path)
    assert result.returncode == 1
    [line] = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "ERROR" in line or "Traceback" in line
    ]
    assert line.endswith(
        f"cannot listen on 127.0.0.1 port {port}: Address already in use"
    )


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("no-such-host.invalid", "Name or service not known"),
        ("192.0.2.1", "Cannot assign"),
    ],
)
def test_a_host_it_cannot_listen_on_is_one_line(
    tmp_path: Path, host: str, reason: str
) -> None:
    result = start({"HOST": host, "PORT": "0"}, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert f"ERROR timercheck cannot listen on {host} port 0: {reason}" in result.stdout


def test_it_listens_on_localhost_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOST", raising=False)
    port = free_port()
    env = {"TIMERCHECK_DB": str(tmp_path / "t.db"), "PORT": str(port)}
    with Process([sys.executable, str(ROOT / "timercheck.py")], env, port) as server:
        assert f"serving on http://127.0.0.1:{port} " in server.output()


def serve_here(config: Config, client: Callable[[], None]) -> int:
    """serve() as main calls it, but in this process, so that what it wires
    together is seen by coverage and mutation testing: `client` runs in a
    thread meanwhile, then SIGTERM stops the server."""
    import signal
    import threading

    from timercheck import serve, stop

    def run_client() -> None:
        try:
            client()
        finally:
            if signal.getsignal(signal.SIGTERM) is stop:  # else serve has ended
                os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=run_client)
    thread.start()
    try:
        return serve(config)
    finally:
        signal.signal(signal.SIGTERM, previous)
        thread.join(15)


def health(host: str, port: int) -> bytes:
    """GET / once the server answers, trying for up to 10 s."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return call(port, "GET", "/", timeout=2, host=host).body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_serve_in_this_process_answers_logs_and_stops_on_sigterm(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    import timercheck
    from fakes import Limits

    caplog.set_level(logging.INFO, "timercheck")
    port, path = free_port(), str(tmp_path / "t.db")
    config = Config(
        port=port,
        sqlite_path=path,
        threads=3,
        retention_days=2,
        connection_limit=8000,
        max_wait_ms=500,
    )
    monkeypatch.setattr(timercheck, "resource", Limits(256, 2048))
    seen: dict[str, Any] = {}

    def client() -> None:
        seen["health"] = health("127.0.0.1", port)
        seen["set"] = call(port, "GET", "/job/60", timeout=5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
            r.getMessage() == "the timer store answers" for r in caplog.records
        ):
            time.sleep(0.05)  # the start-up probe runs in a thread of its own
        seen["threads"] = [t.name for t in threading.enumerate()]

    assert serve_here(config, client) == 0
    assert seen["health"] == b"OK"
    assert seen["set"].status == 200 and seen["set"].json["status"] == "ok"
    with sqlite3.connect(path) as db:  # remembered 2 days past its expiry
        [(kept,)] = db.execute("SELECT expires_at - start_ms / 1000 - 60 FROM timers")
    assert kept == 2 * 86400
    waitress_threads = [n for n in seen["threads"] if n.startswith("waitress-")]
    assert len(waitress_threads) == 3
    assert any(n.endswith("(purge_forgotten)") for n in seen["threads"])
    said = [r.getMessage() for r in caplog.records if r.name == "timercheck"]
    # The hard limit of 2,048 open files holds 1,969 connections: 64 spare,
    # and 3 for each of the 3 threads and the purge and secret threads.
    assert (
        f"timercheck serving on http://127.0.0.1:{port} with sqlite path={path},"
        " 3 threads, up to 1969 connections, shedding requests that waited over"
        " 500 ms"
    ) in said
    assert "the timer store answers" in said
    assert said[-1] == "timercheck stopped"
    [access] = [
        line for line in capsys.readouterr().out.splitlines() if "set_timer" in line
    ]
    assert " timercheck.access " in access and " 200 " in access


def test_serve_listens_on_every_address_of_its_host_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with two addresses (localhost has two where IPv6 is on)."""
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "timers.test":
            return real("127.0.0.1", *args, **kwargs) + real(
                "127.0.0.2", *args, **kwargs
            )
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    caplog.set_level(logging.INFO, "timercheck")
    port, answers = free_port(), []
    config = Config(host="timers.test", port=port, sqlite_path=str(tmp_path / "t.db"))

    def client() -> None:
        answers.extend(health(address, port) for address in ("127.0.0.1", "127.0.0.2"))

    assert serve_here(config, client) == 0
    assert answers == [b"OK", b"OK"]
    said = [r.getMessage() for r in caplog.records if "serving on" in r.getMessage()]
    assert [line.split()[3] for line in said] == [
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.2:{port}",
    ]


def ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_serve_names_an_ipv6_address_in_brackets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "timercheck")
    port, answers = free_port(), []
    config = Config(host="::1", port=port, sqlite_path=str(tmp_path / "t.db"))
    assert serve_here(config, lambda: answers.append(health("::1", port))) == 0
    assert answers == [b"OK"]
    said = [r.getMessage() for r in caplog.records if "serving on" in r.getMessage()]
    assert [line.split()[3] for line in said] == [f"http://[::1]:{port}"]


def test_the_sigterm_handler_exits_with_0() -> None:
    from timercheck import stop

    with pytest.raises(SystemExit) as stopped:
        stop(15, None)
    assert stopped.value.code == 0


def test_create_table_needs_a_table_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TABLE_NAME", raising=False)
    code, _, err = main_exits(["create-table"], capsys)
    assert code == 2
    assert err.splitlines()[-1].endswith("error: create-table needs TABLE_NAME")


def test_help_says_what_the_service_is_what_it_runs_and_its_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = main_exits(["--help"], capsys)
    assert code == 0
    first = "timercheck: countdown timers over HTTP, a dead man's switch for cron jobs."
    assert out.splitlines()[2:5] == [first, "", "positional arguments:"]
    assert (
        "{serve,create-table,hash} serve HTTP (the default), create the DynamoDB"
        " table TABLE_NAME, or print the hash that log lines give the timer NAME"
        " name the timer's name, for hash options:"
    ) in " ".join(out.split())
    assert (  # the settings keep their own lines
        "settings, from the environment (an empty value counts as unset):\n"
        "  TABLE_NAME\n"
        "      DynamoDB table of timers; unset: the SQLite file\n"
        "      default: unset; allowed: any text\n"
    ) in out


def test_an_unknown_command_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = main_exits(["bogus"], capsys)
    assert code == 2
    assert "error: argument command: invalid choice: 'bogus'" in err


def test_a_bad_setting_stops_main_with_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "http")
    code, _, err = main_exits([], capsys)
    assert code == 2
    assert err.splitlines()[-1].endswith(
        "error: PORT='http': not a whole number; allowed: 0 to 65535"
    )


def test_create_table_makes_the_table_and_says_so(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:

    from timercheck import main

    caplog.set_level(logging.INFO, "timercheck")
    monkeypatch.setenv("TABLE_NAME", "made")
    monkeypatch.setenv("REGION", "us-east-1")
    assert main(["create-table"]) == 0
    assert caplog.messages[-1] == "table made is ready"
    client = boto3.client("dynamodb", region_name="us-east-1")
    assert client.describe_table(TableName="made")["Table"]["TableStatus"] == "ACTIVE"


def test_create_table_without_dynamodb_is_one_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from timercheck import main

    for name, value in {
        "TABLE_NAME": "t",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{free_port()}",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["create-table"]) == 1
    [error] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert error.startswith("cannot use DynamoDB: Could not connect to the endpoint")


def test_debug_logs_each_store_call_without_the_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from timercheck import SqliteStore, Timer

    store = Breaker(SqliteStore(str(tmp_path / "t.db")))
    with caplog.at_level(logging.DEBUG, logger="timercheck"):
        store.put(Timer("secret-name", 1_000, 60, 10**9))
        store.get("secret-name")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(lines) == 2
    assert re.fullmatch(r"store put: \d+\.\d ms", lines[0])
    assert re.fullmatch(r"store get: \d+\.\d ms", lines[1])
    assert "secret-name" not in caplog.text


@pytest.mark.parametrize(
    "path, reason",
    [
        ("{tmp}/no/such/dir/t.db", "(no such directory: {tmp}/no/such/dir)"),
        ("{tmp}", "(it is a directory)"),
        ("file:{tmp}/none.db?mode=ro", "(no such file)"),
    ],
)
def test_a_sqlite_file_that_cannot_be_opened_stops_the_start(
    tmp_path: Path, path: str, reason: str
) -> None:
    path, reason = path.format(tmp=tmp_path), reason.format(tmp=tmp_path)
    result = start({"TIMERCHECK_DB": path, "PORT": "0"}, tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "serving on" not in output
    [line] = [line for line in output.splitlines() if "ERROR" in line]
    assert line.endswith(
        f"ERROR timercheck cannot open the SQLite database {path}:"
        f" unable to open database file {reason}"
    )


def test_a_read_only_database_warns_then_serves_checks(tmp_path: Path) -> None:
    from webtest import TestApp

    from timercheck import App, SqliteStore

    path = tmp_path / "t.db"
    TestApp(App(SqliteStore(str(path)))).get("/job/600")
    uri = f"file:{path}?mode=ro"
    with Process(
        [sys.executable, str(ROOT / "timercheck.py")],
        {"TIMERCHECK_DB": uri, "PORT": str(port := free_port())},
        port,
    ) as server:
        assert call(port, "GET", "/").status == 200
        assert call(port, "GET", "/job").status == 200
        assert call(port, "GET", "/job/60").status == 503
        assert call(port, "GET", "/job").json["start_seconds"] == 600
        output = server.output()
    warning = next(line for line in output.splitlines() if "WARNING" in line)
    assert output.index(warning) < output.index("serving on")
    assert warning.endswith(
        f"the SQLite database {uri} cannot be written (attempt to write a"
        " readonly database): checks answer, every set, reset and delete will"
        " answer 503"
    )


def test_a_database_others_can_read_is_one_warning_at_start(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    with Process(
        [sys.executable, str(ROOT / "timercheck.py")],
        {"TIMERCHECK_DB": f"file:{path}", "PORT": str(port := free_port())},
        port,
    ) as server:
        assert call(port, "GET", "/job/60").status == 200
        output = server.output()
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    assert len(warnings) == 1
    assert warnings[0].endswith(
        f"the SQLite database {path} is open to others (mode 0644): every timer"
        f" name in it can reset its timer, and it holds the secret; fix: chmod 600"
        f" {path}"
    )


def test_a_missing_table_is_named_with_the_command_that_makes_it(
    tmp_path: Path,
) -> None:

    with moto_server() as moto:
        env = {**dynamo_env(moto.port, table="forgotten"), "PORT": str(free_port())}
        with Process(
            [sys.executable, str(ROOT / "timercheck.py")], env, int(env["PORT"])
        ) as server:
            assert call(server.port, "GET", "/").status == 200
            assert call(server.port, "GET", "/job").status == 503
            deadline = time.monotonic() + 10
            while "unavailable" not in server.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(6)  # the probe tries again after 5 s, and says nothing
            output = server.output()
    [line] = [line for line in output.splitlines() if "ERROR" in line]
    assert line.endswith(
        "ERROR timercheck the timer store is unavailable: dynamodb GetItem: the"
        " table forgotten does not exist (ResourceNotFoundException): create it"
        " with `TABLE_NAME=forgotten python timercheck.py create-table`, or"
        " deploy the stack that makes it"
    )


def test_an_endpoint_it_cannot_reach_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    from timercheck import StoreUnavailable

    for name, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t"}.items():
        monkeypatch.setenv(name, value)
    port = free_port()  # nothing listens there
    client = boto3.client(
        "dynamodb", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}"
    )
    with pytest.raises(StoreUnavailable) as failed:
        DynamoStore("timers", DynamoDB(client)).get("job")
    assert str(failed.value) == (
        f"dynamodb GetItem: cannot reach http://127.0.0.1:{port}/"
        " (EndpointConnectionError)"
    )


def test_the_store_down_at_start_is_said_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same reason again after a minute; a new reason at once."""
    from timercheck import App, StoreUnavailable, probe

    reasons = ["table missing"] * 30 + ["endpoint unreachable"] * 2
    now = [0.0]

    class Down:
        def get(self, *args: object) -> None:
            if reasons:
                raise StoreUnavailable(reasons.pop(0))

        def secret(self) -> bytes:
            return bytes(32)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with caplog.at_level(logging.INFO, logger="timercheck"):
        probe(App(Down()), retry=5.0, clock=lambda: now[0], sleep=sleep)  # type: ignore[arg-type]
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    down = "the timer store is unavailable: "
    assert said == [
        ("ERROR", down + "table missing"),  # at 0 s
        ("ERROR", down + "table missing"),  # at 60 s
        ("ERROR", down + "table missing"),  # at 120 s
        ("ERROR", down + "endpoint unreachable"),  # at 150 s: a new reason
        ("INFO", "the timer store answers"),
    ]


def test_hash_prints_what_the_access_lines_say_of_a_name(tmp_path: Path) -> None:
    env = {"TIMERCHECK_DB": str(tmp_path / "t.db"), "PORT": str(free_port())}
    with Process(
        [sys.executable, str(ROOT / "timercheck.py")], env, int(env["PORT"])
    ) as server:
        assert call(server.port, "GET", "/nightly-backup/60").status == 200
        assert call(server.port, "GET", "/other/60").status == 200
    lines = [line for line in server.output().splitlines() if "set_timer" in line]
    hashed = subprocess.run(
        [sys.executable, str(ROOT / "timercheck.py"), "hash", "nightly-backup"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert hashed.returncode == 0, hashed.stderr
    name_hash = hashed.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{24}", name_hash)
    assert f" GET set_timer {name_hash} 200 " in lines[0]
    assert name_hash not in lines[1]


@pytest.mark.parametrize("argv", [["hash"], ["hash", "a/b"], ["serve", "x"]])
def test_hash_needs_a_name_and_only_hash_takes_one(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main_exits(argv, capsys)
    assert code == 2 and "name" in err


def test_a_file_in_a_folder_it_cannot_write_says_where_sqlite_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root every folder is writable, so the folder's answer is faked."""
    from timercheck import why_not_opened

    (tmp_path / "t.db").write_bytes(b"")
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: real(p, mode) and p != str(tmp_path)
    )
    assert why_not_opened(str(tmp_path / "t.db")) == (
        f" (SQLite keeps its -wal and -shm files in {tmp_path}, not writable)"
    )
    assert why_not_opened(str(tmp_path / "new.db")) == (
        f" (the directory {tmp_path} is not writable)"
    )


def test_a_thread_s_uncaught_error_is_one_log_line() -> None:
    from timercheck import thread_failed

    seen: list[tuple[str, Any]] = []

    class Seen(logging.Handler):  # before the root's handlers and their filters
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), record.exc_info))
            assert SafeLines().filter(record)
            seen.append((record.getMessage(), record.exc_info))

    def fail() -> None:
        raise RuntimeError("bad\nday")

    handler = Seen()
    logging.getLogger("timercheck").addHandler(handler)
    previous, threading.excepthook = threading.excepthook, thread_failed
    try:
        thread = threading.Thread(target=fail, name="worker")
        thread.start()
        thread.join()
    finally:
        threading.excepthook = previous
        logging.getLogger("timercheck").removeHandler(handler)
    (message, exc_info), (line, after) = seen
    assert message == "thread worker: unexpected error"
    assert exc_info and exc_info[0] is RuntimeError
    assert line.startswith(
        "thread worker: unexpected error: RuntimeError: bad\\x0aday |"
    )
    assert "\n" not in line and after is None


def test_a_traceback_is_one_escaped_line_that_says_what_went_wrong_first() -> None:
    try:
        raise KeyError("bad\nthing")
    except KeyError:
        record = logging.LogRecord(
            "timercheck", logging.ERROR, __file__, 1, "request %s: boom", ("r1",),
            sys.exc_info(),
        )  # fmt: skip
    assert SafeLines().filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert "\n" not in line.replace("\\n", "")
    assert line.startswith("request r1: boom: KeyError: 'bad\\nthing' | ")
    assert "\\x0a" in line and "test_entry_point.py" in line
    assert record.exc_info is None


def test_log_text_is_escaped_and_cut() -> None:
    assert printable("a\nb\x1b[31mc\x00\u2028", 100) == "a\\x0ab\\x1b[31mc\\x00\\x2028"
    assert printable("x" * 20, 8) == "x" * 8 + "..."


def test_every_log_line_is_cut_at_2000_characters() -> None:
    for size, logged in ((2000, "x" * 2000), (2001, "x" * 2000 + "...")):
        record = logging.LogRecord(
            "timercheck", logging.INFO, __file__, 1, "%s", ("x" * size,), None
        )
        assert SafeLines().filter(record)
        assert record.getMessage() == logged


def test_waitress_lines_never_hold_a_path() -> None:
    record = logging.LogRecord(
        "waitress", logging.INFO, __file__, 1,
        "Client disconnected while serving %s", ("/victim\n2026 INFO forged",), None,
    )  # fmt: skip
    assert SafeLines().filter(record)
    assert record.getMessage() == "Client disconnected while serving a request"


def lines_written(output: str) -> list[str]:
    return [line for line in output.splitlines() if line]


STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ ")


def test_no_log_line_can_be_forged_or_hold_a_name(tmp_path: Path) -> None:
    attacks = [
        b"GET /victim%0a2026-01-01%2000:00:00,000%20INFO%20forged/60 HTTP/1.1\r\n",
        b"GET /victim%1b[2J/60 HTTP/1.1\r\n",
        b"GET /victim%00zero/60 HTTP/1.1\r\n",
        b"GET /victim-name/60 HTTP/1.1\r\n",
        b"X" * 5000 + b" /victim-name/60 HTTP/1.1\r\n",
        b"GET\x1b[2J /victim-name HTTP/1.1\r\n",
    ]
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        for attack in attacks:
            # pipelined, then gone before the answers: waitress logs a disconnect
            request = attack + b"Host: x\r\n\r\n"
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(request * 300)
                sock.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
        assert call(server.port, "GET", "/").status == 200
        output = server.output()
    assert "Client disconnected while serving a request" in output
    assert "victim" not in output
    assert "INFO forged" not in output
    for line in lines_written(output):
        assert STAMP.match(line), line
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line), line
        assert len(line) < 2200


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


READ_ONLY = "sqlite: attempt to write a readonly database"


class Scripted(SqliteStore):
    """A real store whose purges fail, succeed or stop the loop as told."""

    def __init__(self, path: str, script: list[str]) -> None:
        super().__init__(path)
        self.script = script

    def purge(self, now: int, batch: int = 500) -> int:
        step = self.script.pop(0)
        if step == "fail":
            raise StoreUnavailable(READ_ONLY)
        return super().purge(now, batch)


def test_the_purge_loop_waits_between_rounds_and_says_once_per_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Scripted(str(tmp_path / "t.db"), ["purge", "fail", "fail", "purge", "fail"])
    for n in range(3):
        store.put(Timer(f"gone-{n}", 0, 1, 1))
    stop = Rounds(6)  # five rounds, then stopped while waiting
    purge_forgotten(store, stop, every=7.0)  # type: ignore[arg-type]
    assert stop.waits == [7.0] * 6
    assert rows(tmp_path / "t.db") == []
    said = [m for m in caplog.messages if m.startswith("cannot purge")]
    assert said == [f"cannot purge forgotten timers: {READ_ONLY}"] * 2


def test_the_purge_empties_what_expired_and_says_once_when_it_cannot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "timers.db"
    store = SqliteStore(str(path))
    store.put(Timer("gone", 0, 1, 1))  # forgotten in 1970
    store.put(Timer("kept", 0, 1, 2**40))
    purge_forgotten(store, Rounds(2))  # type: ignore[arg-type]
    assert rows(path) == ["kept"]

    read_only = SqliteStore(f"file:{path}?mode=ro")
    assert read_only.get("kept") is not None
    purge_forgotten(read_only, Rounds(4))  # type: ignore[arg-type]
    said = [m for m in caplog.messages if m.startswith("cannot purge forgotten timers")]
    assert said == [
        "cannot purge forgotten timers: sqlite: attempt to write a readonly database"
    ]


def test_access_lines_are_flushed_every_second_until_the_stop() -> None:
    stop = Rounds(4)  # stopped during the fourth wait
    flushed: list[int] = []

    class Stream:
        def flush(self) -> None:
            flushed.append(len(stop.waits))

    flush_often(Stream(), stop)  # type: ignore[arg-type]
    assert stop.waits == [1.0, 1.0, 1.0, 1.0]
    assert flushed == [1, 2, 3]  # after each wait that was not stopped


def test_an_access_line_reaches_the_log_while_the_server_idles(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        assert call(server.port, "GET", "/idle-job/60").status == 200
        deadline = time.monotonic() + 10  # a bound for a busy machine, not a timing
        while " set_timer " not in server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert " set_timer " in server.output()
        assert server.proc is not None and server.proc.poll() is None


def test_the_last_access_lines_reach_the_log_at_a_stop(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        for n in range(5):
            assert call(server.port, "GET", f"/job-{n}/60").status == 200
        assert server.stop() == 0
    sets = [line for line in server.output().splitlines() if " set_timer " in line]
    assert len(sets) == 5


def test_an_access_line_s_stamp_follows_the_clock_across_a_second(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import io
    import logging
    import re

    import timercheck

    caplog.set_level(logging.INFO, "timercheck.access")
    stream = io.StringIO()
    write = timercheck.access_writer(stream)
    for now in (1795929826.9995, 1795929826.9999, 1795929827.0004):
        monkeypatch.setattr(timercheck.time, "time", lambda now=now: now)
        write("a line")
    stamps = re.findall(r"^\S+ \S+", stream.getvalue(), re.M)
    local = [
        time.strftime("%H:%M:%S", time.localtime(t)) for t in (1795929826, 1795929827)
    ]
    assert [stamp[-12:] for stamp in stamps] == [
        f"{local[0]},999",
        f"{local[0]},999",
        f"{local[1]},000",
    ]


def test_access_lines_wait_even_unbuffered_and_a_warning_flushes_them_first(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As under PYTHONUNBUFFERED: a write-through stream is held while
    serving; a warning logged to it goes out at once, after the access lines
    before it; the stream is as it was afterwards."""
    import io
    import logging

    import timercheck

    caplog.set_level(logging.INFO, "timercheck.access")
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, write_through=True)
    logger = logging.getLogger("test_server.warnings")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        write = timercheck.access_writer(stream)
        with timercheck.buffered(stream):
            write("first")
            write("second")
            assert raw.getvalue() == b""  # held
            logger.warning("the store is down")
            lines = raw.getvalue().decode().splitlines()
            said = [line.rsplit(" ", 1)[-1] for line in lines[:2]]
            assert said == ["first", "second"]
            assert lines[2:] == ["the store is down"]
            write("third")
        assert raw.getvalue().decode().endswith(" third\n")  # flushed at the end
        assert stream.write_through
    finally:
        logger.removeHandler(handler)
