"""Test support: real servers on 127.0.0.1 (the service, moto_server), a raw
HTTP client, and a fault-injecting TCP proxy. Standard library only."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from webtest import TestApp

ROOT = Path(__file__).parent.parent
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def call(
    port: int,
    method: str,
    path: str,
    timeout: float = 10,
    body: bytes | None = None,
    host: str = "127.0.0.1",
) -> Answer:
    """One request on a new connection, with the path sent exactly as given."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        conn.close()


def raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send raw bytes and read until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


class Process:
    """A server process that is stopped whatever happens."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        port: int,
        cwd: Path = ROOT,
        inherit_env: bool = True,
        ready_path: str = "/",
    ) -> None:
        self.args, self.port, self.cwd, self.ready_path = args, port, cwd, ready_path
        self.env = {**os.environ, **env} if inherit_env else env
        self.log = ROOT / ".pytest_cache" / f"server-{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds = 0.0  # from start to the first answer

    def __enter__(self) -> Process:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 20) -> float:
        """Start and wait for the first answer; return how long that took.
        A process that does not answer is killed."""
        self.log.parent.mkdir(exist_ok=True)
        started = time.monotonic()
        # A restart appends; a new process must not read an old one's lines
        # (ports are reused).
        with open(self.log, "ab" if self.proc else "wb") as out:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.args} exited: {self.log.read_text()[-2000:]}"
                )
            try:
                call(self.port, "GET", self.ready_path, timeout=1)
                self.start_seconds = time.monotonic() - started
                return self.start_seconds
            except OSError:
                time.sleep(0.02)
        self.stop(9)
        raise RuntimeError(f"{self.args} did not answer within {timeout} s")

    def stop(self, sig: int = 15, timeout: float = 10) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def moto_server(port: int | None = None) -> Process:
    port = port or free_port()
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return Process(args, FAKE_AWS, port, ready_path="/moto-api/")


# Every client of a test's server comes from 127.0.0.1, where it stands for
# many: the budget of sets a client is lifted unless a test sets its own.
MANY_CLIENTS = {"TIMERCHECK_SETS_PER_MINUTE": "1000000"}


def service(env: dict[str, str], port: int | None = None) -> Process:
    port = port or free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), **MANY_CLIENTS, **env}
    return Process([sys.executable, str(ROOT / "timercheck.py")], env, port)


def dynamo_env(store_port: int, table: str = "timers") -> dict[str, str]:
    return {
        **FAKE_AWS,
        "TABLE_NAME": table,
        "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{store_port}",
    }


def create_table(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "timercheck.py"), "create-table"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=60,
    )


class FaultProxy:
    """A TCP proxy to a store, whose mode tests switch while it runs:
    pass, delay (each chunk by `delay` s), blackhole (accept, never answer),
    reset (close at once)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode, self.delay = "pass", 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets = [self.listener]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.running = True
        self.threads[0].start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.mode == "reset":
                client.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                )
                client.close()
                continue
            thread = threading.Thread(target=self._pipe, args=(client,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return
        self.sockets.append(upstream)
        pair = {client: upstream, upstream: client}
        try:
            while self.running:
                readable, _, _ = select.select(list(pair), [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "blackhole":
                        continue
                    if self.delay:
                        time.sleep(self.delay)
                    pair[sock].sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self.running = False
        stop_serving(self.sockets, self.threads)


def read_message(sock: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    """One HTTP/1.1 message with a Content-Length (or none) from a socket:
    its head and body; ValueError at the end of the connection."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    length = int(found[1]) if found else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("closed")
        body += chunk
    return head, body


def with_length(head: bytes, body: bytes, length: int | None = None) -> bytes:
    """An answer's head without its Connection and Content-Length, given the
    Content-Length `length` (the body's own by default), then the body."""
    lines = [
        line
        for line in head.split(b"\r\n")
        if not re.match(rb"(?i)(connection|content-length):", line)
    ]
    lines.append(b"Content-Length: %d" % (len(body) if length is None else length))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def stop_serving(sockets: list[socket.socket], threads: list[threading.Thread]) -> None:
    """Wake every thread blocked on the sockets (a listener's accept, a
    connection's recv: closing alone wakes neither), and wait for them."""
    for sock in list(sockets):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    for thread in list(threads):
        thread.join(10)
    for sock in list(sockets):
        sock.close()


class Listening:
    """A server on 127.0.0.1 that serves each connection on a thread of its
    own, with `_serve`, until it is closed."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets = [self.listener]
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def close(self) -> None:
        stop_serving(self.sockets, self.threads)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class Misbehaving(Listening):
    """A kept-alive HTTP proxy in front of a DynamoDB-compatible server that
    takes one request a connection (moto_server). Armed with modes, it
    misbehaves on the next requests, one mode each ("" behaves):
    - stray: the answer, then 30 ms later the same answer again;
    - short: a Content-Length that ends before the body it sends, whose
      rest is a whole answer (the same again), in the same write;
    - replay: the answer it gave the request before, unasked (about
      another timer), and this request is never sent on;
    - continue: `100 Continue` first, then the answer;
    - drip: the answer a byte every 0.4 s;
    - huge: a 64 MiB answer, never sent on;
    - lose: sent on (and so applied), then the connection closed unanswered.
    `failed_condition_item = False` drops the item from a failed
    condition's answer, as dynalite does."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.armed: list[str] = []
        self.failed_condition_item = True
        self.last = b""
        self.targets: list[str] = []  # X-Amz-Target of each request sent on
        super().__init__()

    def arm(self, *modes: str) -> None:
        self.armed = list(modes)

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.upstream_port)) as up:
            up.sendall(request)
            head, body = read_message(up)
        target = re.search(rb"(?im)^x-amz-target:\s*(\S+)", request)
        self.targets.append(target[1].decode() if target else "")
        if not self.failed_condition_item and b"ConditionalCheckFailed" in body:
            fields = json.loads(body)
            fields.pop("Item", None)
            body = json.dumps(fields).encode()
            head = re.sub(rb"(?im)^x-amz-crc32:.*\r\n", b"", head + b"\r\n")[:-2]
        return with_length(head, body)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    head, body = read_message(conn)
                    self._answer(
                        conn,
                        self.armed.pop(0) if self.armed else "",
                        head + b"\r\n\r\n" + body,
                    )
            except (OSError, ValueError):
                return

    def _answer(self, conn: socket.socket, mode: str, request: bytes) -> None:
        if mode == "huge":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 << 20))
            for _ in range(1024):
                conn.sendall(b" " * 65536)
            return
        if mode == "replay":
            conn.sendall(self.last)
            return
        answer = self._forward(request)
        if mode == "lose":
            raise ValueError("lost")
        self.last = answer
        if mode == "stray":
            conn.sendall(answer)
            time.sleep(0.03)
            conn.sendall(answer)
        elif mode == "short":
            head, _, body = answer.partition(b"\r\n\r\n")
            conn.sendall(with_length(head, body + answer, len(body)))
        elif mode == "continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + answer)
        elif mode == "drip":
            for byte in answer:
                conn.sendall(bytes([byte]))
                time.sleep(0.4)
        else:
            conn.sendall(answer)


class ForwardProxy(Listening):
    """An HTTP forward proxy on 127.0.0.1: a request in absolute form is sent
    on to its host, CONNECT opens a tunnel. It keeps the request heads."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                head, body = read_message(conn)
                self.seen.append(head.decode())
                line = head.split(b"\r\n")[0].decode()
                method, target, _ = line.split(" ")
                if method == "CONNECT":
                    host, _, port = target.rpartition(":")
                    up = socket.create_connection((host, int(port)))
                    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    pipe(conn, up)
                    return
                found = re.match(r"http://([^/:]+):(\d+)(/.*)", target)
                assert found, target
                up = socket.create_connection((found[1], int(found[2])))
                with up:
                    origin = head.replace(target.encode(), found[3].encode(), 1)
                    # One request a connection: the store closes after it,
                    # and so tells the client.
                    up.sendall(origin + b"\r\nConnection: close\r\n\r\n" + body)
                    while True:
                        chunk = up.recv(65536)
                        if not chunk:
                            return
                        conn.sendall(chunk)
            except (OSError, ValueError):
                return


def pipe(a: socket.socket, b: socket.socket) -> None:
    """Carry bytes both ways until either side closes."""
    pair = {a: b, b: a}
    with b:
        while True:
            readable, _, _ = select.select(list(pair), [], [], 5)
            if not readable:
                return
            for sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                pair[sock].sendall(data)


# -- a crowd, a storm and a load balancer's probe (bench.py uses them too) --

PROBE_EVERY = 0.25  # seconds between load balancer probes of /
PROBE_TIMEOUT = 3.0  # mu's ALB health check timeout
CLIENT_TIMEOUT = 10.0  # curl -m 10


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send a request, read its answer: (status, whether Retry-After came)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length: *(\d+)", head)
    await reader.readexactly(int(length[1]) if length else 0)
    return int(head.split(b" ", 2)[1]), b"\nretry-after:" in head.lower()


async def keep_checking(
    port: int, path: str, stop: asyncio.Event, answers: dict[str, int], ready: list[int]
) -> None:
    """One kept-alive connection checking a timer until told to stop; counts
    answers by status, with "+Retry-After" when one came."""
    request = f"GET {path} HTTP/1.1\r\nHost: crowd\r\n\r\n".encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        answers["refused"] = answers.get("refused", 0) + 1
        return
    ready.append(1)
    try:
        while not stop.is_set():
            status, retry_after = await asyncio.wait_for(
                exchange(reader, writer, request), CLIENT_TIMEOUT
            )
            label = f"{status}+Retry-After" if retry_after else str(status)
            answers[label] = answers.get(label, 0) + 1
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
        label = f"broken: {type(e).__name__}"
        answers[label] = answers.get(label, 0) + 1
    finally:
        writer.close()


async def storm_set(port: int, n: int) -> tuple[str, bool, float]:
    """One cron job's reset: (outcome, Retry-After given, seconds taken)."""
    request = f"GET /storm-{n}/600 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    started = time.monotonic()
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                status, retry_after = await exchange(reader, writer, request.encode())
            finally:
                writer.close()
        return str(status), retry_after, time.monotonic() - started
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
        return type(e).__name__, False, time.monotonic() - started


async def crowd_and_storm(
    port: int, crowd: int, storm: int, seconds: float, path: str = "/bench-check"
) -> dict[str, Any]:
    """`crowd` kept-alive connections check `path` for `seconds`, then
    `storm` sets arrive at once on new connections, the crowd still going."""
    stop = asyncio.Event()
    answers: dict[str, int] = {}
    ready: list[int] = []
    checkers = [
        asyncio.create_task(keep_checking(port, path, stop, answers, ready))
        for _ in range(crowd)
    ]
    started = time.monotonic()
    while len(ready) + answers.get("refused", 0) < crowd:
        if time.monotonic() - started > 30:
            break
        await asyncio.sleep(0.05)
    phases = {"crowd_start": time.monotonic()}
    await asyncio.sleep(seconds)
    before = dict(answers)
    phases["storm_start"] = time.monotonic()
    sets = await asyncio.gather(*(storm_set(port, n) for n in range(storm)))
    phases["storm_end"] = time.monotonic()
    stop.set()
    await asyncio.gather(*checkers, return_exceptions=True)
    return {
        "crowd_connected": len(ready),
        "crowd_answers_before_storm": before,
        "crowd_answers": answers,
        "sets": sets,
        "phases": phases,
    }


def probe_health(
    port: int, stop: threading.Event, seen: list[tuple[float, float, str]]
) -> None:
    """A load balancer's probe: GET / on a new connection every 250 ms."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            outcome = str(call(port, "GET", "/", timeout=PROBE_TIMEOUT).status)
        except (OSError, http.client.HTTPException) as e:
            outcome = type(e).__name__
        seen.append((started, time.monotonic() - started, outcome))
        stop.wait(max(0.0, PROBE_EVERY - (time.monotonic() - started)))


def lost_sets(port: int, sets: list[tuple[str, bool, float]]) -> int:
    """Sets that were answered 200 but whose timer is not running. A check
    the server sheds or cannot serve (503) says nothing: it is asked again."""
    lost = 0
    for n, (outcome, _, _) in enumerate(sets):
        if outcome != "200":
            continue
        for _ in range(50):
            status = call(port, "GET", f"/storm-{n}").status
            if status != 503:
                break
            time.sleep(0.1)
        lost += status != 200
    return lost


def read_only_url(app: TestApp, name: str, seconds: int = 60) -> str:
    answer = app.get(f"/{name}/{seconds}").json
    assert (
        answer["read_only_url"] == f"http://localhost:80/-/{answer['read_only_token']}"
    )
    return f"/-/{answer['read_only_token']}"


def start(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "timercheck.py")],
        env={**os.environ, "TIMERCHECK_DB": str(tmp_path / "t.db"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def main_exits(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str, str]:
    """main(argv) run to a SystemExit: its code, stdout and stderr."""
    from timercheck import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    out, err = capsys.readouterr()
    return stopped.value.code, out, err


BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def history(app: TestApp, url: str = "/job", status: int = 200) -> list[Any]:
    return app.get(f"{url}?format=history", status=status).json["history"]


def entry(reset_at: int, seconds: int, overdue: int | None) -> dict[str, Any]:
    return {"reset_at": reset_at, "seconds": seconds, "overdue_seconds": overdue}


def clients(port: int, count: int, send: bool = True) -> list[socket.socket]:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for sock in socks:
        if send:
            sock.sendall(b"GET /job HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)  # for the kernel to hand the bytes over, not a timing test
    return socks


def rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT timer FROM timers ORDER BY timer")]


class DrippingProxy(Listening):
    """An HTTP proxy that answers CONNECT a byte every 0.2 s, and never
    carries anything."""

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                read_message(conn)
                for byte in b"HTTP/1.1 200 Connection established\r\n\r\n":
                    conn.sendall(bytes([byte]))
                    time.sleep(0.2)
            except (OSError, ValueError):
                return
