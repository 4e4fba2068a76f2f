"""One frozen settings object, read from the environment; secrets never printed."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pipeline.domain.keys import DEVELOPMENT_SECRET
from pipeline.errors import ConfigError


class Secret:
    """A secret value whose repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """How to reach a secured cluster; PLAINTEXT by default (the embedded broker)."""

    security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __post_init__(self) -> None:
        # One spelling for every client: a typo must stop the worker, never fall back
        # to PLAINTEXT and send a password in the clear.
        protocol = self.security_protocol.upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(f"HERALD_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}")
        object.__setattr__(self, "security_protocol", protocol)
        if protocol.startswith("SASL"):
            mechanism = (self.sasl_mechanism or "PLAIN").upper()
            if mechanism not in MECHANISMS:
                raise ConfigError(f"HERALD_SASL_MECHANISM must be one of {', '.join(MECHANISMS)}")
            object.__setattr__(self, "sasl_mechanism", mechanism)

    def kafka_python_config(self) -> dict[str, Any]:
        """Return these settings as kafka-python client keyword arguments."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = (
                self.sasl_password.reveal().decode() if self.sasl_password else None
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                config[name] = getattr(self, name)
        return config

    def aiokafka_config(self) -> dict[str, Any]:
        """Return these settings as aiokafka client keyword arguments."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = (
                self.sasl_password.reveal().decode() if self.sasl_password else None
            )
        if self.security_protocol.upper() in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            config["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return config


@dataclass(frozen=True)
class Settings:
    broker: str = "127.0.0.1:9092"
    app_id: str = "herald"
    environment: str = "development"  # "production" refuses the development secret
    subscriber_secret: Secret = field(default_factory=lambda: Secret(DEVELOPMENT_SECRET))
    partitions: int = 6
    replication_factor: int = 1
    metrics_port: int = 0  # 0: no /metrics, /healthz, /readyz endpoint
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container
    session_timeout_s: float = 10.0  # short: the embedded broker's group join waits on it
    batch_size: int = 1_000  # envelopes (a partition's fetch each) per batch, at most
    # A stage takes what has arrived after waiting this long: each event is a fetch's
    # worth of records already, and a longer wait only delays them (and idles the stage).
    batch_within_s: float = 0.001
    fetch_wait_ms: int = 10  # the broker may hold an empty fetch this long (faust: 1,500)
    data_dir: Path = Path(".herald-data")
    store: str = "memory"  # or "rocksdb": state on local disk, so a restart replays little
    policy_file: Path | None = None  # None: policy/default.toml
    # Testing only: a file holding milliseconds to add to the wall clock, so a test can
    # move a running worker through a scripted day. Refused in production.
    clock_offset_file: Path | None = None
    # Testing only: a file of "topic partition" lines; the worker pauses each named
    # input partition in its consumer once, so a test can watch it stall. Refused in
    # production.
    debug_pause_file: Path | None = None
    stall_after_s: float = 30.0  # an input partition with lag that does not move: stalled
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    log_format: str = "text"  # or "json": one JSON object per line, for log collectors
    # The CPUs a worker runs on (all its threads), or None: wherever the OS puts it. A
    # worker's threads share one lock (the GIL): on a core of their own they hand it over
    # without moving between cores, and the worker decides faster (bench/README.md).
    cpus: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ConfigError("HERALD_PARTITIONS must be at least 1")
        if self.store not in ("memory", "rocksdb"):
            raise ConfigError("HERALD_STORE must be 'memory' or 'rocksdb'")
        if self.log_format not in ("text", "json"):
            raise ConfigError("HERALD_LOG_FORMAT must be 'text' or 'json'")
        if self.environment not in ("development", "production"):
            raise ConfigError("HERALD_ENV must be 'development' or 'production'")
        if self.environment == "production" and self.clock_offset_file is not None:
            raise ConfigError("HERALD_CLOCK_OFFSET_FILE is for tests; refusing it in production")
        if self.environment == "production" and self.debug_pause_file is not None:
            raise ConfigError("HERALD_DEBUG_PAUSE_FILE is for tests; refusing it in production")
        if self.cpus is not None and (not self.cpus or min(self.cpus) < 0):
            raise ConfigError("HERALD_CPUS must name at least one CPU, numbered from 0")
        if self.stall_after_s <= 0:
            raise ConfigError("HERALD_STALL_AFTER must be a positive number of seconds")
        if not self.subscriber_secret.reveal():
            raise ConfigError(
                "the subscriber secret (HERALD_SECRET or HERALD_SECRET_FILE) is empty"
            )
        if self.environment == "production" and self.uses_development_secret:
            raise ConfigError(
                "refusing to start in production with the development subscriber secret: "
                "set HERALD_SECRET or HERALD_SECRET_FILE"
            )

    @property
    def store_url(self) -> str:
        """Return faust's table store URL for the configured store."""
        return "rocksdb://" if self.store == "rocksdb" else "memory://"

    @property
    def uses_development_secret(self) -> bool:
        return self.subscriber_secret.reveal() == DEVELOPMENT_SECRET

    def describe(self) -> dict[str, str]:
        """Return every setting as text, secrets masked, for logs and `herald config`."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from HERALD_* variables; keyword overrides win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        simple = {
            "HERALD_BROKER": ("broker", str),
            "HERALD_APP_ID": ("app_id", str),
            "HERALD_ENV": ("environment", str),
            "HERALD_PARTITIONS": ("partitions", int),
            "HERALD_REPLICATION_FACTOR": ("replication_factor", int),
            "HERALD_METRICS_PORT": ("metrics_port", int),
            "HERALD_METRICS_HOST": ("metrics_host", str),
            "HERALD_SESSION_TIMEOUT": ("session_timeout_s", float),
            "HERALD_BATCH_SIZE": ("batch_size", int),
            "HERALD_BATCH_WITHIN": ("batch_within_s", float),
            "HERALD_FETCH_WAIT_MS": ("fetch_wait_ms", int),
            "HERALD_DATA_DIR": ("data_dir", Path),
            "HERALD_STORE": ("store", str),
            "HERALD_POLICY_FILE": ("policy_file", Path),
            "HERALD_CLOCK_OFFSET_FILE": ("clock_offset_file", Path),
            "HERALD_DEBUG_PAUSE_FILE": ("debug_pause_file", Path),
            "HERALD_STALL_AFTER": ("stall_after_s", float),
            "HERALD_LOG_FORMAT": ("log_format", str),
        }
        for var, (name, parse) in simple.items():
            if env.get(var):
                try:
                    values[name] = parse(env[var])
                except ValueError as exc:
                    raise ConfigError(f"{var} is not a valid {parse.__name__}") from exc
        if env.get("HERALD_CPUS"):
            try:
                values["cpus"] = parse_cpu_list(env["HERALD_CPUS"])
            except ValueError as exc:
                raise ConfigError("HERALD_CPUS is not a CPU list (like 1, 0,2 or 0-3)") from exc
        secret = _secret(env, "HERALD_SECRET")
        if secret is not None:
            values["subscriber_secret"] = secret
        values["security"] = KafkaSecurity(
            security_protocol=env.get("HERALD_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("HERALD_SASL_MECHANISM") or None,
            sasl_username=env.get("HERALD_SASL_USERNAME") or None,
            sasl_password=_secret(env, "HERALD_SASL_PASSWORD"),
            ssl_cafile=env.get("HERALD_SSL_CAFILE") or None,
            ssl_certfile=env.get("HERALD_SSL_CERTFILE") or None,
            ssl_keyfile=env.get("HERALD_SSL_KEYFILE") or None,
        )
        values.update(overrides)
        return cls(**values)


MAX_CPUS = 4096  # Linux's own limit on most builds: a bigger number is a typo


def parse_cpu_list(text: str) -> frozenset[int]:
    """Parse a Linux CPU list ("3", "0,2", "0-3,6"), as taskset and cpusets write it."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        low = int(first)
        high = int(last) if dash else low
        if low < 0 or high < low or high >= MAX_CPUS:
            raise ValueError(f"bad CPU range {part.strip()!r}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: Iterable[int]) -> str:
    """Write CPUs as a plain list ("0,2,3"), for logs and errors."""
    return ",".join(str(c) for c in sorted(cpus))


def _secret(env: Mapping[str, str], var: str) -> Secret | None:
    """Read VAR, or the file named by VAR_FILE (trailing newline stripped)."""
    if env.get(f"{var}_FILE"):
        try:
            return Secret(Path(env[f"{var}_FILE"]).read_bytes().rstrip(b"\r\n"))
        except OSError as exc:
            raise ConfigError(f"{var}_FILE cannot be read: {exc.strerror}") from exc
    if env.get(var):
        return Secret(env[var].encode())
    return None
