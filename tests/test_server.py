"""The waitress hooks: health checks first, accepting in bursts, shedding by
time waited, one send an answer, no watching a socket while a worker sends,
large or slowly read answers going out whole, and the waitress internals the
service relies on."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import waitress
import waitress.wasyncore
from webtest import TestApp

from fakes import (
    FailingStore,
    FakeClock,
)
from support import (
    ROOT,
    call,
    clients,
    raw,
    read_message,
    service,
)
from timercheck import (
    WAITED,
    App,
    Config,
    HealthFirstDispatcher,
    NoSpinChannel,
    SqliteStore,
    accept_bursts,
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


# -- waitress: its settings, and the internals the service relies on --


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


def test_waitress_has_every_internal_the_service_relies_on() -> None:
    """On the release requirements.txt pins, which WAITRESS_BUILT_FOR names.
    To upgrade waitress: see docs/contributing.md."""
    import inspect

    import waitress.channel

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


def test_a_head_over_16_kb_is_refused(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n"
        assert (
            raw(server.port, big)
            .split(b"\r\n")[0]
            .endswith(b" 431 Request Header Fields Too Large")
        )
        small = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 15000
        assert raw(server.port, small + b"\r\nConnection: close\r\n\r\n").startswith(
            b"HTTP/1.1 200 "
        )


def test_expect_100_continue_without_a_body_is_served(tmp_path: Path) -> None:
    with service({"TIMERCHECK_DB": str(tmp_path / "t.db")}) as server:
        answer = raw(
            server.port,
            b"GET /job/60 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Connection: close\r\n\r\n",
        )
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:100]
        assert call(server.port, "GET", "/job").status == 200
        with_body = raw(
            server.port,
            b"PUT /job/90 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        assert b"HTTP/1.1 200 OK\r\n" in with_body
        assert call(server.port, "GET", "/job").json["start_seconds"] == 90


def test_a_timer_request_that_waited_past_the_bound_is_shed_without_the_store(
    clock: FakeClock,
) -> None:
    store = FailingStore()
    app = TestApp(App(store, clock))  # 2 s by default, as TIMERCHECK_MAX_WAIT_MS
    for path in ("/job", "/job/60", "/-/" + "A" * 64):
        shed = app.get(path, extra_environ={WAITED: 2.001}, status=503)
        assert shed.json["errorMessage"] == "503: overloaded: try again shortly"
        assert shed.headers["Retry-After"] in {"1", "2", "3", "4"}
    assert app.delete("/job", extra_environ={WAITED: 9}, status=503).headers[
        "Retry-After"
    ]
    assert store.calls == 0


def test_health_and_robots_are_never_shed(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock, max_wait=2.0))
    assert app.get("/", extra_environ={WAITED: 60.0}).text == "OK"
    assert app.head("/", extra_environ={WAITED: 60.0}).status_int == 200
    assert app.get("/robots.txt", extra_environ={WAITED: 60.0}).status_int == 200


def test_a_request_that_waited_exactly_the_bound_is_served(
    app: TestApp, clock: FakeClock
) -> None:
    waited = {WAITED: 2.0}
    assert app.get("/job/60", extra_environ=waited).json["status"] == "ok"
    assert app.get("/job", extra_environ=waited).json["seconds_remaining"] == 60


def test_a_request_whose_wait_no_server_stamped_is_served(
    store: Any, clock: FakeClock
) -> None:
    """Under a WSGI server other than ours the wait is unknown: never shed."""
    app = TestApp(App(store, clock, max_wait=0.001))
    assert app.get("/job/60").json["status"] == "ok"


def test_retry_after_is_spread_over_1_to_4_seconds(clock: FakeClock) -> None:
    app = TestApp(App(FailingStore(), clock, max_wait=0.5))
    seen = {
        app.get("/job", extra_environ={WAITED: 1}, status=503).headers["Retry-After"]
        for _ in range(200)
    }
    assert seen == {"1", "2", "3", "4"}


def queued(method: str | None, path: str | None) -> Any:
    request = (
        SimpleNamespace()
        if method is None
        else SimpleNamespace(command=method, path=path)
    )
    return SimpleNamespace(requests=[request])


def test_health_checks_go_to_the_front_of_the_queue() -> None:
    dispatcher = HealthFirstDispatcher()  # no threads: the queue only fills
    check, root, post, head, bad, set_ = (
        queued("GET", "/job"),
        queued("GET", "/"),
        queued("POST", "/"),
        queued("HEAD", "/"),
        queued(None, None),  # a request waitress could not parse
        queued("GET", "/job/60"),
    )
    for channel in (check, root, post, head, bad, set_):
        dispatcher.add_task(channel)
    assert list(dispatcher.queue) == [root, head, check, post, bad, set_]


class Ticking:
    """A monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budgeted() -> tuple[HealthFirstDispatcher, Ticking]:
    clock = Ticking()
    dispatcher = HealthFirstDispatcher()
    dispatcher.clock = clock  # type: ignore[method-assign]
    dispatcher.allowance, dispatcher.counted = 10.0, clock.now
    return dispatcher, clock


