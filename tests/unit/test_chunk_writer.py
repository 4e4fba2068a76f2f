"""ChunkWriter's order of writes: each chunk's state before its outputs, outputs in order.

The writer only coordinates what it hands to a sender and when; these tests drive it with
a sender whose acknowledgements the test releases one by one, so each ordering rule can
be seen to hold at the moment it matters. (The stream tests write through the real
producer and broker, crash and replay included.)
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from pipeline.streams.sending import ChunkWriter
from pipeline.streams.stages import OutRecord


class SendFailed(Exception):
    """The broker never acknowledged a write."""


class ReleasedSender:
    """Records what it is handed, in order; each write is acknowledged when released."""

    def __init__(self) -> None:
        self.handed: list[bytes] = []  # the first record of each write, in hand-over order
        self._acks: dict[bytes, asyncio.Future[None]] = {}

    async def enqueue(self, out: Sequence[OutRecord]) -> bytes:
        name = out[0].value if out else b"(nothing)"
        self.handed.append(name)
        self._acks[name] = asyncio.get_running_loop().create_future()
        return name

    async def acknowledged(self, name: bytes) -> dict[tuple[str, int], int]:
        await self._acks[name]
        return {}  # no offsets: the writer notes none on the table

    def release(self, name: bytes, error: Exception | None = None) -> None:
        if error is None:
            self._acks[name].set_result(None)
        else:
            self._acks[name].set_exception(error)


def records(name: str) -> list[OutRecord]:
    return [OutRecord("t", None, name.encode(), 0)]


async def settle() -> None:
    for _ in range(10):  # a few turns of the loop: every task that can move, moves
        await asyncio.sleep(0)


def run_async(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test function on a fresh event loop."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def writer_of(sender: ReleasedSender) -> ChunkWriter:
    return ChunkWriter(sender, table=None)  # type: ignore[arg-type]


async def two_chunks(sender: ReleasedSender) -> ChunkWriter:
    writer = writer_of(sender)
    await writer.write(records("state-1"), records("out-1"))
    await writer.write(records("state-2"), records("out-2"))
    return writer


async def release_all_but_the_first_output(sender: ReleasedSender) -> None:
    for name in (b"state-1", b"state-2", b"out-2"):
        await settle()  # each write is handed over before it can be acknowledged
        sender.release(name)
    await settle()


@run_async
async def test_a_chunks_outputs_wait_for_its_state() -> None:
    sender = ReleasedSender()
    writer = writer_of(sender)
    await writer.write(records("state-1"), records("out-1"))
    await settle()
    assert sender.handed == [b"state-1"]  # outputs held back
    sender.release(b"state-1")
    await settle()
    assert sender.handed == [b"state-1", b"out-1"]


@run_async
async def test_outputs_follow_the_previous_chunks_handed_over_not_acknowledged() -> None:
    """Chunk 2's outputs go once its state is in and chunk 1's outputs are handed over:
    the producer keeps that order, so waiting for chunk 1's acknowledgement only delays."""
    sender = ReleasedSender()
    await two_chunks(sender)
    sender.release(b"state-2")  # chunk 2's state first: its outputs still wait
    await settle()
    assert sender.handed == [b"state-1", b"state-2"]
    sender.release(b"state-1")
    await settle()
    assert sender.handed == [b"state-1", b"state-2", b"out-1", b"out-2"]


@run_async
async def test_written_ends_only_when_every_chunk_is_acknowledged() -> None:
    sender = ReleasedSender()
    written = (await two_chunks(sender)).written()
    await release_all_but_the_first_output(sender)
    assert not written.done()  # chunk 1's outputs are not acknowledged yet
    sender.release(b"out-1")
    await settle()
    assert written.done() and written.exception() is None


@run_async
async def test_a_failed_state_stops_its_outputs_and_every_later_chunks() -> None:
    sender = ReleasedSender()
    written = (await two_chunks(sender)).written()
    sender.release(b"state-2")
    sender.release(b"state-1", SendFailed())
    await settle()
    assert sender.handed == [b"state-1", b"state-2"]  # no output after the failure
    with pytest.raises(SendFailed):
        await written


@run_async
async def test_a_failed_output_fails_the_chunks_after_it() -> None:
    """Outputs already handed over may still land; the caller must not commit any of it."""
    sender = ReleasedSender()
    written = (await two_chunks(sender)).written()
    await release_all_but_the_first_output(sender)
    sender.release(b"out-1", SendFailed())
    with pytest.raises(SendFailed):
        await written
