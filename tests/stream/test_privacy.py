"""Privacy: no phone number, linked-account id or secret leaves Herald where it must not.

A full simulated scenario runs through a real worker; then every line of the worker's
log, every /metrics sample, every `suppressions` record and every metadata field of
`dead-letters` (the preserved original `key` and `value` bytes excepted: they exist for
replay) is searched for every number and linked-account id of the input.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import topics
from pipeline.broker import EmbeddedBroker
from pipeline.demo import expected_outcomes
from pipeline.domain import InvalidEvent, validate_event
from pipeline.domain.keys import InvalidNumber, normalise, subscriber_key
from pipeline.jsonio import json_to_record
from pipeline.policy import default_policy
from pipeline.settings import Secret, Settings
from pipeline.simulate import Scenario, build_traffic, encoded, garbage_records, publish
from pipeline.streams.records import event_from_wire
from tests.conftest import WorkerProcess
from tests.stream.test_pipeline import collect, event, link, send, signal

pytestmark = pytest.mark.broker

# `herald worker --loglevel` goes to faust.Worker: debug, info, warning, error, critical.
LOGLEVEL = "debug"
SECRET = "s3cr3t-herald-privacy-test"
PASSWORD = "pa55-herald-privacy-sasl"
DIGEST = re.compile(r"[0-9a-f]{32,}")  # subscriber keys and message ids: HMAC/hash hex
YEAR_MS = 366 * 24 * 3_600_000


class VerboseWorker(WorkerProcess):
    """A `herald worker` started with `--loglevel LOGLEVEL`."""

    def start(self) -> VerboseWorker:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker",
                 "--metrics-port", str(self.metrics_port), "--loglevel", LOGLEVEL],
                stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()[-3000:]
            try:
                self.progress()
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("worker did not expose /metrics in 60 s")


@pytest.fixture
def verbose_worker(
    broker: EmbeddedBroker, app_id: str, tmp_path: Path
) -> Iterator[Callable[..., VerboseWorker]]:
    """Start verbose workers for this test; all are stopped at its end."""
    started: list[VerboseWorker] = []

    def start(**extra_env: str) -> VerboseWorker:
        w = VerboseWorker(broker.bootstrap, app_id, tmp_path, extra_env).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


@dataclass(frozen=True)
class Hit:
    source: str  # "worker log line 123", "suppressions[17].detail", ...
    what: str  # which input item matched, in which form
    context: str  # a short excerpt around the match
    kind: str = ""  # what to count it under; by default the source without indexes


@dataclass
class Needles:
    """Every phone number (in several forms) and linked-account id of the input.

    A digit form is searched inside every run of digits, so a number embedded in other
    digits ("0" + national number, "+" + digits) is found. The E.164 form with '+' holds
    the digits-only form, so it is found (and reported as E.164) through it. Ids are
    matched as whole hex tokens, which finds "fb-1a2b..." and the bare "1a2b..." alike.
    """

    digits: dict[str, str] = field(default_factory=dict)  # digit string -> description
    ints: dict[int, str] = field(default_factory=dict)  # the same, for integer fields
    hex_ids: dict[str, str] = field(default_factory=dict)  # id hex part -> the id
    literals: dict[str, str] = field(default_factory=dict)  # raw texts searched as such
    lengths: set[int] = field(default_factory=set)  # of the digit forms
    phones: set[str] = field(default_factory=set)  # E.164
    ids: set[str] = field(default_factory=set)

    def add_phone(self, raw: str) -> None:
        try:
            e164, _region = normalise(raw)
        except InvalidNumber:
            # Not a number, but a recipient text all the same: never echo it. Short ones
            # ("+12", "12345") are too common as text to search for.
            if len(raw) >= 6:
                self.literals[raw] = f"invalid recipient {raw!r}"
            return
        self.phones.add(e164)
        digits = e164.lstrip("+")
        nsn = phonenumbers.national_significant_number(phonenumbers.parse(e164))
        for form, text in (("digits", digits), ("national", nsn), ("last 9", digits[-9:])):
            self.digits.setdefault(text, f"{e164} ({form} {text})")
            self.lengths.add(len(text))
            self.ints.setdefault(int(text), f"{e164} ({form} {text}, as an integer)")

    def add_id(self, linked_id: str) -> None:
        self.ids.add(linked_id)
        self.hex_ids[linked_id.split("-", 1)[-1].lower()] = f"linked-account id {linked_id}"

    def find(self, text: str, now_ms: int) -> Iterator[tuple[str, str]]:
        """Yield (description, excerpt) for each needle in `text`."""
        for m in re.finditer(r"\d{9,}", text):
            if _noise(text, m, now_ms):
                continue
            run = m.group()
            for size in self.lengths:
                for i in range(len(run) - size + 1):
                    what = self.digits.get(run[i : i + size])
                    if what is not None:
                        if i == 0 and text[m.start() - 1 : m.start()] == "+":
                            what = what.replace("(digits", "(E.164 +")
                        yield what, _excerpt(text, m.start() + i, size)
        for m in re.finditer(r"[0-9A-Fa-f]+", text):
            what = self.hex_ids.get(m.group().lower())
            if what is not None:
                yield what, _excerpt(text, m.start(), len(m.group()))
        for literal, what in self.literals.items():
            at = text.find(literal)
            if at >= 0:
                yield what, _excerpt(text, at, len(literal))


def _noise(text: str, m: re.Match[str], now_ms: int) -> bool:
    """A digit run inside a hash digest, or a clock reading of this year: not a number."""
    start, end = m.start(), m.end()
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    if DIGEST.fullmatch(text[start:end].lower()):
        return True
    run = m.group()
    # No E.164 number of the scenario's countries has 10 or 13 digits starting "17"/"18".
    return (len(run) == 13 and abs(int(run) - now_ms) < YEAR_MS) or (
        len(run) == 10 and abs(int(run) * 1000 - now_ms) < YEAR_MS
    )


def _excerpt(text: str, at: int, size: int, margin: int = 30) -> str:
    return text[max(0, at - margin) : at + size + margin]


def scan_text(needles: Needles, source: str, text: str, now_ms: int, kind: str = "") -> list[Hit]:
    return [Hit(source, what, ctx, kind) for what, ctx in needles.find(text, now_ms)]


def scan_log(needles: Needles, lines: list[str], now_ms: int) -> list[Hit]:
    """Search every line; count hits by level and the message's first words (its logger)."""
    hits: list[Hit] = []
    for i, line in enumerate(lines, 1):
        found = scan_text(needles, f"worker log line {i}", line, now_ms)
        if found:
            m = re.search(
                r"\[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] ([A-Za-z][A-Za-z ]{0,24})", line
            )
            kind = f"worker log {m.group(1)} {m.group(2).strip()!r}" if m else "worker log"
            hits += [dataclasses.replace(h, kind=kind) for h in found]
    return hits


