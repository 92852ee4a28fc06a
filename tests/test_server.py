"""How timercheck's waitress connection writes: one send an answer, no
watching the socket while a worker sends, and large or slowly read answers
still going out whole."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import waitress
import waitress.wasyncore

from support import call, read_message, service
from timercheck import (
    App,
    Config,
    HealthFirstDispatcher,
    NoSpinChannel,
    SqliteStore,
    flush_often,
    server_options,
)

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
HIGH_WATER = 16 * 1024 * 1024  # waitress's outbuf_high_watermark


class Counting(NoSpinChannel):
    """timercheck's channel, counting its sends and the loop's write turns."""

    sends: list[int]
    write_turns: list[int]
    slow_send = 0.0  # seconds each send of an answer waits first

    def send(self, data: bytes, do_close: bool = True) -> int:
        self.sends.append(len(data))  # before the client can have it
        if self.slow_send:
            time.sleep(self.slow_send)
        return super().send(data, do_close=do_close)

    def handle_write(self) -> None:
        self.write_turns.append(1)
        super().handle_write()


@contextmanager
def serving(
    app: WSGIApp, slow_send: float = 0.0, threads: int = 2
) -> Iterator[tuple[int, list[int], list[int]]]:
    """The app on timercheck's channel and dispatcher, its loop on a thread;
    the port, every send, and every turn the loop spent writing."""
    sends: list[int] = []
    turns: list[int] = []

    class Channel(Counting):
        pass

    Channel.sends, Channel.write_turns, Channel.slow_send = sends, turns, slow_send
    dispatcher = HealthFirstDispatcher()
    options = server_options(Config(host="127.0.0.1", port=0, threads=threads))
    server = waitress.create_server(app, _dispatcher=dispatcher, **options)
    server.channel_class = Channel
    dispatcher.set_thread_count(threads)
    loop = threading.Thread(target=server.run)
    loop.start()
    try:
        yield int(server.effective_port), sends, turns
    finally:
        server.trigger.pull_trigger(lambda: waitress.wasyncore.close_all(server._map))
        loop.join(5)
        dispatcher.shutdown(timeout=5)
        assert not loop.is_alive()


def exchange(sock: socket.socket, request: bytes) -> bytes:
    """The whole answer to a request on a kept-alive connection."""
    sock.sendall(request)
    if request.startswith(b"HEAD "):
        data = b""
        while not data.endswith(b"\r\n\r\n"):
            data += sock.recv(65536)
        return data
    head, body = read_message(sock)
    return head + b"\r\n\r\n" + body


def test_every_answer_of_the_service_goes_out_in_one_send(tmp_path: Path) -> None:
    app = App(SqliteStore(str(tmp_path / "t.db")))
    requests = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /job/60 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /job HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /job HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /never-set HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /job/x HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /job?format=html HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with (
        serving(app) as (port, sends, _),
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        statuses = []
        for request in requests:
            sends.clear()
            answer = exchange(sock, request)
            statuses.append(answer.split(b" ", 2)[1])
            assert len(sends) == 1, (request, sends)
            assert sends[0] == len(answer)
    assert statuses == [b"200", b"200", b"200", b"200", b"404", b"400", b"200"]


def test_the_loop_does_not_watch_a_socket_while_a_worker_sends(
    tmp_path: Path,
) -> None:
    """While one answer's send takes a while, another connection's request
    turns the loop: it must not wait to write what the worker is sending."""
    app = App(SqliteStore(str(tmp_path / "t.db")))
    with (
        serving(app, slow_send=0.3) as (port, sends, turns),
        socket.create_connection(("127.0.0.1", port), timeout=5) as slow,
        socket.create_connection(("127.0.0.1", port), timeout=5) as other,
    ):
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)  # the worker is inside its send, holding the output
        for _ in range(3):
            exchange(other, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, body = read_message(slow)
        assert head.startswith(b"HTTP/1.1 200") and body
    assert turns == []


def chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    """`total` bytes, each 1 MB piece telling its place."""
    for offset in range(0, total, size):
        length = min(size, total - offset)
        yield f"{offset:016d}".encode().ljust(length, b".")[:length]


def large(total: int, whole: bool) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(total))])
        return [b"".join(chunks(total))] if whole else chunks(total)

    return app


def receive(port: int, wait_first: float, pace: float = 0.0) -> bytes:
    """An answer read by a client that starts late, then reads 256 KB at a
    time, `pace` seconds apart, through a small receive buffer."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(wait_first)
        data = bytearray()
        while piece := sock.recv(262144):
            data += piece
            time.sleep(pace)
    return bytes(data.partition(b"\r\n\r\n")[2])


def test_an_answer_over_the_high_water_mark_goes_out_whole() -> None:
    """Past the kernel's buffers, more than the high-water mark is left in
    waitress's: a worker writing in pieces then waits, still serving, for the
    loop to send what it left behind."""
    total = 2 * HIGH_WATER + 5
    for whole in (True, False):
        with serving(large(total, whole)) as (port, _, turns):
            assert receive(port, wait_first=0.3) == b"".join(chunks(total))
            assert turns  # the loop sent some of it


def test_a_slowly_read_answer_goes_out_whole() -> None:
    total = 4 * (1 << 20) + 7
    for whole in (True, False):
        with serving(large(total, whole)) as (port, _, turns):
            assert receive(port, wait_first=0.2, pace=0.01) == b"".join(chunks(total))
            assert turns  # the loop sent what the worker left behind


# -- access lines: buffered, flushed once a second and at the end --


def test_access_lines_are_flushed_every_second_until_the_stop() -> None:
    waits: list[float] = []
    flushed: list[int] = []

    class Stop:
        def wait(self, timeout: float) -> bool:
            waits.append(timeout)
            return len(waits) == 4  # stopped during the fourth wait

    class Stream:
        def flush(self) -> None:
            flushed.append(len(waits))

    flush_often(Stream(), Stop())  # type: ignore[arg-type]
    assert waits == [1.0, 1.0, 1.0, 1.0]
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
