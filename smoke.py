"""Smoke test a timercheck deployment, with nothing but Python's standard library.

    python smoke.py https://timercheck.example.com

Sets a fresh 2-second timer, checks it, watches it expire, deletes it. Prints
one line per step; on the first failure says why and exits 1. The timer is
deleted whatever happens.
"""

from __future__ import annotations

import json
import secrets
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

TIMEOUT = 10  # seconds for any one request
SET_FIELDS = {"timer", "request_id", "status", "now", "message", "new_start_time"}
CHECK_FIELDS = {"start_time", "start_seconds", "seconds_elapsed", "seconds_remaining"}


class Failed(Exception):
    pass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        try:
            return json.loads(self.body)
        except ValueError:
            raise Failed(f"the body is not JSON: {self.body[:200]!r}") from None


class Client:
    def __init__(self, base_url: str) -> None:
        url = urllib.parse.urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise Failed(f"not an http(s) URL: {base_url}")
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path

    def request(self, method: str, path: str) -> Answer:
        """One request on its own connection, read to the end: so a HEAD
        answer that wrongly carries a body shows up as one."""
        target = self.prefix + path
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
        head += "User-Agent: timercheck-smoke\r\nConnection: close\r\n"
        head += "Content-Length: 0\r\n\r\n" if method in ("POST", "PUT") else "\r\n"
        try:
            with socket.create_connection((self.host, self.port), TIMEOUT) as sock:
                if self.https:
                    context = ssl.create_default_context()
                    sock = context.wrap_socket(sock, server_hostname=self.host)
                sock.sendall(head.encode())
                data = b""
                deadline = time.monotonic() + TIMEOUT
                while chunk := sock.recv(65536):
                    data += chunk
                    if time.monotonic() > deadline:
                        raise Failed(f"{method} {path}: no end to the answer")
        except (OSError, ssl.SSLError) as e:
            raise Failed(f"{method} {path}: {e}") from None
        return parse(method, path, data)


def parse(method: str, path: str, data: bytes) -> Answer:
    header_block, sep, body = data.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise Failed(f"{method} {path}: not an HTTP answer: {data[:100]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = dechunk(body)
    return Answer(status, headers, body)


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def expect(answer: Answer, status: int, timer_status: str | None = None) -> None:
    if answer.status != status:
        raise Failed(
            f"status {answer.status}, expected {status}: {answer.body[:200]!r}"
        )
    if timer_status and answer.headers.get("x-timer-status") != timer_status:
        got = answer.headers.get("x-timer-status")
        raise Failed(f"X-Timer-Status {got!r}, expected {timer_status!r}")


def run(base_url: str, seconds: int = 2, out: Callable[[str], None] = print) -> None:
    client = Client(base_url)
    name = f"smoke-{secrets.token_hex(8)}"
    deleted = False

    def step(description: str, check: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            check()
        except Failed as e:
            raise Failed(f"{description}: {e}") from None
        out(f"ok   {description} ({(time.monotonic() - started) * 1000:.0f} ms)")

    def health() -> None:
        answer = client.request("GET", "/")
        expect(answer, 200)
        if answer.body != b"OK":
            raise Failed(f"body {answer.body[:50]!r}, expected b'OK'")

    set_at = 0.0

    def set_timer() -> None:
        nonlocal set_at
        answer = client.request("GET", f"/{name}/{seconds}")
        set_at = time.monotonic()
        expect(answer, 200, "running")
        body = answer.json()
        if missing := SET_FIELDS - body.keys():
            raise Failed(f"fields missing: {sorted(missing)}")
        if body["new_start_seconds"] != seconds or body["timer"] != name:
            raise Failed(f"unexpected answer: {body}")
        if body["message"] != "Timer countdown updated":
            raise Failed(f"message {body['message']!r}")

    def check_running() -> None:
        answer = client.request("GET", f"/{name}")
        expect(answer, 200, "running")
        body = answer.json()
        if missing := CHECK_FIELDS - body.keys():
            raise Failed(f"fields missing: {sorted(missing)}")
        if not 0 < body["seconds_remaining"] <= seconds or body["status"] != "ok":
            raise Failed(f"unexpected answer: {body}")

    def head() -> None:
        answer = client.request("HEAD", f"/{name}")
        expect(answer, 200, "running")
        if answer.body:
            raise Failed(f"HEAD answered with a body of {len(answer.body)} bytes")

    def expired() -> None:
        time.sleep(max(0.0, set_at + seconds + 0.2 - time.monotonic()))
        answer = client.request("GET", f"/{name}")
        expect(answer, 504, "expired")
        if answer.json().get("errorMessage") != "timer timed out":
            raise Failed(f"errorMessage {answer.json().get('errorMessage')!r}")

    def delete() -> None:
        nonlocal deleted
        answer = client.request("DELETE", f"/{name}")
        expect(answer, 200, "expired")
        deleted = True

    def gone() -> None:
        expect(client.request("GET", f"/{name}"), 404, "never-set")

    try:
        step(f"GET / is 200 OK at {base_url}", health)
        step(f"set /{name}/{seconds}", set_timer)
        step("check: 200 running", check_running)
        step("HEAD: 200 running, no body", head)
        step(f"after {seconds} s: 504 timer timed out", expired)
        step("DELETE: 200", delete)
        step("check: 404 never set", gone)
    finally:
        if not deleted and set_at:
            try:
                client.request("DELETE", f"/{name}")
            except Failed:
                pass


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        run(argv[1])
    except Failed as e:
        print(f"FAIL {e}")
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
