"""The timer model on its own: its countdown, its retention, and what a reset
means. No store, no HTTP; times are epoch milliseconds."""

from __future__ import annotations

from timercheck import Miss, Reset, Timer, remembered, reset, timer_state

T0 = 1_700_000_000_000  # ms


def countdown(at: int, seconds: int = 60) -> Timer:
    return Timer("job", at, seconds, at // 1000 + seconds + 86400)


def test_the_countdown_runs_until_the_exact_second() -> None:
    timer = countdown(T0 + 5)
    assert timer.remaining(T0 + 5 + 59_999) == 1
    assert timer.remaining(T0 + 5 + 60_000) == 0
    assert timer.countdown(T0 + 5 + 60_000) == {
        "start_time": T0 // 1000,
        "start_seconds": 60,
        "seconds_elapsed": 60,
        "seconds_remaining": 0,
    }


def test_a_clock_behind_the_start_reads_as_no_time_elapsed() -> None:
    timer = countdown(T0)
    assert timer.elapsed(T0 - 3_000) == 0
    assert timer.remaining(T0 - 3_000) == 60


def test_a_timer_is_forgotten_at_its_retention_second() -> None:
    timer = Timer("job", T0, 60, T0 // 1000 + 100)
    assert not timer.forgotten(T0 + 99_999)
    assert timer.forgotten(T0 + 100_000)
    assert remembered(timer, T0 + 99_999) is timer
    assert remembered(timer, T0 + 100_000) is None
    assert remembered(None, T0) is None


def test_a_first_reset_replaces_nothing() -> None:
    new = countdown(T0)
    assert reset(None, new, T0) == Reset(None, new, None, False)


def test_a_reset_in_time_carries_the_misses_and_the_last_miss_on() -> None:
    miss = Miss(1, 2, 1)
    old = countdown(T0)._replace(misses=3, last_miss=miss)
    new = countdown(T0 + 59_999)
    outcome = reset(old, new, T0 + 59_999)
    assert outcome == Reset(old, new._replace(misses=3, last_miss=miss), None, False)


def test_a_reset_at_the_exact_second_of_expiry_ends_a_miss() -> None:
    old = countdown(T0 + 250)._replace(misses=2)
    new = countdown(T0 + 60_250)
    outcome = reset(old, new, T0 + 60_250)
    miss = Miss(T0 // 1000 + 60, T0 // 1000 + 60, 0)
    assert outcome == Reset(old, new._replace(misses=3, last_miss=miss), miss, False)


def test_a_late_reset_says_how_overdue_it_was() -> None:
    old = countdown(T0)
    outcome = reset(old, countdown(T0 + 185_900), T0 + 185_900)
    assert outcome.miss == Miss(T0 // 1000 + 60, T0 // 1000 + 185, 125)


def test_a_forgotten_timer_starts_again_and_its_misses_go() -> None:
    old = Timer("job", T0, 60, T0 // 1000 + 100, 4, Miss(1, 2, 1))
    new = countdown(T0 + 100_000)
    assert reset(old, new, T0 + 100_000) == Reset(None, new, None, True)


def test_a_forgotten_timer_without_misses_needs_no_clearing() -> None:
    old = Timer("job", T0, 60, T0 // 1000 + 100)
    new = countdown(T0 + 100_000)
    assert reset(old, new, T0 + 100_000) == Reset(None, new, None, False)


def test_the_state_a_poller_is_told() -> None:
    timer = countdown(T0)._replace(misses=2)
    assert timer_state(None, T0, None) == "never-set"
    assert timer_state(timer, T0 + 60_000, 5) == "expired"
    assert timer_state(timer, T0, None) == "running"
    assert timer_state(timer, T0, 2) == "running"
    assert timer_state(timer, T0, 1) == "missed"
