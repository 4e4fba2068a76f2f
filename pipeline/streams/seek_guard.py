"""Input records prefetched during table recovery are not lost when recovery ends.

While a worker recovers its tables, its input partitions are paused, but the consumer
keeps prefetching them: records published while the group was joining wait in its
buffer. When recovery ends, faust (0.15) resumes those partitions, seeks them to their
committed offsets (awaiting the broker once per partition), and only then resumes flow
control, which clears every stream's queue. Records the fetcher hands over during
that seek reach the queues, are cleared, and the consumer's position is already past
them. A partition the group has never committed is not sought at all, so they were
lost for good: a new deployment, or a restart before the first commit, missed the
first events published while it joined. (A committed partition lost records the same
way when the fetcher refilled it between its seek and the clear.) Upstream knows the
race as faust-streaming/faust#596, open at the time of writing.

Herald wraps faust's seek: after it, with no await until faust clears the queues,
every input partition is put back to its committed offset, or to the earliest offset
when it has none (consumer_auto_offset_reset="earliest"), so whatever was cleared is
fetched again. The cost is one refetch per input partition after each recovery.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

_installed = False


def rewind_targets(
    tps: Iterable[Any], committed: Mapping[Any, int | None], earliest: Mapping[Any, int]
) -> dict[Any, int]:
    """Return where each partition's next fetch must start: committed, else earliest."""
    targets = {}
    for tp in tps:
        offset = committed.get(tp)
        if offset is None:
            offset = earliest.get(tp)
        if offset is not None:
            targets[tp] = offset
    return targets


def install_rewind_after_seek() -> None:
    """Make faust's seek to committed offsets also rewind what it would have lost."""
    global _installed
    if _installed:
        return
    from faust.transport.consumer import ThreadDelegateConsumer

    original = ThreadDelegateConsumer.perform_seek

    async def perform_seek_and_rewind(self: Any) -> None:
        await original(self)
        tps = [tp for tp in self.assignment() if not self._is_changelog_tp(tp)]
        # faust records a committed offset of 0 as None: earliest is the same place
        committed = {tp: self._committed_offset.get(tp) for tp in tps}
        fresh = [tp for tp in tps if committed[tp] is None]
        earliest = await self.earliest_offsets(*fresh) if fresh else {}
        targets = rewind_targets(tps, committed, earliest)
        thread = self._thread

        def seek_all() -> None:
            for tp, offset in targets.items():
                try:
                    thread.seek(tp, offset)
                except Exception as exc:  # reassigned meanwhile: the next rebalance seeks it
                    log.info("not rewinding %s[%d]: %s", tp.topic, tp.partition, exc)

        # In the consumer's thread, queued behind any fetch in flight: seeking from this
        # thread raced the fetcher, which crashed (KeyError) and left the worker idle.
        # A fetch queued after the seeks is handed over only after faust has cleared
        # the queues (no await between our return and the clear).
        await thread.call_thread(seek_all)
        for tp in targets:
            self._read_offset[tp] = committed[tp]

    ThreadDelegateConsumer.perform_seek = perform_seek_and_rewind  # type: ignore[method-assign]
    _installed = True