def scan_value(needles: Needles, source: str, value: Any, now_ms: int) -> list[Hit]:
    """Search one record field: text as text, integers as whole numbers, nested alike."""
    if value is None or isinstance(value, bool):
        return []
    if isinstance(value, int):
        what = needles.ints.get(value)
        return [Hit(source, what, str(value))] if what else []
    if isinstance(value, float):
        what = needles.ints.get(int(value)) if value.is_integer() else None
        return [Hit(source, what, str(value))] if what else []
    if isinstance(value, bytes):
        return scan_text(needles, source, value.decode("utf-8", errors="replace"), now_ms)
    if isinstance(value, dict):
        return [
            h
            for k, v in value.items()
            for h in scan_text(needles, f"{source} key", str(k), now_ms)
            + scan_value(needles, f"{source}.{k}", v, now_ms)
        ]
    if isinstance(value, list | tuple):
        return [
            h for i, v in enumerate(value) for h in scan_value(needles, f"{source}[{i}]", v, now_ms)
        ]
    return scan_text(needles, source, str(value), now_ms)


def scan_records(
    needles: Needles,
    topic: str,
    records: Iterable[dict[str, Any]],
    now_ms: int,
    skip: tuple[str, ...] = (),
) -> list[Hit]:
    hits: list[Hit] = []
    for i, record in enumerate(records):
        for name, value in record.items():
            if name not in skip:
                hits += scan_value(needles, f"{topic}[{i}].{name}", value, now_ms)
    return hits


def scan_metrics(needles: Needles, text: str, now_ms: int) -> tuple[list[Hit], int]:
    """Search every sample's name, labels and value, and the HELP/TYPE lines."""
    hits: list[Hit] = []
    samples = 0
    for line in text.splitlines():
        if line.startswith("#"):
            hits += scan_text(needles, "metrics comment", line, now_ms)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples += 1
            where = f"metrics {s.name}{s.labels}"
            hits += scan_text(needles, f"{where} name", s.name, now_ms)
            for k, v in s.labels.items():
                hits += scan_text(needles, f"{where} label {k}", f"{k}={v}", now_ms)
            hits += scan_value(needles, f"{where} value", s.value, now_ms)
    return hits, samples


