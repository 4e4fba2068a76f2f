"""The `herald` command: broker, worker, publish, tail, simulate, demo, bench."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline import topics
from pipeline.errors import HeraldError
from pipeline.settings import Settings


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "broker", None):
        overrides["broker"] = args.broker
    if getattr(args, "partitions", None):
        overrides["partitions"] = args.partitions
    return Settings.from_env(**overrides)


def cmd_broker(args: argparse.Namespace) -> int:
    """Run the embedded broker with Herald's topics until Ctrl-C or SIGTERM."""
    from pipeline.broker import EmbeddedBroker, free_port
    from pipeline.topics import create_topics, herald_topics

    settings = _settings(args)
    port = args.port or free_port()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(port=port, log_path=args.log) as broker:
        create_topics(broker.bootstrap, herald_topics(settings.app_id, settings.partitions))
        print(broker.bootstrap, flush=True)
        try:
            while not stop.wait(0.5):
                if broker.process is not None and broker.process.poll() is not None:
                    error("broker exited unexpectedly")
                    return 1
        except KeyboardInterrupt:
            pass
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Create Herald's topics on the configured cluster (those missing)."""
    from pipeline.topics import create_topics, herald_topics

    settings = _settings(args)
    created = create_topics(
        settings.broker,
        herald_topics(settings.app_id, settings.partitions),
        settings.replication_factor,
        settings.security.kafka_python_config(),
    )
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Herald worker (both stages) until SIGTERM or Ctrl-C."""
    from pipeline.worker import run_worker

    overrides: dict[str, Any] = {}
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    return run_worker(_settings(args, **overrides), loglevel=args.loglevel)


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish JSON lines from FILE (or -) to an input topic as Avro."""
    from pipeline.clients import producer
    from pipeline.codec import default_registry
    from pipeline.jsonio import json_to_record

    settings = _settings(args)
    codec = default_registry()
    record_name = topics.RECORD_OF_TOPIC[args.topic]
    secret = settings.subscriber_secret.reveal()
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    sent = 0
    with stream, _closing(producer(settings)) as prod:
        for lineno, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                key, record = json_to_record(args.topic, json.loads(line), secret)
                value = codec.encode(record_name, record)
            except (ValueError, HeraldError) as exc:  # JSON, input and codec errors
                error(f"line {lineno}: {exc}")
                return 2
            prod.send(args.topic, key=key, value=value)
            sent += 1
        prod.flush()
    print(f"published {sent} record(s) to {args.topic}", file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    """Print a topic's records as decoded JSON lines."""
    from pipeline.clients import read_topic
    from pipeline.codec import CodecError, default_registry
    from pipeline.jsonio import record_to_json

    settings = _settings(args)
    codec = default_registry()
    name = topics.RECORD_OF_TOPIC.get(args.topic)
    idle = args.idle if args.idle > 0 else None
    for _key, value, partition, offset in read_topic(
        settings, args.topic, from_beginning=args.from_beginning, max_records=args.max,
        idle_timeout=idle,
    ):  # fmt: skip
        try:
            record = codec.decode(name or codec.writer_of(value).name, value)
        except CodecError as exc:
            record = {"undecodable": str(exc)}
        line = {"partition": partition, "offset": offset, "value": record_to_json(record)}
        print(json.dumps(line, ensure_ascii=False), flush=True)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish seeded, realistic traffic to the input topics."""
    from pipeline.simulate import Scenario, publish_scenario

    settings = _settings(args)
    scenario = Scenario(seed=args.seed, subscribers=args.subscribers, scale=args.scale)
    counts = publish_scenario(settings, scenario, rate=args.rate, duration=args.duration)
    print(json.dumps(counts), flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Start a broker, a worker and the simulator; show progress; stop everything."""
    from pipeline.demo import run_demo

    return run_demo(
        subscribers=args.subscribers, scale=args.scale, seed=args.seed, timeout=args.timeout,
        live=not args.no_live,
    )  # fmt: skip


def cmd_explain(args: argparse.Namespace) -> int:
    """Print why an event was or was not delivered to one number."""
    from pipeline.explain import explain

    decisions = explain(_settings(args), args.event, args.phone)
    if not decisions:
        error("no decision recorded for that event and number (yet)")
        return 1
    for d in decisions:
        print(json.dumps(d, indent=2))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-publish chosen dead letters to their source topic, each exactly once."""
    from pipeline.replay import Selection, replay

    selection = Selection(ids=tuple(args.id or ()), stages=tuple(args.stage or ()),
                          everything=args.all)  # fmt: skip
    summary = replay(_settings(args), selection, dry_run=args.dry_run)
    print(summary.line(dry_run=args.dry_run), flush=True)
    return 1 if summary.not_found else 0


def cmd_policy_show(args: argparse.Namespace) -> int:
    """Print the effective policy (defaults filled in) and its version."""
    from pipeline.policy import effective_document

    path = args.file or Settings.from_env().policy_file
    print(json.dumps(effective_document(path), indent=2))
    return 0


class _closing:
    """Close a kafka-python client on exit (they are not context managers)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __enter__(self) -> Any:
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herald", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = command("broker", cmd_broker, "Run the embedded broker with Herald's topics.")
    p.add_argument("--port", type=int, default=9092, help="0 picks a free port (default 9092)")
    p.add_argument("--partitions", type=int, help="partitions per topic (default 6)")
    p.add_argument("--log", type=Path, help="append the broker's own log to this file")

    p = command("topics", cmd_topics, "Create Herald's topics on the configured cluster.")
    p.add_argument("--broker", help="bootstrap address (default $HERALD_BROKER)")
    p.add_argument("--partitions", type=int)

    p = command("worker", cmd_worker, "Run a worker: ingest, state, decide.")
    p.add_argument("--broker", help="bootstrap address (default $HERALD_BROKER)")
    p.add_argument("--metrics-port", type=int, help="serve /metrics here (0: off)")
    p.add_argument("--loglevel", default="info")

    p = command("publish", cmd_publish, "Publish JSON lines as Avro to an input topic.")
    p.add_argument("file", help="JSON lines file, or - for standard input")
    p.add_argument("--topic", required=True, choices=topics.INPUT_TOPICS)
    p.add_argument("--broker")

    p = command("tail", cmd_tail, "Print a topic's records as JSON lines.")
    p.add_argument("topic")
    p.add_argument("--broker")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--max", type=int, help="stop after N records")
    p.add_argument("--idle", type=float, default=0, help="stop after S idle seconds (0: follow)")

    p = command("simulate", cmd_simulate, "Publish seeded, realistic traffic.")
    p.add_argument("--broker")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--subscribers", type=int, default=5_000)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies event counts")
    p.add_argument(
        "--rate", type=float, default=0, help="events per second (0: as fast as possible)"
    )
    p.add_argument("--duration", type=float, default=0, help="stop after S seconds (0: all)")

    p = command("explain", cmd_explain, "Why did (or didn't) a number get an event's message?")
    p.add_argument("--event", required=True, help="the event_id")
    p.add_argument("--phone", required=True, help="the recipient's number, as the business sent it")
    p.add_argument("--broker")

    p = command("replay", cmd_replay, "Re-publish dead letters to their source topic, once.")
    chosen = p.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--id", action="append", help="a dead_letter_id (repeatable)")
    chosen.add_argument("--stage", action="append", help="every dead letter of a stage (decode...)")
    chosen.add_argument("--all", action="store_true", help="every dead letter")
    p.add_argument("--dry-run", action="store_true", help="print what would be replayed, only")
    p.add_argument("--broker")

    p = command("policy", cmd_policy_show, "Show the effective policy and its version.")
    p.add_argument("action", choices=["show"])
    p.add_argument("--file", type=Path, help="a policy file (default $HERALD_POLICY_FILE)")

    p = command("demo", cmd_demo, "Broker + worker + simulator, with live progress.")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--subscribers", type=int, default=5_000)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=180.0, help="give up after S seconds")
    p.add_argument("--no-live", action="store_true", help="plain output (no live table)")
    return parser


def error(message: str) -> None:
    """Write an error line to stderr in one write: `print` writes the line and its end
    apart, and a client's logging thread can land between them on the same line."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the herald command line."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args))
    except HeraldError as exc:
        error(f"herald: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
