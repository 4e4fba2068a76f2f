"""The stall detector: a partition with records waiting whose position does not move."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.errors import ConfigError
from pipeline.health import Health
from pipeline.settings import Settings
from pipeline.streams.progress import StallDetector, debug_pauses, position_of

TP = ("business-events", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def detector(stall_after: float = 30.0) -> tuple[StallDetector[tuple[str, int]], Clock]:
    clock = Clock()
    return StallDetector(stall_after, clock), clock


def test_a_partition_that_does_not_move_with_lag_stalls_after_the_period() -> None:
    """Stalled exactly once, `stall_after` seconds after its last move."""
    d, clock = detector()
    assert d.update({TP: (5, 9)}).newly_stalled == ()
    clock.now += 29
    assert d.update({TP: (5, 9)}).newly_stalled == ()
    clock.now += 1
    report = d.update({TP: (5, 9)})
    assert report.newly_stalled == (TP,) and report.stalled == {TP} and report.lags == {TP: 4}
    clock.now += 1
    assert d.update({TP: (5, 9)}).newly_stalled == ()  # noticed once, not every second


def test_progress_resets_the_clock() -> None:
    """A position that moves, however slowly, is never a stall."""
    d, clock = detector()
    for position in range(5, 15):
        clock.now += 20
        assert d.update({TP: (position, 100)}).stalled == frozenset()


def test_no_lag_is_never_a_stall() -> None:
    """An idle partition with nothing waiting is healthy however long it sits."""
    d, clock = detector()
    for _ in range(10):
        clock.now += 60
        report = d.update({TP: (7, 7)})
        assert report.stalled == frozenset() and report.lags == {TP: 0}


def test_an_end_offset_below_the_position_counts_as_no_lag() -> None:
    """The embedded broker under-reports end offsets: lag is clamped at 0, never negative."""
    d, clock = detector()
    d.update({TP: (12, 10)})
    clock.now += 60
    report = d.update({TP: (12, 10)})
    assert report.lags == {TP: 0} and report.stalled == frozenset()


def test_progress_after_a_stall_clears_it() -> None:
    """The nudge worked: the stall is reported cleared and nothing is unrecovered."""
    d, clock = detector(10)
    d.update({TP: (5, 9)})
    clock.now += 10
    assert d.update({TP: (5, 9)}).newly_stalled == (TP,)
    clock.now += 1
    report = d.update({TP: (7, 9)})
    assert report.cleared == (TP,) and report.stalled == frozenset()
    assert report.unrecovered_since is None


def test_a_stall_the_nudge_did_not_cure_is_unrecovered_after_a_second_period() -> None:
    """Still stalled `stall_after` after it was noticed: the worker must give up (not live)."""
    d, clock = detector(10)
    d.update({TP: (5, 9)})
    clock.now += 10
    noticed = clock.now
    assert d.update({TP: (5, 9)}).unrecovered_since is None
    clock.now += 9
    assert d.update({TP: (5, 9)}).unrecovered_since is None
    clock.now += 1
    assert d.update({TP: (5, 9)}).unrecovered_since == noticed


def test_unassigned_and_reset_partitions_are_forgotten() -> None:
    """A partition that left the assignment (or a recovery) starts afresh when it returns."""
    d, clock = detector(10)
    d.update({TP: (5, 9)})
    clock.now += 9
    d.update({})
    clock.now += 5
    assert d.update({TP: (5, 9)}).stalled == frozenset()
    d.reset()
    clock.now += 9
    assert d.update({TP: (5, 9)}).stalled == frozenset()


def test_a_stalled_worker_is_not_live() -> None:
    """/healthz fails while a stall outlives its nudge, and passes again once it moves."""
    clock = Clock()
    health = Health(clock=clock)
    health.beat()
    health.stalled_since = clock.now - 40
    live, why = health.live()
    assert not live and "40 s" in why
    health.stalled_since = None
    assert health.live() == (True, "ok")


def test_position_is_the_next_offset_handed_to_the_streams() -> None:
    """Last read + 1; the committed offset before anything is read, or just after a seek."""

    def consumer(read: int | None, committed: int | None) -> SimpleNamespace:
        return SimpleNamespace(_read_offset={TP: read}, _committed_offset={TP: committed})

    assert position_of(consumer(None, None), TP) is None
    assert position_of(consumer(None, 4), TP) == 4
    assert position_of(consumer(9, 4), TP) == 10
    assert position_of(consumer(4, 4), TP) == 4  # faust's read offset right after a seek


def test_debug_pauses_reads_topic_partition_lines(tmp_path: Path) -> None:
    """The test-only pause file names partitions; junk lines and a missing file are ignored."""
    path = tmp_path / "pause"
    assert debug_pauses(None) == set() and debug_pauses(path) == set()
    path.write_text("business-events 2\nnonsense\nuser-signals x\n")
    assert debug_pauses(path) == {("business-events", 2)}


def test_stall_settings_come_from_the_environment_and_the_pause_file_not_in_production() -> None:
    """HERALD_STALL_AFTER is read; the debug pause file is refused in production."""
    assert Settings.from_env(env={}).stall_after_s == 30.0
    assert Settings.from_env(env={"HERALD_STALL_AFTER": "5"}).stall_after_s == 5.0
    with pytest.raises(ConfigError, match="HERALD_STALL_AFTER"):
        Settings.from_env(env={"HERALD_STALL_AFTER": "0"})
    production = {"HERALD_ENV": "production", "HERALD_SECRET": "s3cret"}
    with pytest.raises(ConfigError, match="HERALD_DEBUG_PAUSE_FILE"):
        Settings.from_env(env={**production, "HERALD_DEBUG_PAUSE_FILE": "/tmp/pause"})
