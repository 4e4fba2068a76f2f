"""Input partitions restart after table recovery where the group left off, every record once.

While a worker recovers its tables, its input partitions are paused, but the consumer
keeps prefetching them. When recovery ends, faust (0.15) resumes those partitions,
seeks them to their committed offsets (awaiting the broker once per partition), and
only then resumes flow control, which clears every stream's queue. Its fetcher hands
records over to the streams all along: those that reached a queue before the clear
were dropped, while faust's read offset (the last offset handed over: it drops any
record below it, and so do Herald's envelopes) was already past them. Upstream knows the race as
faust-streaming/faust#596, open at the time of writing.

Herald closes it in two steps:

1. Hold: while recovery ends, faust's resume of the input partitions is held back,
   and they are resumed only in `resume_flow`, which faust calls right after clearing
   the queues (no await between). Nothing is handed over to be cleared.
2. Rewind: after faust's seek, every input partition is put back to its committed
   offset, or to the earliest offset when it has none (consumer_auto_offset_reset=
   "earliest"), and faust's read offset with it. faust does not seek a partition the
   group never committed, so records handed over and cleared before the rebalance
   (a new deployment, a restart before the first commit) were lost for good. The cost
   is one refetch per input partition after each recovery.

The rewind alone was not enough: the fetcher went on handing over a batch it had in
hand while the rewind ran and after the clear, so faust's read offset moved past the
rewind again. The refetched records below it were dropped as already read and the last
one was handed over twice: a worker stopped and restarted mid-run lost whole events and
decided another twice.
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
    """Hold input partitions through faust's seek and clear; then rewind what it lost."""
    global _installed
    if _installed:
        return
    from faust.tables.recovery import Recovery
    from faust.transport.consumer import Consumer, ThreadDelegateConsumer

    original_seek = ThreadDelegateConsumer.perform_seek
    resume_partitions = Consumer.resume_partitions
    resume_flow = Consumer.resume_flow

    async def perform_seek_and_rewind(self: Any) -> None:
        await original_seek(self)
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
        await thread.call_thread(seek_all)
        for tp in targets:
            self._read_offset[tp] = committed[tp]

    def resume_partitions_held(self: Any, tps: Iterable[Any]) -> None:
        now = set(tps)
        held = self.__dict__.get("_herald_held")
        if held is not None:  # recovery is ending: input partitions wait for resume_flow
            inputs = {tp for tp in now if not self._is_changelog_tp(tp)}
            held |= inputs
            now -= inputs
        resume_partitions(self, now)

    def resume_flow_and_held(self: Any) -> None:
        held = self.__dict__.pop("_herald_held", None)
        if held:
            # Right after faust cleared the queues: the first record handed over now is
            # the one the rewind put the partition back to.
            resume_partitions(self, held & set(self.assignment()))
        resume_flow(self)

    def holding(method: Any) -> Any:
        async def hold_inputs_until_resume_flow(self: Any, *args: Any, **kwargs: Any) -> None:
            consumer = self.app.consumer
            consumer._herald_held = set()
            try:
                await method(self, *args, **kwargs)
            finally:
                # Not resumed (a new rebalance came first): they stay paused, and that
                # rebalance's recovery resumes them.
                consumer.__dict__.pop("_herald_held", None)

        return hold_inputs_until_resume_flow

    ThreadDelegateConsumer.perform_seek = perform_seek_and_rewind  # type: ignore[method-assign]
    Consumer.resume_partitions = resume_partitions_held  # type: ignore[method-assign]
    Consumer.resume_flow = resume_flow_and_held  # type: ignore[method-assign]
    # The two places faust 0.15 resumes input partitions, each followed by the seek, the
    # clear and resume_flow.
    Recovery._resume_streams = holding(Recovery._resume_streams)  # type: ignore[method-assign]
    Recovery.on_recovery_completed = holding(Recovery.on_recovery_completed)  # type: ignore[method-assign]
    _installed = True
