"""Business windows in the businesses table, in segments: a batch writes what changed.

One record per business used to hold its whole window of users reached, ~81 bytes a
user: a TIER_4 business (100,000 users a day) wrote an 8 MB changelog record for every
batch that reached someone new, 56 ms to encode and eight times what a Kafka broker
takes by default (`message.max.bytes`, 1 MB), which stopped the worker for good.

Now a window's entries are numbered in the order they were added (time order) and kept
SEGMENT to a record, under `<business>\\x1f<segment number>`; the business's own key
holds the head, `[first, next, last subscriber, last time]`: entries first..next-1 are
live. Reaching new users rewrites the last segment or two and the head; pruning moves
`first` and deletes the segments wholly below it. A head written by an older Herald (the
whole window as one JSON object) is read as before and replaced by segments on the next
write.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import orjson

from pipeline.domain import BusinessWindow
from pipeline.streams.stages import OutRecord

SEGMENT = 500  # entries a segment record holds: ~40 KB
KNOWN = 1_000  # businesses whose decoded windows an agent keeps between batches
SEPARATOR = "\x1f"  # between a business id and a segment number (validation refuses it in ids)


@dataclass
class Stored:
    """What the table holds for one business, as this worker last read or wrote it."""

    head: bytes | None  # the head record's bytes (None: nothing stored)
    window: BusinessWindow
    first: int  # the number of the window's first entry
    order: list[str]  # the live subscribers, in number order: order[i] is first + i
    legacy: bool = False  # stored by an older Herald as one record


class WindowTable(dict[str, BusinessWindow]):
    """The windows one batch touches: read through from the table, written back as deltas.

    `known` outlives the batch (one per agent): a window is decoded once, and reused
    while the table's head is still the one it came with (the head names the last entry,
    so a window another worker changed meanwhile is read again).
    """

    def __init__(self, table: Any, known: dict[str, Stored], segment: int = SEGMENT) -> None:
        super().__init__()
        self._table, self._known, self._segment = table, known, segment
        self._stored: dict[str, Stored] = {}  # as read, for the businesses of this batch
        self.dirty: set[str] = set()

    def __missing__(self, business_id: str) -> BusinessWindow:
        head = self._table.get(business_id.encode())
        stored = self._known.pop(business_id, None)
        if stored is None or stored.head != head:
            stored = read(self._table, business_id, head, self._segment)
        self._remember(business_id, stored)
        self._stored[business_id] = stored
        super().__setitem__(business_id, stored.window)
        return stored.window

    def _remember(self, business_id: str, stored: Stored) -> None:
        self._known[business_id] = stored  # last in the dict: the most recently used
        if len(self._known) > KNOWN:
            del self._known[next(iter(self._known))]

    def get(self, key: str, default: Any = None) -> BusinessWindow:
        return self[key]

    def __setitem__(self, business_id: str, window: BusinessWindow) -> None:
        if dict.get(self, business_id) is window:
            return  # windows are immutable: the same object back means nothing changed
        if business_id not in self:
            self.__missing__(business_id)  # what is stored: write_back writes the difference
        self.dirty.add(business_id)
        super().__setitem__(business_id, window)

    def write_back(self, partition: int) -> list[OutRecord]:
        """Store every changed window; return its changelog records for the caller to send."""
        topic = self._table.changelog_topic.get_topic_name()
        changes: list[OutRecord] = []
        for business_id in self.dirty:
            writes, stored = changed(
                business_id, self._stored[business_id], self[business_id], self._segment
            )
            self._stored[business_id] = stored
            self._known.pop(business_id, None)
            self._remember(business_id, stored)
            for key, value in writes:
                raw_key = key.encode()
                if value is None:
                    self._table.data.pop(raw_key, None)
                else:
                    self._table.data[raw_key] = value
                # A deleted segment's tombstone: compaction then drops it from the changelog.
                changes.append(OutRecord(topic, raw_key, value, partition))  # type: ignore[arg-type]
        self.dirty.clear()
        return changes


def encode_window(window: BusinessWindow) -> bytes:
    """Serialise a whole window as one record: older Heralds' format, and the naive
    benchmark agent's."""
    return orjson.dumps(dict(window.reached))


def decode_window(data: bytes) -> BusinessWindow:
    return BusinessWindow(MappingProxyType(orjson.loads(data)))


def segment_key(business_id: str, segment: int) -> str:
    return f"{business_id}{SEPARATOR}{segment}"


