"""First contact: the service started as the README says, with good and bad
settings. Every bad value stops it with one usage error naming the variable,
never a traceback; a port or host it cannot listen on is one error line."""

from __future__ import annotations

import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import ROOT, Process, call, free_port
from timercheck import Config, ConfigError


def start(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "timercheck.py")],
        env={**os.environ, "TIMERCHECK_DB": str(tmp_path / "t.db"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TIMERCHECK_THREADS", "0", "out of range; allowed: 1 to 256"),
        ("TIMERCHECK_THREADS", "-3", "out of range; allowed: 1 to 256"),
        ("TIMERCHECK_RETENTION_DAYS", "-5", "allowed: 1 to 3650"),
        ("TIMERCHECK_RETENTION_DAYS", "0", "out of range; allowed: 1 to 3650"),
        ("PORT", "70000", "out of range; allowed: 0 to 65535"),
        ("PORT", "-1", "out of range; allowed: 0 to 65535"),
        ("PORT", "8o80", "not a whole number; allowed: 0 to 65535"),
        ("PORT", "+80", "not a whole number"),
        ("PORT", "80_80", "not a whole number"),
        ("PORT", "٨٠", "not a whole number"),
        ("PORT", " 80", "not a whole number"),
        ("PORT", "9" * 5000, "out of range"),
        ("HOST", "999.1.1.1", "not an IP address or a host name"),
        ("HOST", "bad host", "not an IP address or a host name"),
        ("LOG_LEVEL", "LOUD", "allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("TIMERCHECK_CONNECTION_LIMIT", "0", "out of range; allowed: 1 to 100000"),
        ("TIMERCHECK_MAX_WAIT_MS", "0", "out of range; allowed: 1 to 60000"),
        ("TIMERCHECK_MAX_WAIT_MS", "60001", "out of range; allowed: 1 to 60000"),
        ("TIMERCHECK_CHANNEL_TIMEOUT", "0", "out of range; allowed: 1 to 86400"),
        ("TIMERCHECK_TRUSTED_PROXY_COUNT", "0", "allowed: 1 to 10"),
        ("TIMERCHECK_DB", ":memory:", "each thread would get its own"),
        ("TIMERCHECK_DB", "file:t?mode=memory&cache=shared", "in-memory"),
        ("TIMERCHECK_DB", "file::memory:", "in-memory"),
    ],
)
def test_a_bad_setting_is_a_usage_error(
    tmp_path: Path, name: str, value: str, says: str
) -> None:
    result = start({name: value}, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"timercheck.py: error: {name}=")
    assert says in error


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


def test_the_defaults_and_every_setting_read_from_the_environment() -> None:
    assert Config.from_env({}) == Config()
    assert Config().host == "127.0.0.1" and Config().port == 8080
    assert Config().sqlite_path == "timercheck.db" and Config().table_name is None
    config = Config.from_env(
        {
            "TABLE_NAME": "timers",
            "TIMERCHECK_DB": "/data/t.db",
            "AWS_REGION": "eu-west-1",
            "TIMERCHECK_RETENTION_DAYS": "7",
            "HOST": "0.0.0.0",
            "PORT": "0",
            "TIMERCHECK_THREADS": "16",
            "TIMERCHECK_CHANNEL_TIMEOUT": "30",
            "TIMERCHECK_CONNECTION_LIMIT": "50",
            "TIMERCHECK_MAX_WAIT_MS": "500",
            "TIMERCHECK_TRUSTED_PROXY": "*",
            "TIMERCHECK_TRUSTED_PROXY_COUNT": "2",
            "LOG_LEVEL": "debug",
        }
    )
    assert config == Config(
        table_name="timers",
        sqlite_path="/data/t.db",
        region="eu-west-1",
        retention_days=7,
        host="0.0.0.0",
        port=0,
        threads=16,
        channel_timeout=30,
        connection_limit=50,
        max_wait_ms=500,
        trusted_proxy="*",
        trusted_proxy_count=2,
        log_level="DEBUG",
    )


def test_region_wins_over_aws_region_and_empty_means_unset() -> None:
    env = {"REGION": "us-west-2", "AWS_REGION": "eu-west-1", "PORT": ""}
    assert Config.from_env(env) == Config(region="us-west-2")


@pytest.mark.parametrize("value", ["0", "00", "65535", "000065535"])
def test_the_ends_of_a_range_are_allowed(value: str) -> None:
    """Up to 9 digits, leading zeros and all."""
    assert Config.from_env({"PORT": value}).port == int(value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "65536", "PORT='65536': out of range; allowed: 0 to 65535"),
        ("PORT", "1e3", "PORT='1e3': not a whole number; allowed: 0 to 65535"),
        (
            "PORT",
            "0123456789",
            "PORT='0123456789': out of range; allowed: 0 to 65535",
        ),
        (
            "PORT",
            "0000000080",
            "PORT='0000000080': out of range; allowed: 0 to 65535",
        ),
        (
            "TIMERCHECK_THREADS",
            "257",
            "TIMERCHECK_THREADS='257': out of range; allowed: 1 to 256",
        ),
        (
            "LOG_LEVEL",
            "verbose",
            "LOG_LEVEL='verbose': not a log level;"
            " allowed: DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
        (
            "HOST",
            "1.2.3.4.5",
            "HOST='1.2.3.4.5': not an IP address or a host name;"
            " allowed: an IP address or a host name",
        ),
        (
            "HOST",
            "-bad.example",
            "HOST='-bad.example': not an IP address or a host name;"
            " allowed: an IP address or a host name",
        ),
        (
            "TIMERCHECK_DB",
            ":memory:",
            "TIMERCHECK_DB=':memory:': an in-memory database: each thread would get"
            " its own, empty; allowed: a file path, or a file: URI",
        ),
    ],
)
def test_a_bad_value_names_its_variable_its_problem_and_its_range(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({name: value})
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("127.0.0.1", True),
        ("0.0.0.0", True),
        ("::", True),
        ("::1", True),
        ("localhost", True),
        ("timercheck.internal", True),
        ("a-b.example.com", True),
        ("x" * 63 + ".example", True),
        ("999.1.1.1", False),
        ("1.2.3", False),
        ("10", False),
        ("x" * 64 + ".example", False),
        ("-a.example", False),
        ("a-.example", False),
        ("a..example", False),
        ("a b", False),
        ("a_b.example", False),
    ],
)
def test_host_names_and_addresses(host: str, valid: bool) -> None:
    if valid:
        assert Config.from_env({"HOST": host}).host == host
    else:
        with pytest.raises(ConfigError, match=r"^HOST="):
            Config.from_env({"HOST": host})


