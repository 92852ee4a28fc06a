"""Settings from the environment: defaults, ranges, errors, and the help."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import main_exits, start
from timercheck import Config, ConfigError


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
        ("TIMERCHECK_REQUEST_TIMEOUT", "0", "out of range; allowed: 1 to 3600"),
        ("TIMERCHECK_MAX_SECONDS", "1000000000", "out of range"),
        ("TIMERCHECK_SETS_PER_MINUTE", "0", "out of range; allowed: 1 to 1000000"),
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
            "TIMERCHECK_MAX_SECONDS": "999999999",
            "TIMERCHECK_SETS_PER_MINUTE": "60",
            "TIMERCHECK_CHANNEL_TIMEOUT": "30",
            "TIMERCHECK_REQUEST_TIMEOUT": "5",
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
        max_seconds=999_999_999,
        sets_per_minute=60,
        channel_timeout=30,
        request_timeout=5,
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
        "TIMERCHECK_MAX_SECONDS": "1 to 999999999",
        "TIMERCHECK_SETS_PER_MINUTE": "1 to 1000000",
        "HOST": "an IP address or a host name",
        "PORT": "0 to 65535",
        "TIMERCHECK_THREADS": "1 to 256",
        "TIMERCHECK_CHANNEL_TIMEOUT": "1 to 86400",
        "TIMERCHECK_REQUEST_TIMEOUT": "1 to 3600",
        "TIMERCHECK_CONNECTION_LIMIT": "1 to 100000",
        "TIMERCHECK_MAX_WAIT_MS": "1 to 60000",
        "TIMERCHECK_TRUSTED_PROXY": "any text",
        "TIMERCHECK_TRUSTED_PROXY_COUNT": "1 to 10",
        "LOG_LEVEL": "DEBUG, INFO, WARNING, ERROR, CRITICAL",
    }


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
    assert lines[22:25] == [
        "  PORT",
        "      port to listen on; 0: any free port, logged at start",
        "      default: 8080; allowed: 0 to 65535",
    ]
    assert len(lines) == 1 + 3 * 16


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
