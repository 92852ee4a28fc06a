"""Test support: real servers on 127.0.0.1 (the service, moto_server), a raw
HTTP client, and a fault-injecting TCP proxy. Standard library only."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    port: int, method: str, path: str, timeout: float = 10, body: bytes | None = None
) -> Answer:
    """One request on a new connection, with the path sent exactly as given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
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
        with open(self.log, "ab") as out:
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


def service(env: dict[str, str], port: int | None = None) -> Process:
    port = port or free_port()
    env = {"HOST": "127.0.0.1", "PORT": str(port), **env}
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
        self.sockets: list[socket.socket] = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

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
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

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
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass
