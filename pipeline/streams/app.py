"""The faust application: topics, the subscriber table and two thin agents.

Each agent takes a batch of Kafka records, hands it to a stage (`stages.py`), sends
what comes back and waits for the broker's acknowledgement; faust commits the
batch's offsets only after that, so every output is written before its input is
marked done (at-least-once, with deterministic message ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import faust
from faust.streams import _current_event  # the context var tables read the partition from
from faust.types import EventT

from pipeline import topics
from pipeline.codec import SchemaRegistry, default_registry
from pipeline.domain import KeyMaker
from pipeline.domain.models import Policy, SubscriberState
from pipeline.metrics import Metrics, build_metrics
from pipeline.settings import KafkaSecurity, Settings
from pipeline.streams.stages import Clock, Decide, Ingest, InRecord, OutRecord
from pipeline.streams.state_codec import decode_state, encode_state

EMPTY_STATE = SubscriberState()


def wall_clock() -> int:
    """Return the time now in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class TableStates(dict[str, SubscriberState]):
    """The subscribers one batch touches: read through from the table, written back once."""

    def __init__(self, table: Any) -> None:
        super().__init__()
        self._table = table
        self.dirty: set[str] = set()

    def __missing__(self, subscriber: str) -> SubscriberState:
        raw = self._table.get(subscriber.encode())
        state = decode_state(raw) if raw is not None else EMPTY_STATE
        super().__setitem__(subscriber, state)
        return state

    def get(self, subscriber: str, default: Any = None) -> SubscriberState:
        return self[subscriber]

    def __setitem__(self, subscriber: str, state: SubscriberState) -> None:
        self.dirty.add(subscriber)
        super().__setitem__(subscriber, state)

    def write_back(self) -> None:
        """Store every changed state (one changelog record per subscriber per batch)."""
        for subscriber in self.dirty:
            self._table[subscriber.encode()] = encode_state(self[subscriber])
        self.dirty.clear()


@contextlib.contextmanager
def on_partition_of(event: EventT[Any]) -> Iterator[None]:
    """Make faust's tables write changelog records to `event`'s partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def as_stream(stream: faust.StreamT[bytes]) -> faust.Stream[bytes]:
    """Narrow an agent's stream to the class that has `take_events`."""
    assert isinstance(stream, faust.Stream)
    return stream


def in_records(events: Sequence[EventT[Any]]) -> list[InRecord]:
    return [
        InRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key,
                 e.message.value)
        for e in events
    ]  # fmt: skip


def by_partition(
    events: Sequence[EventT[Any]],
) -> list[list[EventT[Any]]]:
    """Split a batch by partition number, keeping each partition's order."""
    groups: dict[int, list[EventT[Any]]] = defaultdict(list)
    for e in events:
        groups[e.message.partition].append(e)
    return list(groups.values())


async def send_all(app: faust.App, out: Sequence[OutRecord]) -> None:
    """Send records and wait until the broker has acknowledged every one."""
    producer = app.producer
    pending = [await producer.send(r.topic, r.key, r.value, r.partition, None, None) for r in out]
    if pending:
        await asyncio.gather(*pending)


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
) -> faust.App:
    """Build Herald's faust app: ingest and decide agents over the subscriber table."""
    metrics = metrics or build_metrics()
    codec = codec or default_registry()
    candidates = topics.candidates_topic(settings.app_id)
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        broker_credentials=faust_credentials(settings.security),
        store="memory://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 6),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    # Bytes in, bytes out: the Avro codec decodes inside the stages, where a bad record
    # becomes a dead letter instead of an error deep inside faust.
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    events_in = app.topic(topics.BUSINESS_EVENTS, **raw)
    decide_in = app.topic(candidates, topics.ACCOUNT_LINKS, topics.USER_SIGNALS, **raw)
    table = app.Table(
        "subscribers", partitions=settings.partitions, key_type=bytes, value_type=bytes
    )

    ingest_stage = Ingest(
        codec, KeyMaker(settings.subscriber_secret.reveal()), policy, settings.partitions,
        candidates, clock, metrics,
    )  # fmt: skip
    decide_stage = Decide(codec, policy, candidates, clock, metrics)
    size, within = settings.batch_size, settings.batch_within_s

    @app.agent(events_in, name="ingest")
    async def ingest(stream: faust.StreamT[bytes]) -> None:
        async for events in as_stream(stream).take_events(size, within=within):
            await send_all(app, ingest_stage.process(in_records(events)))

    @app.agent(decide_in, name="decide")
    async def decide(stream: faust.StreamT[bytes]) -> None:
        async for events in as_stream(stream).take_events(size, within=within):
            out: list[OutRecord] = []
            for group in by_partition(events):
                states = TableStates(table)
                out.extend(decide_stage.process(in_records(group), states))
                with on_partition_of(group[-1]):
                    states.write_back()
            await send_all(app, out)

    return app
