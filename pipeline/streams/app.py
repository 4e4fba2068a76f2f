"""The faust application: topics, the subscriber table and two thin agents.

Each agent takes a batch of Kafka records, hands it to a stage (`stages.py`), sends
what comes back and waits for the broker's acknowledgement; faust commits the
batch's offsets only after that, so every output is written before its input is
marked done (at-least-once, with deterministic message ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import faust
from faust.streams import _current_event  # the context var stores read the partition from
from faust.types import EventT

from pipeline import topics
from pipeline.codec import SchemaRegistry, default_registry
from pipeline.domain import KeyMaker
from pipeline.domain.models import Policy, SubscriberState
from pipeline.health import Health
from pipeline.metrics import Metrics, build_metrics
from pipeline.settings import KafkaSecurity, Settings
from pipeline.streams import progress
from pipeline.streams.batching import batches
from pipeline.streams.envelopes import (
    envelope_table,
    install_envelopes,
    mark_handled,
    records_of,
)
from pipeline.streams.fetch_wait import install_fetch_wait
from pipeline.streams.recovery_guard import install_end_offset_guard
from pipeline.streams.reference import ReferenceData
from pipeline.streams.seek_guard import install_rewind_after_seek
from pipeline.streams.sending import BulkSender, ChunkWriter
from pipeline.streams.stages import Clock, Decide, Ingest, InRecord, OutRecord
from pipeline.streams.state_codec import decode_state, encode_state
from pipeline.streams.window_store import Stored, WindowTable

log = logging.getLogger(__name__)

EMPTY_STATE = SubscriberState()
V = TypeVar("V")


def wall_clock() -> int:
    """Return the time now in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class DecodedMemo(Generic[V]):
    """Recently used keys' decoded values, each with the stored bytes it was decoded from.

    Decoding a subscriber's state costs more than deciding for them, and a worker reads
    back what it wrote a batch ago again and again (a campaign in waves, signals then
    events). A value is reused only while the table still holds the very bytes it came
    from, so nothing (changelog recovery, a rebalance) can make it stale.
    """

    def __init__(self, decode: Callable[[bytes], V], size: int) -> None:
        self._decode, self._size = decode, size
        self._entries: OrderedDict[bytes, tuple[bytes, V]] = OrderedDict()

    def decode(self, key: bytes, raw: bytes) -> V:
        """Return `raw` decoded, from memory if `key` was last seen holding these bytes."""
        hit = self._entries.get(key)
        if hit is not None and (hit[0] is raw or hit[0] == raw):
            self._entries.move_to_end(key)
            return hit[1]
        value = self._decode(raw)
        self.remember(key, raw, value)
        return value

    def remember(self, key: bytes, raw: bytes, value: V) -> None:
        self._entries[key] = (raw, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


class TableCache(dict[str, V]):
    """The keys one batch touches: read through from a faust table, written back once."""

    def __init__(
        self,
        table: Any,
        memo: DecodedMemo[V],
        encode: Callable[[V], bytes],
        empty: V,
    ) -> None:
        super().__init__()
        self._table, self._memo, self._encode, self._empty = table, memo, encode, empty
        self.dirty: set[str] = set()

    def __missing__(self, key: str) -> V:
        raw_key = key.encode()
        raw = self._table.get(raw_key)
        value = self._memo.decode(raw_key, raw) if raw is not None else self._empty
        super().__setitem__(key, value)
        return value

    def get(self, key: str, default: Any = None) -> V:
        return self[key]

    def __setitem__(self, key: str, value: V) -> None:
        # Values are immutable: the same object back means nothing changed, and writing a
        # big business window back for every batch would cost milliseconds and a changelog
        # record each time.
        if dict.get(self, key) is value:
            return
        self.dirty.add(key)
        super().__setitem__(key, value)

    def write_back(self, partition: int) -> list[OutRecord]:
        """Store every changed value; return its changelog records for the caller to send.

        The caller sends them and waits for the broker before sending the outputs they
        explain (state first), in one bulk send: faust's own changelog path queues and
        flushes one record at a time, which cost a fifth of the worker's time.
        """
        topic = self._table.changelog_topic.get_topic_name()
        changes = []
        for key in self.dirty:
            value = self[key]
            raw_key, raw = key.encode(), self._encode(value)
            self._table.data[raw_key] = raw  # the local store, as changelog recovery fills it
            self._memo.remember(raw_key, raw, value)
            changes.append(OutRecord(topic, raw_key, raw, partition))
        self.dirty.clear()
        return changes


# How long a stopping worker waits for the batch in hand to be written.
FINISH_ON_STOP_S = 60.0

# Outputs a stage sends at once: ~2 MB of outcomes, under a second of deciding.
FLUSH_AT = 5_000

# Envelopes queued per agent before the consumer stops fetching for it (back pressure).
STREAM_BUFFER_ENVELOPES = 16

# Decoded states kept per worker: ~4 KB of Python objects each, so ~80 MB at most.
STATE_MEMO_SIZE = 20_000


def subscriber_states(
    table: Any, memo: DecodedMemo[SubscriberState] | None = None
) -> TableCache[SubscriberState]:
    return TableCache(table, memo or DecodedMemo(decode_state, 0), encode_state, EMPTY_STATE)


def business_windows(table: Any, known: dict[str, Stored] | None = None) -> WindowTable:
    return WindowTable(table, known if known is not None else {})


@contextlib.contextmanager
def on_partition_of(event: EventT[Any]) -> Iterator[None]:
    """Make faust's stores see `event` as current: RocksDB writes to its partition's db."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def as_stream(stream: faust.StreamT[bytes]) -> faust.Stream[bytes]:
    """Narrow an agent's stream to faust's Stream class, which `batches` works on."""
    assert isinstance(stream, faust.Stream)
    return stream


def in_records(events: Sequence[EventT[Any]]) -> list[InRecord]:
    """Return the Kafka records a batch of events carries, envelopes unwrapped."""
    out: list[InRecord] = []
    for e in events:
        m = e.message
        wrapped = records_of(m.value)
        if wrapped is None:
            out.append(InRecord(m.topic, m.partition, m.offset, m.key, m.value))
        else:
            out.extend(InRecord(r.topic, r.partition, r.offset, r.key, r.value) for r in wrapped)
    return out


def by_partition(
    events: Sequence[EventT[Any]],
) -> list[list[EventT[Any]]]:
    """Split a batch by partition number, keeping each partition's order."""
    groups: dict[int, list[EventT[Any]]] = defaultdict(list)
    for e in events:
        groups[e.message.partition].append(e)
    return list(groups.values())


def faust_credentials(security: KafkaSecurity) -> Any:
    """Map Herald's Kafka security settings onto faust's credentials object."""
    protocol = security.security_protocol.upper()
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=security.ssl_cafile)
        if security.ssl_certfile:
            context.load_cert_chain(security.ssl_certfile, keyfile=security.ssl_keyfile)
    if protocol.startswith("SASL"):
        password = security.sasl_password.reveal().decode() if security.sasl_password else None
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=password,
            mechanism=security.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def build_app(
    settings: Settings,
    policy: Policy,
    *,
    metrics: Metrics | None = None,
    codec: SchemaRegistry | None = None,
    clock: Clock = wall_clock,
    health: Health | None = None,
) -> faust.App:
    """Build Herald's faust app: ingest and decide agents over the subscriber table."""
    metrics = metrics or build_metrics()
    health = health or Health()
    codec = codec or default_registry()
    candidates = topics.candidates_topic(settings.app_id)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        broker_credentials=faust_credentials(settings.security),
        store=settings.store_url,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        consumer_auto_offset_reset="earliest",
        # One batch per partition per send (BulkSender): big enough for a whole batch's
        # outcomes, under the producer's 1 MB request limit.
        producer_max_batch_size=512 * 1024,
        # Events waiting for an agent, at most: envelopes, each up to a partition's fetch
        # (faust's consumer_max_fetch_size, 1 MB). faust's default, 4,096, assumes one
        # record an event, and would let an overloaded worker hold gigabytes.
        stream_buffer_maxsize=STREAM_BUFFER_ENVELOPES,
        web_enabled=False,
        Table=envelope_table(),
    )
    # Bytes in, bytes out: the Avro codec decodes inside the stages, where a bad record
    # becomes a dead letter instead of an error deep inside faust. (Declaring the topics
    # with key_type/value_type=bytes instead makes faust drop every record silently.)
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    events_in = app.topic(topics.BUSINESS_EVENTS, **raw)
    decide_in = app.topic(candidates, topics.ACCOUNT_LINKS, topics.USER_SIGNALS, **raw)
    table_args: dict[str, Any] = {
        "partitions": settings.partitions, "key_type": bytes, "value_type": bytes,
        # Recovery applies its buffer every this many changelog events: envelopes of up
        # to a fetch's worth of records each (faust's default, 1,000, assumes records).
        "recovery_buffer_size": 4,
    }  # fmt: skip
    subscribers = app.Table("subscribers", **table_args)
    businesses = app.Table("businesses", **table_args)  # co-partitioned with business-events

    install_end_offset_guard(settings.broker, settings.security.aiokafka_config())
    install_rewind_after_seek()
    install_fetch_wait(settings.fetch_wait_ms)
    install_envelopes()
    reference = ReferenceData(policy, codec)
    ingest_stage = Ingest(
        codec, KeyMaker(settings.subscriber_secret.reveal()), policy, settings.partitions,
        candidates, clock, metrics,
    )  # fmt: skip
    decide_stage = Decide(codec, policy, candidates, clock, metrics)
    size, within = settings.batch_size, settings.batch_within_s
    # aiokafka's producer, under faust's: faust's own send is per record.
    sender = BulkSender(app.producer._ensure_producer, metrics)  # type: ignore[attr-defined]

    async def follow_reference_data() -> None:
        await reference.follow(settings.broker, settings.security.aiokafka_config())

    app.task(follow_reference_data)

    async def watch_health() -> None:
        probe = BrokerProbe(settings.broker, settings.security.aiokafka_config())
        while True:
            health.beat()
            health.recovered = (
                app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
                and not app.rebalancing
                and not app.in_recovery
            )
            health.reference_loaded = reference.caught_up.is_set()
            if await probe.answers():
                health.broker_answered()
                metrics.broker_reachable.set(1)
            else:
                metrics.broker_reachable.set(0)
            metrics.ready.set(1 if health.ready()[0] else 0)
            await asyncio.sleep(1.0)

    app.task(watch_health)

    async def watch_progress() -> None:
        inputs = {topics.BUSINESS_EVENTS, candidates, topics.ACCOUNT_LINKS, topics.USER_SIGNALS}
        await progress.ProgressWatch(
            app, inputs, progress.StallDetector(settings.stall_after_s, health.now),
            progress.Offsets(settings.broker, settings.security.aiokafka_config()),
            metrics, health, lambda: health.recovered, settings.debug_pause_file,
        ).run()  # fmt: skip

    app.task(watch_progress)

    async def report_state() -> None:
        """Export the policy version and, every 30 s, how many keys each table holds."""
        tables = {"subscribers": subscribers, "businesses": businesses}
        while True:
            metrics.policy.info({"version": reference.policy.version})
            for name, table in tables.items():
                # A RocksDB store counts by iterating its keys: off the event loop.
                entries = await asyncio.to_thread(len, table.data)
                metrics.state_entries.labels(table=name).set(entries)
            await asyncio.sleep(30.0)

    app.task(report_state)

    async def run_stage(
        stream: faust.StreamT[bytes],
        stage: Ingest | Decide,
        table: Any,
        cache: Callable[[Any], Any],  # a TableCache or WindowTable of the stage's table
    ) -> None:
        """Feed batches to a stage, one partition at a time; write state, then outputs.

        A stage yields its outputs in chunks of about FLUSH_AT recipients' worth: a batch
        can hold a whole campaign, and its first recipients should not wait for its
        last. Each full chunk is written as soon as it is made, while the stage goes
        on; the small remainders of each partition are written together. A batch's
        offsets are committed only once everything in it is acknowledged: its events
        are marked handled then, and acking an event not marked commits nothing.
        """
        await reference.caught_up.wait()  # no decision before suspensions are known
        latency = metrics.stage_latency.labels(stage=stage.name)
        events_of = as_stream(stream)
        # One writer for the agent's life: a batch's outputs follow the last batch's, and
        # the next batch is decided while the broker writes this one.
        writer = ChunkWriter(sender, table)
        finishing: set[asyncio.Future[None]] = set()
        crashing: list[asyncio.Future[None]] = []

        async def handle(events: Sequence[EventT[Any]]) -> asyncio.Future[None]:
            """Decide a batch and hand its writes over; return when they are acknowledged."""
            stage.policy = reference.policy
            out: list[OutRecord] = []
            changes: list[OutRecord] = []
            for group in by_partition(events):
                cached = cache(table)
                chunks = stage.process_in_chunks(in_records(group), cached, FLUSH_AT)
                for chunk, full in chunks:
                    out.extend(chunk)
                    # The RocksDB store picks its per-partition database from faust's
                    # current event when write_back stores a value.
                    with on_partition_of(group[-1]):
                        changes.extend(cached.write_back(group[-1].message.partition))
                    if full or len(out) >= FLUSH_AT:
                        await writer.write(changes, out)
                        out, changes = [], []
            await writer.write(changes, out)
            return writer.written()

        async def finish(
            events: Sequence[EventT[Any]], written: asyncio.Future[None], started: float
        ) -> None:
            """Once a batch's writes are acknowledged, ack its events: faust commits them."""
            await written
            for event in events:
                mark_handled(event)  # acking an event not marked commits nothing
                await events_of.ack(event)
            latency.observe(time.perf_counter() - started)

        def stop_worker(exc: BaseException) -> Awaitable[None]:
            # A send the producer gave up on, or a bug: nothing of the batch is committed.
            # faust would restart the agent on the next batch, and commits would stop at
            # this one while later batches were written: stop the worker instead, so that
            # a restart does this batch again.
            log.error("%s stage failed; stopping the worker: %s", stage.name, type(exc).__name__)
            return app.crash(exc)

        def finished(task: asyncio.Future[None]) -> None:
            finishing.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                crashing.append(asyncio.ensure_future(stop_worker(exc)))

        async for events in batches(events_of, size, within):
            started = time.perf_counter()
            batch = asyncio.ensure_future(handle(events))
            try:
                written = await asyncio.shield(batch)
            except asyncio.CancelledError:
                # A graceful stop cancels the agent wherever it awaits: finish the batch
                # in hand and every write under way, so that what was written is committed
                # and not done again after the restart. faust waits for the agent to end.
                written = await asyncio.wait_for(asyncio.shield(batch), FINISH_ON_STOP_S)
                finishing.add(asyncio.ensure_future(finish(events, written, started)))
                await asyncio.wait_for(asyncio.gather(*finishing), FINISH_ON_STOP_S)
                raise
            except Exception as exc:
                await stop_worker(exc)
                raise
            task = asyncio.ensure_future(finish(events, written, started))
            finishing.add(task)
            task.add_done_callback(finished)

    @app.agent(events_in, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        known: dict[str, Stored] = {}
        await run_stage(stream, ingest_stage, businesses, lambda t: business_windows(t, known))

    @app.agent(decide_in, name="decide")
    async def decide(stream: faust.StreamT[bytes]) -> None:
        memo = DecodedMemo(decode_state, STATE_MEMO_SIZE)
        await run_stage(stream, decide_stage, subscribers, lambda t: subscriber_states(t, memo))

    return app


class BrokerProbe:
    """Asks the broker for metadata with a short timeout: does it answer right now?"""

    def __init__(self, bootstrap: str, client_config: dict[str, Any]) -> None:
        self.bootstrap, self.client_config = bootstrap, client_config
        self.client: Any = None

    async def answers(self, timeout: float = 2.0) -> bool:
        from aiokafka.client import AIOKafkaClient

        try:
            if self.client is None:
                self.client = AIOKafkaClient(bootstrap_servers=self.bootstrap, **self.client_config)
                await asyncio.wait_for(self.client.bootstrap(), timeout)
            await asyncio.wait_for(self.client.fetch_all_metadata(), timeout)
            return True
        except Exception:  # any failure to answer in time means "not now"
            client, self.client = self.client, None
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
            return False


def offset_clock(path: Path) -> Clock:
    """Return a clock that runs `int(path's content)` ms ahead of the wall (tests only)."""

    def now() -> int:
        try:
            offset = int(path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0
        return wall_clock() + offset

    return now
