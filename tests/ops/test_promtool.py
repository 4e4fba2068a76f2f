"""promtool: the scrape config and rules are valid, and the alert unit tests pass."""

from __future__ import annotations

import re

import yaml

from tests.ops.conftest import ROOT, RULES, require_tool, run

PROMETHEUS = ROOT / "deploy/prometheus"


def test_promtool_checks_the_config() -> None:
    """`promtool check config` accepts prometheus.yml and the rule file it names."""
    result = run([require_tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    """`promtool check rules` accepts every recording and alert rule."""
    result = run([require_tool("promtool"), "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    """Each alert fires and resolves as rules_test.yml says."""
    result = run([require_tool("promtool"), "test", "rules", str(PROMETHEUS / "rules_test.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_and_has_a_runbook_section() -> None:
    """Each alert has a unit test and a runbook_url naming an existing operations.md heading."""
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())["tests"]
    tested = {a["alertname"] for t in tests for a in t.get("alert_rule_test", [])
              if a["exp_alerts"]}  # fmt: skip
    assert set(alerts) <= tested, set(alerts) - tested
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in (ROOT / "docs/operations.md").read_text().splitlines()
        if line.startswith("#")
    }
    for name, rule in alerts.items():
        url = rule["annotations"]["runbook_url"]
        assert url.startswith("docs/operations.md#"), (name, url)
        assert url.split("#", 1)[1] in headings, (name, url)
