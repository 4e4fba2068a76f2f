"""The `herald` command as a user runs it: real processes, real broker, real clients."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient

from pipeline.broker import EmbeddedBroker, free_port
from pipeline.topics import create_topics, herald_topics

pytestmark = pytest.mark.e2e

HERALD = [sys.executable, "-m", "pipeline.cli"]


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        HERALD + args, capture_output=True, text=True, timeout=timeout, input=stdin,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_broker_command_creates_topics_prints_address_and_stops_on_sigterm() -> None:
    """`herald broker` serves Kafka with Herald's topics and exits cleanly on SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(
        [*HERALD, "broker", "--port", str(port), "--partitions", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"127.0.0.1:{port}"
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
        try:
            names = set(admin.list_topics())
            described = admin.describe_topics(["deliveries"])
        finally:
            admin.close()
        assert {"business-events", "account-links", "user-signals", "deliveries",
                "suppressions", "dead-letters", "herald-candidates"} <= names  # fmt: skip
        assert len(described[0]["partitions"]) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_publish_then_tail_round_trips_json_through_avro_on_the_broker(tmp_path: Path) -> None:
    """`herald publish` computes the subscriber key from a phone; `herald tail` decodes it."""
    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, herald_topics("herald", 2))
        env = {"HERALD_BROKER": broker.bootstrap}
        lines = tmp_path / "signals.jsonl"
        lines.write_text(
            json.dumps({"phone": "+62 812-0000-0001", "business_id": "acme", "kind": "OPT_IN",
                        "scope": "ALL", "text": None, "source": "app", "consent_version": "v1",
                        "occurred_at": "2026-11-25T10:00:00Z"}) + "\n"
        )  # fmt: skip
        published = run(["publish", str(lines), "--topic", "user-signals"], env)
        assert published.returncode == 0, published.stderr
        tailed = run(["tail", "user-signals", "--from-beginning", "--max", "1"], env)
        assert tailed.returncode == 0, tailed.stderr
        record = json.loads(tailed.stdout.splitlines()[0])["value"]
        assert record["kind"] == "OPT_IN"
        assert record["occurred_at"] == 1_795_600_800_000
        assert len(record["subscriber"]) == 64 and "6281200000001" not in tailed.stdout


def test_policy_show_prints_the_effective_policy_and_rejects_a_bad_file(tmp_path: Path) -> None:
    """`herald policy show` prints defaults and version; a wrong key is named, not ignored."""
    shown = run(["policy", "show"])
    assert shown.returncode == 0, shown.stderr
    policy = json.loads(shown.stdout)
    assert policy["marketing"]["per_user_24h"] == 2
    assert policy["quiet_hours"] == {"start": "20:00", "end": "09:00", "urgent_departure_hours": 12}
    assert policy["policy_version"].startswith("p-")
    bad = tmp_path / "policy.toml"
    bad.write_text("[marketing]\nper_user_24 = 3\n")
    refused = run(["policy", "show", "--file", str(bad)])
    assert refused.returncode == 2
    assert "[marketing] unknown key(s): per_user_24" in refused.stderr


def test_publish_rejects_a_bad_line_with_its_number_and_no_personal_data(tmp_path: Path) -> None:
    """A malformed input line stops `herald publish` with a clear, digit-free error."""
    with EmbeddedBroker() as broker:
        create_topics(broker.bootstrap, herald_topics("herald", 1))
        lines = tmp_path / "links.jsonl"
        lines.write_text(json.dumps({"phone": "+62 812 ZZZ 0001", "status": "ACTIVE"}) + "\n")
        result = run(["publish", str(lines), "--topic", "account-links"],
                     {"HERALD_BROKER": broker.bootstrap})  # fmt: skip
    assert result.returncode == 2
    (error,) = [line for line in result.stderr.splitlines() if "line 1" in line]
    # The number's digits are not in Herald's error, and no part of the number is anywhere
    # (the clients' log lines carry millisecond timestamps, which may read "812").
    assert "812" not in error and "0001" not in error
    for part in ("+62 812", "812 ZZZ", "ZZZ", "ZZZ 0001", "62812"):
        assert part not in result.stderr


# Every reason the simulated traffic is built to trigger (see pipeline/simulate.py).
SIMULATED_REASONS = [
    "BLOCKED", "BUSINESS_LIMIT", "BUSINESS_SUSPENDED", "BUSINESS_USER_CAP", "COALESCED",
    "COUNTRY_RESTRICTED", "DUPLICATE", "EXPIRED", "INVALID_RECIPIENT", "LINK_BLOCKED",
    "NOT_RELEVANT", "NO_ACCOUNT", "NO_CONSENT", "OPTED_OUT", "PAIR_RATE", "REPORTED",
    "SUPERSEDED", "USER_CAP",
]  # fmt: skip


def test_demo_runs_end_to_end_and_reports_every_simulated_reason() -> None:
    """`herald demo` completes every outcome, shows each reason, and stops what it started."""
    result = run(["demo", "--subscribers", "2000", "--scale", "0.5", "--timeout", "200"],
                 timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "demo complete" in result.stdout
    for category in ("MARKETING", "UTILITY", "AUTHENTICATION"):
        assert f"delivered {category}" in result.stdout
    for reason in SIMULATED_REASONS:
        assert f"suppressed {reason} " in result.stdout, reason
    assert "dead letters (decode)" in result.stdout
    assert "dead letters (validate)" in result.stdout
    port = int(result.stdout.split("broker on 127.0.0.1:")[1].split(";")[0])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass  # the demo's broker is gone