def report(hits: list[Hit], per_source: int = 3) -> str:
    """Count hits by source and field; show a few of each, never the whole log."""
    by_kind: dict[str, list[Hit]] = {}
    for h in hits:
        kind = h.kind or re.sub(r"\[\d+\]", "", h.source)
        by_kind.setdefault(kind, []).append(h)
    lines = [f"{len(hits)} hits: " + ", ".join(f"{k}: {len(v)}" for k, v in by_kind.items())]
    for found in by_kind.values():
        lines += [f"  {h.source}: {h.what} in ...{h.context!r}..." for h in found[:per_source]]
    return "\n".join(lines)


def read_metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def needles_of(traffic_parts: Iterable[tuple[str, dict[str, Any]]]) -> Needles:
    n = Needles()
    for topic, obj in traffic_parts:
        if topic in (topics.ACCOUNT_LINKS, topics.USER_SIGNALS):
            n.add_phone(obj["phone"])
        if topic == topics.ACCOUNT_LINKS:
            for linked_id in (obj.get("linked_accounts") or {}).values():
                n.add_id(linked_id)
        if topic == topics.BUSINESS_EVENTS:
            for raw in obj["recipients"]:
                n.add_phone(raw)
    return n


def invalid_events(traffic_events: list[tuple[str, dict[str, Any]]], secret: bytes) -> int:
    """Count the business events that fail validation: each is one dead letter."""
    from pipeline.codec import default_registry

    codec, policy, count = default_registry(), default_policy(), 0
    for topic, obj in traffic_events:
        if topic == topics.BUSINESS_EVENTS:
            _key, record = json_to_record(topic, obj, secret)
            ev = event_from_wire(
                codec.decode(
                    "herald.v1.BusinessEvent", codec.encode("herald.v1.BusinessEvent", record)
                )
            )
            try:
                validate_event(ev, policy, ev.occurred_at)
            except InvalidEvent:
                count += 1
    return count


def test_no_number_or_linked_id_in_logs_metrics_suppressions_or_dead_letters(
    settings: Settings, verbose_worker: Callable[..., VerboseWorker]
) -> None:
    """A simulated day leaves no input number or linked-account id in logs, metrics or outputs."""
    started = time.monotonic()
    worker = verbose_worker()
    secret = settings.subscriber_secret.reveal()
    traffic = build_traffic(Scenario(seed=11, subscribers=1_500, scale=0.3))
    now_ms = int(time.time() * 1000)
    needles = needles_of([*traffic.setup, *traffic.events])
    assert len(needles.phones) > 1_500 and len(needles.ids) == 3_000

    # The matcher finds every form it claims to (a search that cannot hit proves nothing).
    probe_phone = sorted(needles.phones)[0]
    probe_id = sorted(needles.ids)[0]
    nsn = phonenumbers.national_significant_number(phonenumbers.parse(probe_phone))
    for text in (f"to {probe_phone}.", f"wa_id={probe_phone[1:]}", f"local 0{nsn}",
                 f"tail ...{probe_phone[-9:]}", f"acct={probe_id}",
                 f"acct {probe_id.split('-', 1)[1]}"):  # fmt: skip
        assert scan_text(needles, "probe", text, now_ms), text

    setup = publish(settings, encoded(traffic.setup, secret))
    worker.wait_consumed(
        {t: setup[t] for t in (topics.ACCOUNT_LINKS, topics.USER_SIGNALS)}, timeout=60
    )
    expected = expected_outcomes(traffic, secret)
    dead_expected = len(traffic.garbage) + invalid_events(traffic.events, secret)
    publish(settings, encoded(traffic.events, secret))
    publish(settings, garbage_records(traffic))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        p = worker.progress()
        if p.outcomes >= expected and sum(p.dead_letters.values()) >= dead_expected:
            break
        time.sleep(0.5)
    p = worker.progress()
    assert p.outcomes >= expected, (p, expected, worker.log()[-3000:])
    decided = time.monotonic()

    deliveries: list[dict[str, Any]] = []
    suppressions: list[dict[str, Any]] = []
    for _ in range(30):
        deliveries = collect(settings, topics.DELIVERIES, 0, timeout=1)
        suppressions = collect(settings, topics.SUPPRESSIONS, 0, timeout=1)
        if len(deliveries) + len(suppressions) >= expected:
            break
    assert len(deliveries) + len(suppressions) >= expected
    dead = collect(settings, topics.DEAD_LETTERS, dead_expected, timeout=30)
    assert len(dead) == dead_expected, dead
    metrics_text = read_metrics(worker.metrics_url)
    log_lines = worker.log().splitlines()

    # The search does find numbers where they belong: every Delivery's wa_id.
    delivered_hits = scan_records(needles, topics.DELIVERIES, deliveries, now_ms)
    wa_ids = {d["wa_id"] for d in deliveries}
    found = {h.source.split("]")[0] for h in delivered_hits if h.source.endswith(".wa_id")}
    assert len(deliveries) > 500 and len(found) == len(deliveries), report(delivered_hits)
    assert all(f"+{w}" in needles.phones for w in wa_ids)

    # The sources searched are not trivially empty.
    assert len(log_lines) > 50, log_lines
    for name in ("herald_events_consumed_total", "herald_deliveries_total",
                 "herald_suppressions_total", "herald_dead_letters_total",
                 "herald_decision_latency_seconds"):  # fmt: skip
        assert name in metrics_text, name
    assert len(suppressions) > 500
    reasons = {s["reason"] for s in suppressions}
    assert {"INVALID_RECIPIENT", "OPTED_OUT", "NO_ACCOUNT", "DUPLICATE"} <= reasons, reasons

    hits = scan_log(needles, log_lines, now_ms)
    metric_hits, samples = scan_metrics(needles, metrics_text, now_ms)
    hits += metric_hits
    hits += scan_records(needles, topics.SUPPRESSIONS, suppressions, now_ms)
    hits += scan_records(needles, topics.DEAD_LETTERS, dead, now_ms, skip=("key", "value"))
    searched = time.monotonic()
    print(
        f"\nprivacy scan: {len(needles.phones)} numbers, {len(needles.ids)} linked ids; "
        f"{len(log_lines)} log lines ({LOGLEVEL}), {samples} metric samples, "
        f"{len(suppressions)} suppressions, {len(dead)} dead letters, "
        f"{len(deliveries)} deliveries; decided in {decided - started:.1f} s, "
        f"searched in {searched - decided:.1f} s"
    )
    if hits:
        pytest.fail(report(hits), pytrace=False)