@pytest.mark.parametrize(
    ("path", "in_memory"),
    [
        ("timercheck.db", False),
        ("/data/timercheck.db", False),
        ("memory.db", False),
        (":memory:", True),
        ("file:t.db", False),
        ("file:t.db?mode=ro", False),
        ("file:t.db?cache=shared&mode=rw", False),
        ("file:t.db?mode=memory", True),
        ("file:t.db?cache=shared&mode=memory", True),
        ("file::memory:", True),
        ("file::memory:?cache=shared", True),
        ("file:", True),
        ("file:?mode=ro", True),
        ("file:mode=memory.db", False),
        ("FILE::memory:", False),  # not a URI to SQLite: a file of that name
    ],
)
def test_an_in_memory_database_is_refused(path: str, in_memory: bool) -> None:
    if in_memory:
        with pytest.raises(ConfigError, match=r"in-memory database"):
            Config.from_env({"TIMERCHECK_DB": path})
    else:
        assert Config.from_env({"TIMERCHECK_DB": path}).sqlite_path == path


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error", "critical"])
def test_log_levels_in_any_case(level: str) -> None:
    assert Config.from_env({"LOG_LEVEL": level}).log_level == level.upper()


def test_every_setting_says_what_it_allows() -> None:
    from timercheck import SETTINGS

    allowed = {setting.name: setting.allowed() for setting in SETTINGS}
    assert allowed == {
        "TABLE_NAME": "any text",
        "TIMERCHECK_DB": "a file path, or a file: URI",
        "REGION": "any text",
        "TIMERCHECK_RETENTION_DAYS": "1 to 3650",
        "HOST": "an IP address or a host name",
        "PORT": "0 to 65535",
        "TIMERCHECK_THREADS": "1 to 256",
        "TIMERCHECK_CHANNEL_TIMEOUT": "1 to 86400",
        "TIMERCHECK_CONNECTION_LIMIT": "1 to 100000",
        "TIMERCHECK_MAX_WAIT_MS": "1 to 60000",
        "TIMERCHECK_TRUSTED_PROXY": "any text",
        "TIMERCHECK_TRUSTED_PROXY_COUNT": "1 to 10",
        "LOG_LEVEL": "DEBUG, INFO, WARNING, ERROR, CRITICAL",
    }


# -- the entry point, in-process --


def test_waitress_serves_with_these_options() -> None:
    from timercheck import server_options

    assert server_options(Config()) == {
        "host": "127.0.0.1",
        "port": 8080,
        "threads": 4,
        "ident": "timercheck",
        "channel_timeout": 75,
        "cleanup_interval": 1,
        "connection_limit": 8000,
        "backlog": 4096,
        "max_request_body_size": 16384,
        "max_request_header_size": 16384,
        "asyncore_use_poll": True,
        "clear_untrusted_proxy_headers": False,
    }
    proxied = server_options(Config(trusted_proxy="*", trusted_proxy_count=2))
    assert proxied == server_options(Config())  # the app reads proxy headers


def test_the_help_lists_each_setting_with_its_default_and_range() -> None:
    from timercheck import settings_help

    lines = settings_help().splitlines()
    assert (
        lines[0] == "settings, from the environment (an empty value counts as unset):"
    )
    assert lines[1:4] == [
        "  TABLE_NAME",
        "      DynamoDB table of timers; unset: the SQLite file",
        "      default: unset; allowed: any text",
    ]
    assert lines[16:19] == [
        "  PORT",
        "      port to listen on; 0: any free port, logged at start",
        "      default: 8080; allowed: 0 to 65535",
    ]
    assert len(lines) == 1 + 3 * 13


