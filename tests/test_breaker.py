"""The breaker: a failing store fails fast, stuck calls, one probe at a time."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from fakes import (
    FailingStore,
    FakeClock,
    StuckStore,
    start_stuck_calls,
)
from timercheck import (
    Breaker,
    Config,
    DynamoStore,
    Miss,
    StoreUnavailable,
    Timer,
    make_store,
)


def test_breaker_fails_fast_while_the_store_is_down_then_probes() -> None:
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, failures=3, pause=2.0, clock=clock)
    for _ in range(10):
        with pytest.raises(StoreUnavailable):
            breaker.get("job")
    assert store.calls == 3
    clock.advance(2)
    with pytest.raises(StoreUnavailable):
        breaker.get("job")  # the probe, still down
    assert store.calls == 4
    with pytest.raises(StoreUnavailable):
        breaker.get("job")
    assert store.calls == 4
    store.down = False
    clock.advance(2)
    assert breaker.get("job") is None
    assert breaker.get("job") is None
    assert store.calls == 6


def test_breaker_counts_only_failures_in_a_row() -> None:
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, failures=3, clock=clock)
    for _ in range(5):
        for down in (True, True, False):
            store.down = down
            try:
                breaker.put(Timer("job", 0, 1, 1))
            except StoreUnavailable:
                pass
    assert store.calls == 15


def test_breaker_fails_fast_while_two_calls_are_stuck() -> None:
    store, clock = StuckStore(), FakeClock(0)
    breaker = Breaker(store, slots=4, stuck=1.0, clock=clock)
    threads = start_stuck_calls(breaker, store, 2)
    clock.advance(1.01)
    with pytest.raises(StoreUnavailable) as refused:
        breaker.get("job")
    assert str(refused.value) == "store not answering: failing fast"
    assert store.calls == 2
    store.release.set()
    for thread in threads:
        thread.join()
    assert breaker.get("job") is None


def test_breaker_calls_are_stuck_only_past_a_second() -> None:
    """Two calls in flight for exactly 1 s are slow, not stuck: a third goes
    through. (The clock reads 1000 s: only differences count.)"""
    store, clock = StuckStore(), FakeClock(1000)
    breaker = Breaker(store, clock=clock)
    threads = start_stuck_calls(breaker, store, 2)
    clock.advance(1.0)
    threading.Timer(0.2, store.release.set).start()
    assert breaker.get("job") is None
    for thread in threads:
        thread.join()
    assert store.calls == 3


def test_breaker_defaults_open_after_3_failures_for_2_seconds() -> None:
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, clock=clock)
    assert breaker._slots.qsize() == 6
    for _ in range(3):
        with pytest.raises(StoreUnavailable, match="^down$"):
            breaker.get("job")
    with pytest.raises(StoreUnavailable) as refused:
        breaker.get("job")
    assert str(refused.value) == "store down: failing fast"
    clock.advance(1.999)
    with pytest.raises(StoreUnavailable, match="failing fast"):
        breaker.get("job")
    assert store.calls == 3
    clock.advance(0.001)
    store.down = False
    assert breaker.get("job") is None
    assert store.calls == 4


def test_breaker_lets_one_probe_through_at_a_time() -> None:
    """While the probe after a pause is in flight, other calls still fail fast."""
    store, clock = FailingStore(), FakeClock(0)
    breaker = Breaker(store, clock=clock)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            breaker.get("job")
    clock.advance(2)
    store.down = False
    entered, release = threading.Event(), threading.Event()
    answer = store.get

    def slow_get(*args: Any) -> None:
        entered.set()
        release.wait(10)
        return answer(*args)

    store.get = slow_get  # type: ignore[method-assign]
    probe_call = threading.Thread(target=breaker.get, args=("job",))
    probe_call.start()
    assert entered.wait(5)
    with pytest.raises(StoreUnavailable, match="store down: failing fast"):
        breaker.delete("job")
    release.set()
    probe_call.join()
    assert breaker.delete("job") is None


def test_breaker_passes_every_call_through_with_its_arguments(
    store: Any, clock: FakeClock
) -> None:
    breaker = Breaker(store)
    timer = Timer("job", 1_000_000, 60, 2_000)
    assert breaker.put(timer) is None
    assert breaker.get("job") == timer
    assert breaker.add_miss("job", Miss(1, 2, 1)) == 1
    assert breaker.get("job").misses == 1
    breaker.clear_misses("job")
    assert breaker.get("job") == timer
    assert breaker.delete("job") == timer
    assert breaker.get("job") is None
    assert breaker.secret() == store.secret()


def test_make_store_sizes_the_client_and_the_breaker_to_the_threads(
    fake_aws: None,
) -> None:
    breaker = make_store(Config(table_name="t", region="eu-west-1", threads=5))
    assert isinstance(breaker, Breaker) and isinstance(breaker.store, DynamoStore)
    assert breaker.store.table == "t"
    assert breaker.store.client.meta.region_name == "eu-west-1"
    assert breaker._slots.qsize() == 3
    assert make_store(Config(threads=1))._slots.qsize() == 1


def test_breaker_keeps_threads_free_for_other_requests() -> None:
    store, clock = StuckStore(), FakeClock(0)
    breaker = Breaker(store, slots=2, clock=clock)
    threads = start_stuck_calls(breaker, store, 2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        breaker.get("job")
    assert str(refused.value) == "every store slot is busy"
    assert time.monotonic() - started < 1
    store.release.set()
    for thread in threads:
        thread.join()
    assert breaker.get("job") is None
    assert store.calls == 3


class SlowAndFast(StuckStore):
    """Calls for "stuck" wait until released; the others come back at once."""

    def get(self, *args: Any) -> Timer | None:
        if args and args[0] == "stuck":
            return super().get(*args)
        return None


def test_slow_calls_while_others_come_back_are_overload_not_a_store_down() -> None:
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(0.9)
    assert breaker.get("quick") is None  # a call comes back at 1000.9
    clock.advance(0.5)  # two calls have waited 1.4 s; one came back 0.5 s ago
    assert breaker.get("quick") is None
    clock.advance(1.01)  # and now nothing has come back for over a second
    with pytest.raises(StoreUnavailable, match="store not answering"):
        breaker.get("quick")
    store.release.set()
    for thread in stuck:
        thread.join()


def test_calls_are_stuck_only_once_nothing_has_come_back_for_over_a_second() -> None:
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(0.5)
    assert breaker.get("quick") is None  # came back at 1000.5
    clock.advance(1.0)  # exactly a second since; the two waited 1.5 s
    assert breaker.get("quick") is None
    store.release.set()
    for thread in stuck:
        thread.join()


def test_nothing_back_for_a_second_is_not_stuck_while_calls_are_young() -> None:
    """No answer for 1.3 s, but the two calls in flight began 0.5 s ago."""
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    clock.advance(0.8)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(0.5)
    assert breaker.get("quick") is None
    store.release.set()
    for thread in stuck:
        thread.join()


def test_with_nothing_back_calls_in_flight_exactly_a_second_are_not_stuck() -> None:
    store, clock = SlowAndFast(), FakeClock(1000)
    breaker = Breaker(store, slots=4, clock=clock)
    clock.advance(0.5)
    stuck = start_stuck_calls(breaker, store, 2, "stuck")
    clock.advance(1.0)  # nothing back for 1.5 s; the two began 1.0 s ago
    assert breaker.get("quick") is None
    store.release.set()
    for thread in stuck:
        thread.join()
