"""One root exception for Herald; each subclass says whether retrying can help."""

from __future__ import annotations


class HeraldError(Exception):
    """Root of every error Herald raises on purpose."""

    retriable = False


class ConfigError(HeraldError):
    """A setting is missing or wrong; fix the configuration and start again."""


class BrokerError(HeraldError):
    """The Kafka broker could not be started or reached."""

    retriable = True