def test_secret_and_sasl_password_never_logged_or_exposed(
    settings: Settings, verbose_worker: Callable[..., VerboseWorker]
) -> None:
    """HERALD_SECRET and the SASL password are in no log line or metric; describe() masks both."""
    env = {"HERALD_SECRET": SECRET, "HERALD_SASL_USERNAME": "herald-privacy",
           "HERALD_SASL_PASSWORD": PASSWORD}  # fmt: skip
    worker = verbose_worker(**env)
    configured = dataclasses.replace(settings, subscriber_secret=Secret(SECRET.encode()))
    phone = "+6281277770001"
    send(configured, topics.ACCOUNT_LINKS, [link(phone)])
    send(configured, topics.USER_SIGNALS, [signal(phone, "OPT_IN")])
    worker.wait_consumed({topics.ACCOUNT_LINKS: 1, topics.USER_SIGNALS: 1})
    send(configured, topics.BUSINESS_EVENTS, [event("privacy-secret-1", "SERVICE_UPDATE", [phone])])
    (delivery,) = collect(configured, topics.DELIVERIES, 1, timeout=60)
    # The worker keyed with the configured secret, not the development one.
    assert delivery["subscriber"] == subscriber_key(phone, SECRET.encode())
    assert delivery["subscriber"] != subscriber_key(phone, settings.subscriber_secret.reveal())

    log = worker.log()
    metrics_text = read_metrics(worker.metrics_url)
    assert "secret=configured" in log and len(log.splitlines()) > 50
    assert "herald_deliveries_total" in metrics_text
    for value in (SECRET, PASSWORD):
        for form in (value, value.encode().hex(), value.upper()):
            assert form not in log, f"{form!r} in the worker log"
            assert form not in metrics_text, f"{form!r} in /metrics"

    s = Settings.from_env(
        {**env, "HERALD_SECURITY_PROTOCOL": "SASL_SSL", "HERALD_SASL_MECHANISM": "SCRAM-SHA-512"}
    )
    assert s.security.sasl_password is not None
    assert s.security.sasl_password.reveal() == PASSWORD.encode()
    shown = str(s.describe()) + repr(s) + str(s)
    assert SECRET not in shown and PASSWORD not in shown
    assert "**********" in s.describe()["subscriber_secret"]
    assert "**********" in s.describe()["security"]
