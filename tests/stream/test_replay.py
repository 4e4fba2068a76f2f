"""`herald replay` against the embedded broker: dead letters go back once, and only once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline import topics
from pipeline.codec import default_registry
from pipeline.domain.keys import DEVELOPMENT_SECRET, normalise, subscriber_key
from pipeline.replay import DONE, PENDING, REPLAY_HEADER, DeadLetter, Mark, Selection, plan
from pipeline.settings import Settings
from tests.conftest import PARTITIONS
from tests.stream.test_pipeline import collect, send

pytestmark = pytest.mark.broker

HERALD = [sys.executable, "-m", "pipeline.cli"]
CODEC = default_registry()
NOW = int(time.time() * 1000)
HOUR = 3_600_000
BIZ = "acme-retail"
RIA, SAM, TOM = "+6281200000011", "+6281200000012", "+6281200000013"


def herald(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HERALD_BROKER": settings.broker, "HERALD_APP_ID": settings.app_id,
           "HERALD_PARTITIONS": str(PARTITIONS)}  # fmt: skip
    return subprocess.run(HERALD + list(args), capture_output=True, text=True, env=env, timeout=120)


def records(settings: Settings, topic: str) -> list[Any]:
    """Every record of a topic, with headers, read to its end (idle 1.5 s)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        last = time.monotonic()
        while time.monotonic() - last < 1.5:
            for batch in consumer.poll(timeout_ms=200).values():
                out.extend(batch)
                last = time.monotonic()
        return out
    finally:
        consumer.close()


def replay_of(record: Any) -> str | None:
    for name, value in record.headers or ():
        if name == REPLAY_HEADER:
            return str(value.decode())
    return None