def read(table: Any, business_id: str, head: bytes | None, size: int = SEGMENT) -> Stored:
    """Decode what the table holds for a business (its head, then its live segments)."""
    if head is None:
        return Stored(None, BusinessWindow(), 0, [])
    if head.startswith(b"{"):  # an older Herald's whole window
        window = decode_window(head)
        return Stored(head, window, 0, list(window.reached), legacy=True)
    value = orjson.loads(head)
    first, next_, *_ = value
    reached: dict[str, int] = {}
    for segment in range(first // size, _segments_to(next_, size)):
        raw = table.get(segment_key(business_id, segment).encode())
        if raw is None:
            raise ValueError(f"business window segment {segment} of {business_id!r} is missing")
        start, entries = orjson.loads(raw)
        for i, (subscriber, at) in enumerate(entries):
            if first <= start + i < next_:
                reached[subscriber] = at
    return Stored(head, BusinessWindow(MappingProxyType(reached)), first, list(reached))


def changed(
    business_id: str, stored: Stored, window: BusinessWindow, size: int = SEGMENT
) -> tuple[list[tuple[str, bytes | None]], Stored]:
    """Return the records that turn `stored` into `window` (key, bytes or None to delete).

    In the order they must be written: segments, then the head, then tombstones, so that
    if only the first of them reach the changelog (a batch cut short) the old head still
    reads its old window, and the new head only the new one. Uses up `stored.order`.
    """
    old, new = stored.window.reached, window.reached
    old_first, old_end = stored.first, stored.first + len(stored.order)
    # `admit` drops expired entries from the front and adds new ones at the end: find
    # the new ones from the end (a user pruned and reached again has a new time).
    added, last_kept = 0, None
    for subscriber, at in _newest_first(new):
        if old.get(subscriber) == at:
            last_kept = subscriber
            break
        added += 1
    kept = len(new) - added
    dropped = len(stored.order) - kept
    order = stored.order
    # What is kept is in the old order; if it starts and ends where the old order does
    # from `dropped` on, it is the old order from there (a clock stepped back can make
    # pruning drop entries from the middle or the end instead).
    in_order = not stored.legacy and dropped >= 0 and (
        kept == 0 or (next(iter(new)) == order[dropped] and last_kept == order[-1])
    )  # fmt: skip
    pruned: list[list[Any]] = []  # old entries of the segment added to, pruned now
    if in_order:
        first, start = old_first + dropped, old_end
        keep_from = max(start // size * size, old_first)
        if added and keep_from < first:  # written again: the old head still counts them
            pruned = [[s, old[s]] for s in order[keep_from - old_first : first - old_first]]
        # In place: the stored state this replaces is not used again, and copying a big
        # window's order cost more than the rest of the write.
        del order[:dropped]
        order.extend(_last(new, added))
    else:  # write it all anew in segments of its own, the old ones readable till the head moves
        first = start = _segments_to(old_end, size) * size
        order = list(new)
    next_ = first + len(order)
    writes: list[tuple[str, bytes | None]] = []
    for segment in range(start // size, _segments_to(next_, size) if next_ > start else 0):
        lo = max(segment * size, first)
        hi = min((segment + 1) * size, next_)
        entries = [[s, new[s]] for s in order[lo - first : hi - first]]
        if pruned and segment == start // size:
            lo, entries = lo - len(pruned), pruned + entries
        writes.append((segment_key(business_id, segment), orjson.dumps([lo, entries])))
    last = [order[-1], new[order[-1]]] if order else []
    head = orjson.dumps([first, next_, *last])
    writes.append((business_id, head))
    if not stored.legacy:  # the segments wholly below the first live entry
        for segment in range(old_first // size, first // size):
            writes.append((segment_key(business_id, segment), None))
    return writes, Stored(head, window, first, order)


def _segments_to(end: int, size: int) -> int:
    """The number of segments entries 0..end-1 take (the segment after the last)."""
    return -(-end // size)


def _newest_first(mapping: Mapping[str, int]) -> Iterator[tuple[str, int]]:
    # A window's mapping is a dict or a read-only view of one: both iterate backwards.
    return reversed(cast("dict[str, int]", mapping).items())


def _last(mapping: Mapping[str, int], n: int) -> Iterator[str]:
    """The last `n` keys of an insertion-ordered mapping, in order."""
    if n == 0:
        return iter(())
    keys: list[str] = []
    for key, _ in _newest_first(mapping):
        keys.append(key)
        if len(keys) == n:
            break
    return reversed(keys)
