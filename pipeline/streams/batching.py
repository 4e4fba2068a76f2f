"""Batches of a faust stream's events that wait for more only once the first has come.

faust's `Stream.take_events(max_, within)` yields what it has buffered every `within`
seconds, or as soon as `max_` events are buffered. Its timer runs whether or not
anything arrives: an idle worker woke every `within`, and every batch waited out
`within` in full, which at 10 ms per agent and hop was most of an idle worker's
latency. `take_batches` is faust 0.15's `take_events` with one change: while the buffer
is empty it waits for the first event without a timer; then it waits up to `within`
for more (an event here is an envelope, a partition's fetch: the batch is mostly there
already). It acks nothing: the caller acks each event once its outputs are written,
which may be after it has taken the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from faust.types import EventT
from mode.utils.aiter import aiter
from mode.utils.futures import notify


def batches(stream: Any, max_: int, within: float) -> AsyncGenerator[Sequence[EventT[Any]], None]:
    """Return `take_batches` of a stream, registered for the stream to close when it stops."""
    agen = take_batches(stream, max_, within)
    stream._active_agens.add(agen)  # as faust registers take_events' generators
    return agen


async def take_batches(
    stream: Any, max_: int, within: float
) -> AsyncGenerator[Sequence[EventT[Any]], None]:
    """Yield lists of at most `max_` events: what has come `within` s after the first."""
    events: list[EventT[Any]] = []
    buffer_full = asyncio.Event()
    not_empty = asyncio.Event()
    buffer_consumed = asyncio.Event()
    buffer_consuming: asyncio.Future[None] | None = None
    enable_acks: bool = stream.enable_acks

    async def add_to_buffer(value: Any) -> Any:
        # Runs for every event the stream reads (a processor, as in take_events).
        nonlocal buffer_consuming
        if buffer_consuming is not None:
            try:
                await buffer_consuming  # the batch in hand is being handled
            finally:
                buffer_consuming = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("take_batches found no current event")
        events.append(event)
        not_empty.set()
        if len(events) >= max_:
            buffer_full.set()
            buffer_consumed.clear()
            await stream.wait(buffer_consumed)  # never more than max_ in one batch
        return value

    stream.enable_acks = False  # the caller acks, once a batch's outputs are written
    stream.add_processor(add_to_buffer)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(not_empty)
            if not buffer_full.is_set():
                await stream.wait_for_stopped(buffer_full, timeout=within)
            if not events:
                continue
            buffer_consuming = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                events.clear()
                not_empty.clear()
                notify(buffer_consuming)  # no await from here to the next wait
                buffer_full.clear()
                buffer_consumed.set()
    finally:
        stream.enable_acks = enable_acks
        stream._processors.remove(add_to_buffer)
