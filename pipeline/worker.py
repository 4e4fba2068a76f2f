"""Start a worker process: topics, metrics endpoint, then the faust worker loop."""

from __future__ import annotations

import contextlib
import gc
import logging
import os

from pipeline import logs, topics
from pipeline.errors import ConfigError
from pipeline.health import Health, serve_http
from pipeline.metrics import GcPauses, build_metrics
from pipeline.policy import load_policy
from pipeline.settings import Settings, format_cpu_list

log = logging.getLogger(__name__)

# At DEBUG these loggers print whole records and request payloads: the numbers in business
# events, deliveries and subscriber state. They stay at INFO whatever --loglevel says.
PAYLOAD_LOGGERS = (
    "aiokafka.conn",
    "aiokafka.producer",
    "faust.topics",
    "faust.transport.drivers.aiokafka",
)


# Collect young objects every this many allocations (CPython's default is 700). A worker
# keeps a million small objects alive (decoded states, table entries), and the collector
# went through them so often that it took a third of the time spent deciding; what it
# frees here is rare (cycles), and 50,000 objects' worth of waiting costs a few MB.
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector(pauses: GcPauses) -> None:
    """Collect less often, never look again at what exists at start-up, and time each
    collection for /metrics."""
    gc.collect()
    gc.freeze()  # modules, faust's machinery, the policy: alive for the process's life
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)
    gc.callbacks.append(pauses.on_gc)


def pin_to_cpus(cpus: frozenset[int]) -> None:
    """Run every thread of this process on `cpus` only (threads started later inherit it).

    The deciding thread hands the GIL to the consumer, producer and /metrics threads
    many times a second; on CPUs of their own they do so without moving between cores.
    """
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("HERALD_CPUS needs an OS that pins threads to CPUs (Linux)")
    available = os.sched_getaffinity(0)
    if not cpus <= available:
        missing = format_cpu_list(cpus - available)
        raise ConfigError(
            f"HERALD_CPUS names CPUs this process may not use ({missing}); "
            f"it may use {format_cpu_list(available)}"
        )
    # Linux sets one thread's affinity per call: every thread running now, then this one.
    threads = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that has just ended
            os.sched_setaffinity(int(tid), cpus)
    os.sched_setaffinity(0, cpus)


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Run until SIGTERM/SIGINT; faust stops the agents and commits what was done."""
    if settings.cpus is not None:
        pin_to_cpus(settings.cpus)
    import faust

    from pipeline.streams.app import build_app, offset_clock, wall_clock

    json_logs = settings.log_format == "json"
    if json_logs:
        logs.use_json(loglevel)
    topics.create_topics(
        settings.broker,
        topics.herald_topics(settings.app_id, settings.partitions),
        settings.replication_factor,
        settings.security.kafka_python_config(),
    )
    policy = load_policy(settings.policy_file)
    metrics = build_metrics()
    health = Health()
    if settings.metrics_port:
        serve_http(metrics, health, settings.metrics_port, settings.metrics_host)
    clock = offset_clock(settings.clock_offset_file) if settings.clock_offset_file else wall_clock
    app = build_app(settings, policy, metrics=metrics, clock=clock, health=health)
    log.info(
        "herald worker: broker=%s app_id=%s partitions=%d policy=%s secret=%s cpus=%s",
        settings.broker, settings.app_id, settings.partitions, policy.version,
        "development" if settings.uses_development_secret else "configured",
        format_cpu_list(settings.cpus) if settings.cpus else "any",
    )  # fmt: skip
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    tune_garbage_collector(metrics.gc_pauses)
    worker = faust.Worker(
        app,
        loglevel=loglevel,
        quiet=True,
        logging_config=logs.logging_config(loglevel) if json_logs else None,
    )
    worker.execute_from_commandline()
    return 0