def test_health_checks_jump_the_queue_only_within_a_budget() -> None:
    """10 at once, then 10 a second: the 11th waits in line like any request,
    and a second later one more may jump, not more."""
    dispatcher, clock = budgeted()
    set_ = queued("GET", "/job/60")
    health = [queued("GET", "/") for _ in range(13)]
    dispatcher.add_task(set_)
    for channel in health[:11]:
        dispatcher.add_task(channel)
    assert list(dispatcher.queue) == [*health[:10], set_, health[10]]
    clock.now += 0.1
    dispatcher.add_task(health[11])
    dispatcher.add_task(health[12])
    assert list(dispatcher.queue) == [
        *health[:10],
        health[11],
        set_,
        health[10],
        health[12],
    ]


def test_the_budget_refills_to_10_and_no_further() -> None:
    dispatcher, clock = budgeted()
    set_ = queued("GET", "/job/60")
    dispatcher.add_task(set_)
    clock.now += 3600
    health = [queued("HEAD", "/") for _ in range(11)]
    for channel in health:
        dispatcher.add_task(channel)
    assert list(dispatcher.queue) == [*health[:10], set_, health[10]]


def test_a_pipelined_health_check_spends_the_budget_like_any_other() -> None:
    """A connection is queued for its first request: `GET /` with another
    behind it (`/` or a timer's) jumps within the budget, and spends it."""
    dispatcher, _ = budgeted()
    set_ = queued("GET", "/job/60")
    pairs = [queued("GET", "/") for _ in range(11)]
    for channel in pairs:
        channel.requests.append(SimpleNamespace(command="GET", path="/job"))
    dispatcher.add_task(set_)
    for channel in pairs:
        dispatcher.add_task(channel)
    assert list(dispatcher.queue) == [*pairs[:10], set_, pairs[10]]


def test_a_connection_queued_again_for_a_timer_request_jumps_nothing() -> None:
    dispatcher, _ = budgeted()
    first, set_ = queued("GET", "/"), queued("GET", "/job/60")
    dispatcher.add_task(first)
    dispatcher.queue.popleft()  # a worker serves its `GET /`
    first.requests = [SimpleNamespace(command="GET", path="/job")]
    dispatcher.add_task(set_)
    dispatcher.add_task(first)
    health = queued("GET", "/")
    dispatcher.add_task(health)
    assert list(dispatcher.queue) == [health, set_, first]


def listening(
    limit: int = 100, accepts: list[int] | None = None
) -> tuple[Any, HealthFirstDispatcher]:
    """timercheck's waitress listener on 127.0.0.1, its loop not running, with
    a dispatcher that has no threads: what the loop would do is called by
    hand, and what it would queue stays in the queue. Each call of waitress's
    own accept is counted in `accepts`, if given."""
    dispatcher = HealthFirstDispatcher()
    listener = waitress.create_server(
        App(FailingStore()), host="127.0.0.1", port=0, _dispatcher=dispatcher,
        connection_limit=limit,
    )  # fmt: skip
    listener.channel_class = NoSpinChannel
    if accepts is not None:
        accept_one = listener.handle_accept
        listener.handle_accept = lambda: accepts.append(1) or accept_one()
    accept_bursts(listener)
    return listener, dispatcher


def test_one_turn_accepts_every_waiting_connection_and_reads_its_request() -> None:
    listener, dispatcher = listening()
    socks = clients(listener.effective_port, 5)
    try:
        listener.handle_accept()  # what one turn of waitress's loop does
        assert len(dispatcher.queue) == 5
        assert all(c.requests[0].path == "/job" for c in dispatcher.queue)
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def test_one_turn_stops_accepting_once_nothing_is_waiting() -> None:
    accepts: list[int] = []
    listener, _ = listening(accepts=accepts)
    socks = clients(listener.effective_port, 5)
    try:
        listener.handle_accept()
        assert len(accepts) == 6  # five connections, then one try that finds none
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def test_a_connection_with_nothing_sent_yet_is_accepted_and_left_to_the_loop() -> None:
    listener, dispatcher = listening()
    socks = clients(listener.effective_port, 3, send=False)
    try:
        before = len(listener._map)
        listener.handle_accept()
        assert len(listener._map) == before + 3
        assert len(dispatcher.queue) == 0
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def test_accepting_stops_at_the_connection_limit() -> None:
    listener, dispatcher = listening()
    listener.adj.connection_limit = len(listener._map) + 2
    socks = clients(listener.effective_port, 5)
    try:
        listener.handle_accept()
        assert len(dispatcher.queue) == 2
    finally:
        for sock in socks:
            sock.close()
        listener.close()


def test_a_request_arrives_when_it_has_been_read_whole() -> None:
    """The wait that sheds a request counts from its last byte, not its first."""
    from waitress.adjustments import Adjustments

    from timercheck import TimedRequestParser

    parser = TimedRequestParser(Adjustments())
    parser.received(b"GET /job HTTP/1.1\r\nHost: x\r\n")
    assert parser.arrived == 0.0
    before = time.monotonic()
    parser.received(b"\r\n")
    assert before <= parser.arrived <= time.monotonic()
    first = parser.arrived
    parser.received(b"GET /other HTTP/1.1\r\n\r\n")  # the next is another's
    assert parser.arrived == first
