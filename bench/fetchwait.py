"""How long a waiting consumer takes to see a new record, by fetch_max_wait_ms.

`python -m bench.fetchwait` starts its own embedded broker, then for each wait (default
1500, faust's hard-coded `fetch_max_wait_ms` for its aiokafka consumers; 500, aiokafka's
default; 100; 10) sends one record every 137 ms to an idle, long-polling aiokafka
consumer and prints the median and largest time from the record's timestamp to its
arrival. A broker that answers a waiting fetch as soon as data arrives gives a few ms
whatever the wait; a broker that does not, a share of the wait. Herald's outcome is
two consumer hops from its business event (business-events -> candidates -> outcome),
so this floor counts twice in the latency figures. Prints only; records nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence

from pipeline import topics
from pipeline.broker import EmbeddedBroker

TOPIC = "bench-fetch-wait"


async def probe(bootstrap: str, wait_ms: int, records: int) -> tuple[float, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
        fetch_max_wait_ms=wait_ms,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    try:
        await producer.start()
        try:
            tp = TopicPartition(TOPIC, 0)
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            seen: list[float] = []

            async def consume() -> None:
                while len(seen) < records:
                    for batch in (await consumer.getmany(timeout_ms=2000)).values():
                        seen.extend(time.time() * 1000 - m.timestamp for m in batch)

            task = asyncio.create_task(consume())
            await asyncio.sleep(1.0)  # the consumer is polling, idle
            for _ in range(records):
                await (await producer.send(TOPIC, b"x", partition=0))
                await asyncio.sleep(0.137)
            await asyncio.wait_for(task, 30)
        finally:
            await producer.stop()
    finally:
        await consumer.stop()
    return statistics.median(seen), max(seen)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fetchwait", description=__doc__)
    p.add_argument("--waits", default="1500,500,100,10", help="fetch_max_wait_ms values")
    p.add_argument("--records", type=int, default=20, help="records per wait")
    a = p.parse_args(argv)
    with EmbeddedBroker() as broker:
        topics.create_topics(broker.bootstrap, [(TOPIC, 1, {})])
        print("fetch_max_wait_ms  median ms  max ms  (record timestamp -> consumer has it)")
        for wait in (int(w) for w in a.waits.split(",") if w.strip()):
            median, worst = asyncio.run(probe(broker.bootstrap, wait, a.records))
            print(f"{wait:17d}  {median:9.0f}  {worst:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
