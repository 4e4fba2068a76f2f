"""A new deployment decides the events published while its consumer group is joining."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pipeline import topics
from pipeline.settings import Settings
from pipeline.simulate import publish
from pipeline.verify import wait_for_outcomes
from tests.stream.test_crash import _encoded, _expected_pairs, _setup

pytestmark = pytest.mark.broker


def test_events_published_while_a_fresh_group_joins_are_all_decided(
    settings: Settings, worker_factory: Any
) -> None:
    """Events already on never-committed partitions are read from the earliest offset."""
    now = int(time.time() * 1000)
    secret = settings.subscriber_secret.reveal()
    phones = _setup(now)[0][:60]  # no account links: every pair is a NO_ACCOUNT suppression
    events = [
        {"event_id": f"early-{i}", "business_id": "parcelgo", "kind": "SERVICE_UPDATE",
         "occurred_at": now, "expires_at": now + 86_400_000,
         "recipients": phones[i * 10 : i * 10 + 10], "entity_id": None, "entity_version": None,
         "tags": [], "offer": None,
         "payload": {"ServiceUpdate": {"service": "depot", "status": f"s{i}"}},
         "template": {"name": "depot", "language": "id", "params": [f"notice {i}"]}}
        for i in range(6)
    ]  # fmt: skip
    worker = worker_factory()
    publish(settings, _encoded([(topics.BUSINESS_EVENTS, e) for e in events], secret))
    report = wait_for_outcomes(settings, _expected_pairs(events, secret), 45)
    assert report.ok, report.summary() + "\n" + worker.log()[-3000:]
