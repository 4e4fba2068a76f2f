"""Log output: faust's text lines by default, or one JSON object per line for collectors.

The JSON formatter writes the rendered message and a few fixed fields, never the call's
raw arguments or extra attributes, so it adds nothing the text format would not show.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: ts, level, logger, message, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # One line per record even when a message holds newlines (tracebacks, banners).
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(loglevel: str | int) -> dict[str, Any]:
    """Return a dictConfig that sends every record to stderr as JSON lines."""
    level = loglevel.upper() if isinstance(loglevel, str) else loglevel
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "level": level,
                "stream": sys.stderr,
            }
        },
        "root": {"level": level, "handlers": ["default"]},
    }


def use_json(loglevel: str | int) -> None:
    """Switch the root logger to JSON lines now (before faust takes over logging)."""
    import logging.config

    logging.config.dictConfig(logging_config(loglevel))