def outcomes(settings: Settings, event_id: str) -> dict[str, list[tuple[str, str]]]:
    """subscriber -> every (outcome, message_id) recorded for the event, duplicates kept."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for d in collect(settings, topics.DELIVERIES, 0, timeout=1):
        if d["event_id"] == event_id:
            found[d["subscriber"]].append(("DELIVERED", d["message_id"]))
    for s in collect(settings, topics.SUPPRESSIONS, 0, timeout=1):
        if s["event_id"] == event_id:
            found[s["subscriber"]].append((s["reason"], s["message_id"]))
    return found


def wait_for(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise TimeoutError("condition not met in time")


def key_of(phone: str) -> str:
    return subscriber_key(normalise(phone)[0], DEVELOPMENT_SECRET)


def test_replay_after_the_fix_processes_the_event_once_and_never_again(
    settings: Settings, worker_factory: Any, tmp_path: Path
) -> None:
    """A dead letter replayed after its cause is fixed is decided; a second replay is a no-op."""
    tiny = tmp_path / "tiny.toml"
    tiny.write_text("[limits]\nmax_recipients_per_event = 2\n")
    strict = worker_factory(HERALD_POLICY_FILE=str(tiny))
    event = {"event_id": "svc-1", "business_id": BIZ, "kind": "SERVICE_UPDATE",
             "occurred_at": NOW, "expires_at": NOW + 24 * HOUR, "recipients": [RIA, SAM, TOM],
             "entity_id": None, "entity_version": None, "tags": [], "offer": None,
             "payload": None,
             "template": {"name": "outage", "language": "en", "params": ["x"]}}  # fmt: skip
    send(settings, topics.BUSINESS_EVENTS, [event])
    (dead,) = collect(settings, topics.DEAD_LETTERS, 1)
    assert (dead["stage"], dead["error_type"]) == ("validate", "InvalidEvent")
    strict.wait_consumed({topics.BUSINESS_EVENTS: 1})
    time.sleep(6)  # past faust's commit interval: the original is not read again
    strict.stop()

    # The cause is fixed: the default policy allows 10,000 recipients.
    worker = worker_factory()
    links = [{"phone": p, "status": "ACTIVE", "locale": "en", "country": "ID", "timezone": None,
              "interests": [], "linked_accounts": {}, "updated_at": NOW - HOUR}
             for p in (RIA, SAM)]  # fmt: skip
    opt_ins = [{"phone": p, "business_id": BIZ, "kind": "OPT_IN", "scope": "ALL", "text": None,
                "source": "app", "consent_version": "v1", "occurred_at": NOW - HOUR}
               for p in (RIA, SAM)]  # fmt: skip
    send(settings, topics.ACCOUNT_LINKS, links)
    send(settings, topics.USER_SIGNALS, opt_ins)
    worker.wait_consumed({topics.ACCOUNT_LINKS: 2, topics.USER_SIGNALS: 2})
    assert outcomes(settings, "svc-1") == {}, "nothing decided before the replay"

    dry = herald(settings, "replay", "--all", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    *listed, summary = dry.stdout.splitlines()
    assert [json.loads(line)["replay"]["dead_letter_id"] for line in listed] == [
        dead["dead_letter_id"]
    ]
    assert summary == "would replay 1, skip 0 already replayed"
    assert "6281200000011" not in dry.stdout, "a dry run prints no record content"

    first = herald(settings, "replay", "--all")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "replayed 1, skipped 0 already replayed"
    decided = wait_for(lambda: (o := outcomes(settings, "svc-1")) and len(o) == 3 and o)
    assert {k: v[0][0] for k, v in decided.items()} == {
        key_of(RIA): "DELIVERED",
        key_of(SAM): "DELIVERED",
        key_of(TOM): "NO_ACCOUNT",
    }, worker.log()[-2000:]

    copies = [r for r in records(settings, topics.BUSINESS_EVENTS) if replay_of(r)]
    assert [replay_of(r) for r in copies] == [dead["dead_letter_id"]]
    assert (copies[0].key, copies[0].value) == (dead["key"], dead["value"]), "bytes unchanged"

    again = herald(settings, "replay", "--all")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "replayed 0, skipped 1 already replayed"
    time.sleep(3)  # give a wrongly republished event time to be decided
    assert len(records(settings, topics.BUSINESS_EVENTS)) == 2, "the original and one copy"
    assert outcomes(settings, "svc-1") == decided, "no second outcome, not even a repeat"


def dead_letter(source_partition: int, source_offset: int, stage: str = "decode") -> bytes:
    value = b"\xc3\x01 a record Herald could not read " + str(source_offset).encode()
    return CODEC.encode(
        "herald.v1.DeadLetter",
        {"dead_letter_id": f"{topics.BUSINESS_EVENTS}/{source_partition}/{source_offset}",
         "source_topic": topics.BUSINESS_EVENTS, "source_partition": source_partition,
         "source_offset": source_offset, "key": b"biz-" + str(source_offset).encode(),
         "value": value, "stage": stage, "error_type": "UnknownFingerprint",
         "error_message": "fingerprint not registered", "failed_at": NOW, "replay_count": 0},
    )  # fmt: skip


def test_a_replay_interrupted_before_or_after_publishing_is_settled_without_a_duplicate(
    settings: Settings,
) -> None:
    """Pending intents left by a crash: published ones are not re-sent, unpublished ones are."""
    producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all")
    replays = topics.replays_topic(settings.app_id)
    for offset in (10, 11):
        producer.send(topics.DEAD_LETTERS, key=b"biz", value=dead_letter(1, offset))
    # The crashed run wrote both intents, published 11's copy, and died before publishing 10.
    for offset in (10, 11):
        mark = Mark(PENDING, topics.BUSINESS_EVENTS, 1, from_offset=0, at=NOW)
        producer.send(replays, key=f"{topics.BUSINESS_EVENTS}/1/{offset}".encode(),
                      value=mark.encode())  # fmt: skip
    producer.send(topics.BUSINESS_EVENTS, key=b"biz-11", value=b"copy of 11", partition=1,
                  headers=[(REPLAY_HEADER, f"{topics.BUSINESS_EVENTS}/1/11".encode())])  # fmt: skip
    producer.flush()
    producer.close()

    settled = herald(settings, "replay", "--all")
    assert settled.returncode == 0, settled.stderr
    assert settled.stdout.strip() == "replayed 1, skipped 1 already replayed"
    copies = [replay_of(r) for r in records(settings, topics.BUSINESS_EVENTS) if replay_of(r)]
    assert sorted(copies) == [f"{topics.BUSINESS_EVENTS}/1/10", f"{topics.BUSINESS_EVENTS}/1/11"]
    marks = {r.key.decode(): Mark.decode(r.value) for r in records(settings, replays)}
    assert {k: (m.state, m.offset is not None) for k, m in marks.items() if m} == {
        f"{topics.BUSINESS_EVENTS}/1/10": (DONE, True),
        f"{topics.BUSINESS_EVENTS}/1/11": (DONE, True),
    }

    again = herald(settings, "replay", "--all")
    assert again.stdout.strip() == "replayed 0, skipped 2 already replayed", again.stderr
    assert len([r for r in records(settings, topics.BUSINESS_EVENTS) if replay_of(r)]) == 2


def test_replay_by_id_or_stage_touches_only_those_and_reports_unknown_ids(
    settings: Settings,
) -> None:
    """--id and --stage choose dead letters; an unknown id is reported with exit status 1."""
    producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all")
    producer.send(topics.DEAD_LETTERS, value=dead_letter(0, 1, stage="decode"))
    producer.send(topics.DEAD_LETTERS, value=dead_letter(0, 1, stage="decode"))  # written twice
    producer.send(topics.DEAD_LETTERS, value=dead_letter(2, 2, stage="validate"))
    producer.send(topics.DEAD_LETTERS, value=dead_letter(2, 3, stage="validate"))
    producer.flush()
    producer.close()

    by_id = herald(settings, "replay", "--id", f"{topics.BUSINESS_EVENTS}/2/2", "--id", "nope/0/0")
    assert by_id.returncode == 1
    assert by_id.stdout.strip() == "replayed 1, skipped 0 already replayed, 1 not found"
    by_stage = herald(settings, "replay", "--stage", "validate")
    assert by_stage.stdout.strip() == "replayed 1, skipped 1 already replayed", by_stage.stderr
    rest = herald(settings, "replay", "--all")
    assert rest.stdout.strip() == "replayed 1, skipped 2 already replayed", rest.stderr

    copies = [r for r in records(settings, topics.BUSINESS_EVENTS) if replay_of(r)]
    assert sorted((replay_of(r), r.partition, r.key) for r in copies) == [
        (f"{topics.BUSINESS_EVENTS}/0/1", 0, b"biz-1"),
        (f"{topics.BUSINESS_EVENTS}/2/2", 2, b"biz-2"),
        (f"{topics.BUSINESS_EVENTS}/2/3", 2, b"biz-3"),
    ], "each once, on its source partition, with its original key"


def _letter(i: int, stage: str = "decode", value: bytes = b"x") -> DeadLetter:
    return DeadLetter(f"t/0/{i}", "t", 0, i, None, value, stage, "E", "m", NOW)


def test_plan_sorts_dead_letters_by_what_must_happen_to_them() -> None:
    """Planning: duplicates count once; done, pending, empty and unknown ids are told apart."""
    letters = [_letter(1), _letter(1), _letter(2), _letter(3, "validate"), _letter(4, value=b"")]
    marks = {
        "t/0/2": Mark(DONE, "t", 0, 5, 7),
        "t/0/3": Mark(PENDING, "t", 0, 5),
    }
    p = plan(letters, marks, Selection(everything=True))
    assert [d.dead_letter_id for d in p.replay] == ["t/0/1"]
    assert [d.dead_letter_id for d in p.done] == ["t/0/2"]
    assert [(d.dead_letter_id, m.state) for d, m in p.interrupted] == [("t/0/3", PENDING)]
    assert [d.dead_letter_id for d in p.empty] == ["t/0/4"]
    only = plan(letters, marks, Selection(ids=("t/0/1", "t/0/9"), stages=("validate",)))
    assert [d.dead_letter_id for d in only.replay] == ["t/0/1"]
    assert [d.dead_letter_id for d, _ in only.interrupted] == ["t/0/3"]
    assert only.not_found == ["t/0/9"]


def test_replay_killed_mid_protocol_still_publishes_each_dead_letter_once(
    settings: Settings,
) -> None:
    """SIGKILL `herald replay` between its steps, again and again: every copy exists once."""
    letters = 2_000  # four chunks of intents, copies and done marks
    producer = KafkaProducer(bootstrap_servers=settings.broker, acks="all", linger_ms=20)
    for offset in range(letters):
        producer.send(topics.DEAD_LETTERS, value=dead_letter(offset % PARTITIONS, offset))
    producer.flush()
    producer.close()
    env = {**os.environ, "HERALD_BROKER": settings.broker, "HERALD_APP_ID": settings.app_id,
           "HERALD_PARTITIONS": str(PARTITIONS)}  # fmt: skip
    replays = topics.replays_topic(settings.app_id)
    # Die right after the intents of a chunk are recorded, or right after its copies are
    # published: the two moments where a naive order loses or doubles a replay.
    pending_seen = []
    for step in ("recorded", "published", "recorded", "published"):
        proc = subprocess.Popen([*HERALD, "replay", "--all"], env=env, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        assert proc.stderr is not None
        for line in proc.stderr:
            if f"replay: 500 {'intent(s) recorded' if step == 'recorded' else 'copy'}" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        proc.stderr.close()
        latest = {r.key: Mark.decode(r.value) for r in records(settings, replays)}
        pending_seen.append(sum(1 for m in latest.values() if m and m.state == PENDING))
        print("pending intents after kill:", pending_seen[-1])

    final = herald(settings, "replay", "--all")
    assert final.returncode == 0, final.stderr
    copies = Counter(replay_of(r) for r in records(settings, topics.BUSINESS_EVENTS))
    assert len(copies) == letters
    assert set(copies.values()) == {1}, f"published twice: {copies.most_common(3)}"
    # Proof that kills landed inside the protocol (a kill can race a chunk's done marks).
    assert any(pending_seen), f"no kill left intents pending: {pending_seen}"
