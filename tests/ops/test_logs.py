"""Structured logs: the JSON formatter, and a worker started with HERALD_LOG_FORMAT=json."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from pipeline import topics
from pipeline.errors import ConfigError
from pipeline.logs import JsonFormatter, logging_config
from pipeline.settings import Settings
from tests.conftest import WorkerProcess
from tests.stream.test_pipeline import event, link, send, signal


def record(msg: str, *args: Any, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("herald.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_json_formatter_writes_one_object_per_line() -> None:
    """A record becomes one JSON line with time, level, logger and the rendered message."""
    line = JsonFormatter().format(record("consumed %d records\nfrom %s", 3, "business-events"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "herald.test"
    assert entry["message"] == "consumed 3 records\nfrom business-events"
    assert entry["ts"].endswith("+00:00")
    assert set(entry) == {"ts", "level", "logger", "message"}


def test_json_formatter_keeps_tracebacks_inside_the_line() -> None:
    """An exception's traceback is a field of the same line, not lines of its own."""
    line = JsonFormatter().format(record("failed", exc=True))
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_json_formatter_adds_no_extra_attributes() -> None:
    """Attributes passed with extra= are not written: only what the message itself says."""
    r = record("sent")
    r.wa_id = "+6281200000001"
    assert "6281200000001" not in JsonFormatter().format(r)


def test_log_format_setting_is_checked() -> None:
    """HERALD_LOG_FORMAT accepts text and json only; a typo stops the worker."""
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"HERALD_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="HERALD_LOG_FORMAT"):
        Settings.from_env({"HERALD_LOG_FORMAT": "yaml"})


def test_logging_config_is_accepted_by_dictconfig() -> None:
    """The config handed to faust is a valid dictConfig whose handler formats JSON."""
    import logging.config

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logging.config.dictConfig(logging_config("info"))
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.INFO
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.broker
def test_worker_with_json_logs_writes_only_json_lines(
    settings: Settings, worker_factory: Callable[..., WorkerProcess]
) -> None:
    """A worker with HERALD_LOG_FORMAT=json writes every log line as a JSON object."""
    worker = worker_factory(HERALD_LOG_FORMAT="json")
    phone = "+6281277770002"
    send(settings, topics.ACCOUNT_LINKS, [link(phone)])
    send(settings, topics.USER_SIGNALS, [signal(phone, "OPT_IN")])
    worker.wait_consumed({topics.ACCOUNT_LINKS: 1, topics.USER_SIGNALS: 1})
    send(settings, topics.BUSINESS_EVENTS, [event("json-logs-1", "SERVICE_UPDATE", [phone])])
    worker.wait_consumed({topics.BUSINESS_EVENTS: 1})
    time.sleep(1)
    lines = [line for line in worker.log().splitlines() if line.strip()]
    assert len(lines) > 5, lines
    entries = []
    for i, line in enumerate(lines, 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"log line {i} is not JSON: {line[:300]!r}")
    assert any("herald worker: broker=" in e["message"] for e in entries)
    assert {e["logger"] for e in entries} & {"faust.worker", "faust.app.base", "pipeline.worker"}
    assert "6281277770002" not in worker.log()
