"""smoke.py against real servers, good and deliberately broken, and the
pipeline's buildspecs that run it."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import waitress
import yaml

from support import ROOT, create_table, dynamo_env, free_port, moto_server, service
from timercheck import App, SqliteStore

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Any]


def smoke(url: str) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, str(ROOT / "smoke.py"), url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


def test_smoke_passes_against_the_server_on_sqlite(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        code, output = smoke(f"http://127.0.0.1:{server.port}")
    assert code == 0, output
    assert output.count("\nok   ") + output.startswith("ok   ") == 7
    assert output.endswith("smoke test passed\n")
    rows = sqlite3.connect(tmp_path / "t.db").execute("SELECT COUNT(*) FROM timers")
    assert rows.fetchone() == (0,)


def test_smoke_passes_against_the_server_on_dynamodb() -> None:
    with moto_server() as store:
        env = dynamo_env(store.port)
        create_table(env)
        with service(env) as server:
            code, output = smoke(f"http://127.0.0.1:{server.port}/")
    assert code == 0, output


@contextmanager
def serving(app: Wsgi) -> Iterator[str]:
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.task_dispatcher.shutdown(timeout=1)
        server.close()


def frozen_clock() -> float:
    return 1_700_000_000.0


def break_health(app: Wsgi) -> Wsgi:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["PATH_INFO"] == "/":
            start_response("500 Internal Server Error", [("Content-Length", "0")])
            return [b""]
        return app(environ, start_response)

    return broken


def served_as_get(method: str) -> Callable[[Wsgi], Wsgi]:
    """A breakage: requests of `method` are answered as if they were GETs."""

    def breakage(app: Wsgi) -> Wsgi:
        def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ["REQUEST_METHOD"] == method:
                environ = {**environ, "REQUEST_METHOD": "GET"}
            return app(environ, start_response)

        return broken

    return breakage


body_on_head = served_as_get("HEAD")
ignore_delete = served_as_get("DELETE")


def forget_sets(app: App) -> Wsgi:
    def broken(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        answer = app(environ, start_response)
        parts = environ["PATH_INFO"].split("/")
        if len(parts) == 3:
            app.store.delete(parts[1])
        return answer

    return broken


@pytest.mark.parametrize(
    ("breakage", "frozen", "failure"),
    [
        (break_health, False, r"FAIL GET / is 200 OK .*: status 500, expected 200"),
        (None, True, r"FAIL after 2 s: 504 timer timed out: status 200, expected 504"),
        (
            body_on_head,
            False,
            r"FAIL HEAD: 200 running, no body: HEAD answered with a body",
        ),
        (
            ignore_delete,
            False,
            r"FAIL DELETE: 200: status 504, expected 200",
        ),
        (forget_sets, False, r"FAIL check: 200 running: status 404, expected 200"),
    ],
)
def test_smoke_fails_with_the_reason_against_a_broken_server(
    tmp_path: Path, breakage: Callable[[Any], Wsgi] | None, frozen: bool, failure: str
) -> None:
    store = SqliteStore(str(tmp_path / "t.db"))
    store.get("create-the-table")
    app: Wsgi = App(store, frozen_clock) if frozen else App(store)
    if breakage:
        app = breakage(app)
    with serving(app) as url:
        code, output = smoke(url)
    assert code == 1, output
    assert re.search(failure, output), output
    assert "smoke test passed" not in output
    if breakage is not ignore_delete:
        rows = sqlite3.connect(tmp_path / "t.db").execute("SELECT * FROM timers")
        assert rows.fetchall() == [], "the smoke test left its timer behind"


def test_smoke_fails_fast_when_nothing_listens() -> None:
    code, output = smoke(f"http://127.0.0.1:{free_port()}")
    assert code == 1 and output.startswith("FAIL GET / is 200 OK"), output


def test_smoke_needs_a_url() -> None:
    assert smoke("ftp://example")[0] == 1
    result = subprocess.run(
        [sys.executable, str(ROOT / "smoke.py")], capture_output=True
    )
    assert result.returncode == 2


def test_smoke_uses_only_the_standard_library() -> None:
    imports = re.findall(
        r"^(?:from|import) (\w+)", (ROOT / "smoke.py").read_text(), re.M
    )
    assert set(imports) <= set(sys.stdlib_module_names) | {"__future__"}


# -- the pipeline's buildspecs --


def buildspec(name: str) -> dict[str, Any]:
    spec = yaml.safe_load((ROOT / name).read_text())
    assert spec["version"] == 0.2
    assert set(spec["phases"]) <= {"install", "pre_build", "build", "post_build"}
    return spec


def commands(spec: dict[str, Any]) -> list[str]:
    return [c for phase in spec["phases"].values() for c in phase.get("commands", [])]


def test_build_stage_runs_the_readme_test_command() -> None:
    spec = buildspec("buildspec.yml")
    readme = (ROOT / "README.md").read_text()
    test_command = re.findall(r"```sh\n(python3 -m venv .*pytest)\n```", readme)[0]
    assert commands(spec) == [test_command]
    assert spec["artifacts"]["files"] == ["**/*"]
    assert ".venv/**/*" in spec["artifacts"]["exclude-paths"]


@pytest.mark.parametrize("name", ["buildspec-test.yml", "buildspec-prod.yml"])
def test_test_stages_smoke_test_the_deployment(name: str) -> None:
    spec = buildspec(name)
    assert spec["env"]["shell"] == "bash"
    assert commands(spec) == ['source ./mu-env.sh && python3 smoke.py "$BASE_URL"']


def test_pipeline_uses_images_with_python() -> None:
    pipeline = yaml.safe_load((ROOT / "mu.yml").read_text())["service"]["pipeline"]
    for stage in ("build", "acceptance"):
        assert re.fullmatch(r"aws/codebuild/standard:\d+\.0", pipeline[stage]["image"])
