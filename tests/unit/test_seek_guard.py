"""Where input partitions restart after table recovery (pipeline/streams/seek_guard.py)."""

from __future__ import annotations

from pipeline.streams.seek_guard import rewind_targets


def test_committed_partitions_restart_at_their_committed_offset() -> None:
    """A partition with a committed offset refetches from it, whatever was prefetched."""
    assert rewind_targets(["a"], {"a": 7}, {}) == {"a": 7}


def test_never_committed_partitions_restart_at_the_earliest_offset() -> None:
    """No committed offset: from the earliest one, as auto_offset_reset=earliest says."""
    assert rewind_targets(["a", "b"], {"a": None, "b": 3}, {"a": 0}) == {"a": 0, "b": 3}


def test_a_partition_with_no_known_offset_is_left_alone() -> None:
    """Without a committed or an earliest offset there is nowhere safe to seek to."""
    assert rewind_targets(["a"], {"a": None}, {}) == {}
