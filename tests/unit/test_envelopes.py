"""Commit bookkeeping for envelopes, on faust's own consumer methods (no broker).

The consumer below carries faust 0.15's commit state and uses faust's real
`Consumer._add_gap` and `_new_offset` and the `Consumer.ack` Herald installs; `_fetch`
does what Herald's getmany and then faust's fetch loop (`_drain_messages`) do with a
fetch's records. tests/stream/test_envelopes.py checks the same on a real broker.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree

from pipeline.streams.envelopes import (
    envelope_message,
    install_envelopes,
    mark_handled,
    prepare_envelope,
)

install_envelopes()
TOPIC = TP("user-signals", 0)


class CommitState:
    """faust's consumer commit state, with faust's (and Herald's) methods over it."""

    _add_gap = Consumer._add_gap
    _new_offset = Consumer._new_offset
    ack = Consumer.ack

    def __init__(self, committed: int | None) -> None:
        self._gap: defaultdict[Any, IntervalTree] = defaultdict(IntervalTree)
        self._acked: defaultdict[Any, list[int]] = defaultdict(list)
        self._acked_index: defaultdict[Any, set[int]] = defaultdict(set)
        self._read_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)
        self._committed_offset: defaultdict[Any, int | None] = defaultdict(lambda: None)
        self._unacked_messages: set[Any] = set()
        self._n_acked = 0
        self._waiting_for_ack = None
        self.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda _t: True))
        # As after faust's seek to the committed offset.
        self._committed_offset[TOPIC] = committed
        self._read_offset[TOPIC] = committed

    def fetch(self, *offsets: int) -> Any:
        """Deliver a fetch's records as an envelope message, or None if all were read."""
        records = [
            ConsumerRecord(TOPIC.topic, 0, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in offsets
        ]
        batch = asyncio.run(prepare_envelope(self, TOPIC, records, acking=True))
        if not batch:
            return None
        message = envelope_message(TOPIC, batch, 1)
        # faust's _drain_messages: drop a message below the read offset; mark the jump
        # from the read offset to the message's offset (inclusive) as a gap; read it.
        read = self._read_offset[TOPIC]
        assert read is None or message.offset >= read
        if read and message.offset - read > 1:
            asyncio.run(self._add_gap(TOPIC, read + 1, message.offset))
        self._read_offset[TOPIC] = message.offset
        return message

    def commit(self) -> int | None:
        """faust's commit: the new offset, if past the committed one."""
        offset = self._new_offset(TOPIC)
        committed = self._committed_offset[TOPIC]
        if offset is not None and (committed is None or offset > committed):
            self._committed_offset[TOPIC] = offset
        return self._committed_offset[TOPIC]


def _handled(message: Any) -> Any:
    mark_handled(SimpleNamespace(message=message))
    return message


def test_handled_envelopes_commit_every_record_in_them() -> None:
    """Acked after handling, each envelope moves the commit past its last record."""
    c = CommitState(committed=100)
    first, second = c.fetch(*range(100, 110)), c.fetch(*range(110, 120))
    assert c.commit() == 100  # fetched is not done
    c.ack(_handled(first))
    assert c.commit() == 110
    c.ack(_handled(second))
    assert c.commit() == 120


def test_an_envelope_acked_unhandled_commits_nothing_of_it_nor_beyond() -> None:
    """A failed or skipped envelope keeps the commit before it, whatever is acked later."""
    c = CommitState(committed=100)
    first, failed, third = (c.fetch(*range(s, s + 10)) for s in (100, 110, 120))
    c.ack(_handled(first))
    c.ack(failed)  # acked as faust acks what it skips, never marked handled
    c.ack(_handled(third))
    assert c.commit() == 110
    assert c.commit() == 110


def test_a_fresh_partitions_first_envelope_commits_from_its_first_record() -> None:
    """With no committed offset yet, the first envelope commits through its last record."""
    c = CommitState(committed=None)
    c.ack(_handled(c.fetch(*range(0, 50))))
    assert c.commit() == 50


def test_offsets_with_no_record_between_envelopes_do_not_hold_the_commit() -> None:
    """A hole between two fetches (compaction) is passed once the envelope after it is done."""
    c = CommitState(committed=100)
    first = c.fetch(*range(100, 110))
    after_hole = c.fetch(*range(130, 140))
    c.ack(_handled(first))
    c.ack(_handled(after_hole))
    assert c.commit() == 140


def test_records_already_handed_over_are_dropped_from_a_refetch() -> None:
    """A refetch delivers only what faust has not read (its read offset again: faust takes
    it for the next to read, as after a seek, so that record may come twice, never none)."""
    c = CommitState(committed=100)
    c.ack(_handled(c.fetch(*range(100, 110))))
    assert c.fetch(100, 101, 102) is None
    again = c.fetch(*range(105, 115))
    assert [r.offset for r in again.value.records] == list(range(109, 115))
    c.ack(_handled(again))
    assert c.commit() == 115