@pytest.mark.parametrize(
    ("head", "expects"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", False),
        (
            b"PUT /j/6 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 0\r\n\r\n",
            False,
        ),
        (
            b"PUT /j/6 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 2\r\n\r\n",
            True,
        ),
        (
            b"PUT /j/6 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            True,
        ),
    ],
)
def test_only_a_request_with_a_body_is_told_to_continue(
    head: bytes, expects: bool
) -> None:
    from waitress.adjustments import Adjustments

    from timercheck import TimedRequestParser

    parser = TimedRequestParser(Adjustments())
    parser.received(head)
    assert parser.headers_finished and parser.expect_continue is expects


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


def test_sigterm_stops_the_server_cleanly() -> None:
    from timercheck import stop

    with pytest.raises(SystemExit) as stopped:
        stop(15, None)
    assert stopped.value.code == 0


def main_exits(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str, str]:
    """main(argv) run to a SystemExit: its code, stdout and stderr."""
    from timercheck import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


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
    import boto3

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


# -- the waitress internals the service relies on --


def test_waitress_has_every_internal_the_service_relies_on() -> None:
    """On the release requirements.txt pins, which WAITRESS_BUILT_FOR names.
    To upgrade waitress: see docs/contributing.md."""
    import inspect
    import re

    import waitress.channel

    from support import ROOT
    from timercheck import WAITRESS_BUILT_FOR, waitress_gaps

    assert waitress_gaps() == []
    requirements = (ROOT / "requirements.txt").read_text()
    pinned = re.search(r"^waitress==(\S+)$", requirements, re.M)
    assert pinned and pinned[1] == WAITRESS_BUILT_FOR
    # the wording SafeLines redacts, where waitress logs a request's path
    source = inspect.getsource(waitress.channel)
    assert "Client disconnected while serving %s" in source
    assert "Exception while serving %s" in source


@pytest.mark.parametrize(
    ("where", "name", "feature"),
    [
        ("waitress.channel.HTTPChannel", "task_class", "shedding by time waited"),
        ("waitress.parser.HTTPRequestParser", "expect_continue", "Expect without"),
        ("waitress.proxy_headers", "clear_untrusted_headers", "proxy headers"),
        ("waitress.channel.HTTPChannel", "_flush_some", "no write spin"),
        ("waitress.task.Task", "build_response_header", "one send an answer"),
    ],
)
def test_a_waitress_without_an_internal_stops_the_start_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    where: str,
    name: str,
    feature: str,
) -> None:
    import importlib

    from timercheck import serve

    module, _, attribute = where.rpartition(".")
    owner = (
        importlib.import_module(where)
        if "proxy" in where
        else getattr(importlib.import_module(module), attribute)
    )
    monkeypatch.delattr(owner, name)
    caplog.set_level("INFO", "timercheck")
    assert serve(Config(sqlite_path=str(tmp_path / "t.db"), port=0)) == 2
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line.startswith(
        "waitress 3.0.2 lacks what this service, built for waitress 3.0.2, relies on:"
    )
    assert name in line and feature in line


def test_waitress_is_checked_even_where_nothing_can_listen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import waitress
    import waitress.server

    from timercheck import waitress_gaps

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("no loopback here")

    monkeypatch.setattr(waitress, "create_server", no_network)
    assert waitress_gaps() == []
    monkeypatch.delattr(waitress.server.BaseWSGIServer, "channel_class")
    assert waitress_gaps() == [
        "a listener's _map, adj, channel_class, handle_accept (accept bursts)"
    ]


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["--port", "9000"], "as in PORT=9000 python timercheck.py"),
        (["--port=9000"], "as in PORT=9000 python timercheck.py"),
        (["--host", "0.0.0.0"], "as in HOST=0.0.0.0 python timercheck.py"),
        (["--log-level"], "as in LOG_LEVEL=... python timercheck.py"),
    ],
)
def test_an_option_for_a_setting_names_its_variable(
    argv: list[str], hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main_exits(argv, capsys)
    assert code == 2
    assert "settings come from the environment, " + hint in err
    assert "invalid choice" not in err


def test_debug_logs_each_store_call_without_the_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from timercheck import Breaker, SqliteStore, Timer

    store = Breaker(SqliteStore(str(tmp_path / "t.db")))
    with caplog.at_level(logging.DEBUG, logger="timercheck"):
        store.put(Timer("secret-name", 1_000, 60, 10**9))
        store.get("secret-name")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(lines) == 2
    assert re.fullmatch(r"store put: \d+\.\d ms", lines[0])
    assert re.fullmatch(r"store get: \d+\.\d ms", lines[1])
    assert "secret-name" not in caplog.text


# -- a store that cannot work --


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


def test_a_missing_table_is_named_with_the_command_that_makes_it(
    tmp_path: Path,
) -> None:
    from support import dynamo_env, moto_server

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
    import boto3

    from timercheck import DynamoDB, DynamoStore, StoreUnavailable

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
