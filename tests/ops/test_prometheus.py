"""The dashboard and the rules against a real Prometheus scraping a real worker under traffic.

Every dashboard query, recording rule and alert rule is evaluated through Prometheus's
HTTP API, and each must parse and return data. Alert expressions return nothing while
their alert is quiet, so each is evaluated twice: as written (it must parse), and with
its threshold comparisons (`> 0.25`, `== 0`) removed and an `absent(X)` replaced by X —
what is left is the signal the alert watches, whose selectors, labels and vector
matching (`and`, `or`, `on()`) must all find series. That the comparisons themselves
fire and resolve at the right values is `rules_test.yml`'s job (promtool).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pipeline import topics
from pipeline.dashboard import concrete, load_dashboard, panel_queries, query
from pipeline.settings import Settings
from pipeline.simulate import Scenario, build_traffic, encoded, garbage_records, publish
from tests.conftest import WorkerProcess
from tests.ops.conftest import RULES, PrometheusServer

pytestmark = pytest.mark.broker

THRESHOLD = re.compile(r"\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\b")
ABSENT = re.compile(r"^absent\((.*)\)$", re.DOTALL)


def signal_of(expr: str) -> str:
    """Return an alert expression without its threshold comparisons and absent()."""
    stripped = THRESHOLD.sub("", " ".join(expr.split()))
    m = ABSENT.match(stripped)
    return m.group(1) if m else stripped


def test_signal_of_strips_thresholds_only() -> None:
    """The stripping keeps ranges, offsets and arithmetic; it drops comparisons to numbers."""
    assert signal_of("a > 10000 and deriv(a[10m]) > 0") == "a and deriv(a[10m])"
    assert signal_of("x{le='0.5'} / y > 4 and x > 1") == "x{le='0.5'} / y and x"
    assert signal_of("m - m offset 10m >= 2.5e3") == "m - m offset 10m"
    assert signal_of('absent(up{job="herald"} == 1)') == 'up{job="herald"}'


def instant(prom: PrometheusServer, expr: str) -> dict[str, Any]:
    return query(prom.url, "/api/v1/query", {"query": expr})


def test_every_dashboard_and_rule_expression_returns_data(
    settings: Settings,
    worker_factory: Callable[..., WorkerProcess],
    prometheus_factory: Callable[[list[str]], PrometheusServer],
) -> None:
    """Each dashboard query, recording rule and alert signal parses and finds series."""
    worker = worker_factory()
    prom = prometheus_factory([f"127.0.0.1:{worker.metrics_port}"])
    traffic = build_traffic(Scenario(seed=5, subscribers=300, scale=0.1))
    secret = settings.subscriber_secret.reveal()
    setup = publish(settings, encoded(traffic.setup, secret))
    worker.wait_consumed({t: setup[t] for t in (topics.ACCOUNT_LINKS, topics.USER_SIGNALS)})
    sent = publish(settings, encoded(traffic.events, secret))
    sent += publish(settings, garbage_records(traffic))
    worker.wait_consumed({topics.BUSINESS_EVENTS: sent[topics.BUSINESS_EVENTS]})

    # Prometheus has scraped the finished work and evaluated every rule since.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rules = prom.get("/api/v1/rules")["data"]["groups"]  # type: ignore[index]
        done = instant(prom, "sum(herald_events_consumed_total)")["data"]["result"]
        evaluated = all(r.get("lastEvaluation", "").startswith("20") for g in rules
                        for r in g["rules"])  # fmt: skip
        if done and float(done[0]["value"][1]) >= sum(sent.values()) and evaluated:
            break
        time.sleep(0.5)
    time.sleep(3)  # a few more samples, so rates and deriv() have two points after the work

    queries: list[tuple[str, str]] = []
    for q in panel_queries(load_dashboard()):
        queries.append((f"panel {q.panel!r}", concrete(q.expr)))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            expr = " ".join(rule["expr"].split())
            if "record" in rule:
                queries.append((f"recording rule {rule['record']}", expr))
                queries.append((f"recorded series {rule['record']}", rule["record"]))
            else:
                queries.append((f"alert {rule['alert']} signal", signal_of(expr)))
                parsed = instant(prom, expr)
                assert parsed["status"] == "success", (rule["alert"], parsed)

    empty, failed = [], []
    for what, expr in queries:
        answer = instant(prom, expr)
        if answer["status"] != "success":
            failed.append(f"{what}: {expr}\n    {answer.get('error')}")
        elif not answer["data"]["result"]:
            empty.append(f"{what}: {expr}")
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for g in rules for r in g["rules"]
                 if r.get("health") != "ok"]  # fmt: skip
    print(f"\n{len(queries)} expressions evaluated; {len(empty)} without data")
    assert not failed, "did not parse:\n" + "\n".join(failed)
    assert not unhealthy, "rules failing to evaluate:\n" + "\n".join(unhealthy)
    assert not empty, f"{len(empty)} of {len(queries)} returned no data:\n" + "\n".join(empty)
    # The GC panel finds data even if only one generation were exported: all three are.
    gc_series = instant(prom, "herald_gc_pause_seconds_count")["data"]["result"]
    assert sorted(r["metric"]["generation"] for r in gc_series) == ["0", "1", "2"]
