"""Settings from HERALD_* variables: parsing, secrets never shown, Kafka security mapping."""

from __future__ import annotations

from pathlib import Path

import faust
import pytest

from pipeline.domain.keys import DEVELOPMENT_SECRET
from pipeline.errors import ConfigError
from pipeline.settings import KafkaSecurity, Secret, Settings, parse_cpu_list
from pipeline.streams.app import faust_credentials

SECRET = "s3cr3t-subscriber-hmac-key"
PASSWORD = "hunter2-sasl-password"


def _shown(settings: Settings) -> list[str]:
    """Every way settings get printed or logged."""
    return [repr(settings), str(settings), str(settings.describe()), repr(settings.security)]


def test_from_env_reads_every_herald_variable(tmp_path: Path) -> None:
    """Each documented HERALD_* variable lands in its setting, parsed to its type."""
    env = {
        "HERALD_BROKER": "kafka-1:9093,kafka-2:9093",
        "HERALD_APP_ID": "herald-eu",
        "HERALD_ENV": "production",
        "HERALD_SECRET": SECRET,
        "HERALD_PARTITIONS": "12",
        "HERALD_REPLICATION_FACTOR": "3",
        "HERALD_METRICS_PORT": "9464",
        "HERALD_SESSION_TIMEOUT": "30.5",
        "HERALD_BATCH_SIZE": "250",
        "HERALD_BATCH_WITHIN": "0.2",
        "HERALD_DATA_DIR": str(tmp_path),
        "HERALD_SECURITY_PROTOCOL": "SASL_SSL",
        "HERALD_SASL_MECHANISM": "SCRAM-SHA-512",
        "HERALD_SASL_USERNAME": "herald",
        "HERALD_SASL_PASSWORD": PASSWORD,
        "HERALD_SSL_CAFILE": "/etc/ca.pem",
        "HERALD_SSL_CERTFILE": "/etc/cert.pem",
        "HERALD_SSL_KEYFILE": "/etc/key.pem",
    }
    s = Settings.from_env(env)

    assert (s.broker, s.app_id, s.environment) == (
        "kafka-1:9093,kafka-2:9093",
        "herald-eu",
        "production",
    )
    assert s.subscriber_secret.reveal() == SECRET.encode()
    assert not s.uses_development_secret
    assert (s.partitions, s.replication_factor, s.metrics_port) == (12, 3, 9464)
    assert (s.session_timeout_s, s.batch_size, s.batch_within_s) == (30.5, 250, 0.2)
    assert s.data_dir == tmp_path
    assert s.security == KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="herald",
        sasl_password=Secret(PASSWORD.encode()),
        ssl_cafile="/etc/ca.pem",
        ssl_certfile="/etc/cert.pem",
        ssl_keyfile="/etc/key.pem",
    )


def test_defaults_without_variables() -> None:
    """An empty environment gives the documented defaults and the development secret."""
    s = Settings.from_env({})
    assert (s.broker, s.app_id, s.environment, s.partitions) == (
        "127.0.0.1:9092",
        "herald",
        "development",
        6,
    )
    assert (s.replication_factor, s.metrics_port, s.batch_size) == (1, 0, 1_000)
    assert s.uses_development_secret
    assert s.security == KafkaSecurity()


def test_overrides_win_over_the_environment() -> None:
    """Keyword overrides take precedence over HERALD_* variables."""
    s = Settings.from_env({"HERALD_APP_ID": "from-env", "HERALD_PARTITIONS": "3"}, app_id="kw")
    assert (s.app_id, s.partitions) == ("kw", 3)


def test_secrets_from_variables_never_appear_in_output() -> None:
    """HERALD_SECRET and HERALD_SASL_PASSWORD are never in repr, str or describe()."""
    s = Settings.from_env(
        {
            "HERALD_SECRET": SECRET,
            "HERALD_SASL_MECHANISM": "PLAIN",
            "HERALD_SASL_USERNAME": "u",
            "HERALD_SASL_PASSWORD": PASSWORD,
            "HERALD_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        }
    )
    assert s.security.sasl_password is not None
    assert s.security.sasl_password.reveal() == PASSWORD.encode()
    for text in _shown(s):
        assert SECRET not in text
        assert PASSWORD not in text
    assert "**********" in s.describe()["subscriber_secret"]


def test_secrets_from_files_are_read_and_never_shown(tmp_path: Path) -> None:
    """*_FILE variables are read (trailing newline dropped), win, and are never printed."""
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET.encode() + b"\r\n")
    password_file = tmp_path / "password"
    password_file.write_bytes(PASSWORD.encode() + b"\n")
    env = {
        "HERALD_SECRET_FILE": str(secret_file),
        "HERALD_SECRET": "ignored-when-a-file-is-given",
        "HERALD_SASL_PASSWORD_FILE": str(password_file),
        "HERALD_SASL_MECHANISM": "PLAIN",
        "HERALD_ENV": "production",
    }
    s = Settings.from_env(env)

    assert s.subscriber_secret.reveal() == SECRET.encode()
    assert s.security.sasl_password == Secret(PASSWORD.encode())
    for text in _shown(s):
        assert SECRET not in text
        assert PASSWORD not in text


def test_unreadable_secret_file_is_a_config_error(tmp_path: Path) -> None:
    """A *_FILE naming a missing file is a ConfigError that does not fall back silently."""
    with pytest.raises(ConfigError, match="HERALD_SECRET_FILE cannot be read"):
        Settings.from_env({"HERALD_SECRET_FILE": str(tmp_path / "absent")})


def test_secret_repr_and_str_are_masked() -> None:
    """A Secret prints as stars and compares by value."""
    secret = Secret(b"value")
    assert "value" not in repr(secret) and "value" not in str(secret)
    assert secret == Secret(b"value") != Secret(b"other")


def test_production_refuses_the_development_secret(tmp_path: Path) -> None:
    """HERALD_ENV=production without a real secret (or with the development one) fails."""
    with pytest.raises(ConfigError, match="development subscriber secret"):
        Settings.from_env({"HERALD_ENV": "production"})
    with pytest.raises(ConfigError, match="development subscriber secret"):
        Settings.from_env(
            {"HERALD_ENV": "production", "HERALD_SECRET": DEVELOPMENT_SECRET.decode()}
        )
    dev_file = tmp_path / "dev"
    dev_file.write_bytes(DEVELOPMENT_SECRET + b"\n")
    with pytest.raises(ConfigError, match="development subscriber secret"):
        Settings.from_env({"HERALD_ENV": "production", "HERALD_SECRET_FILE": str(dev_file)})


def test_production_with_a_real_secret_starts() -> None:
    """Production with its own secret builds settings keyed by that secret."""
    s = Settings.from_env({"HERALD_ENV": "production", "HERALD_SECRET": SECRET})
    assert s.environment == "production"
    assert s.subscriber_secret.reveal() == SECRET.encode()


def test_unknown_environment_is_refused() -> None:
    """HERALD_ENV accepts only development and production."""
    with pytest.raises(ConfigError, match="HERALD_ENV"):
        Settings.from_env({"HERALD_ENV": "prod"})


@pytest.mark.parametrize("value", ["abc", "6.5", "0", "-1"])
def test_invalid_partitions_is_a_config_error(value: str) -> None:
    """HERALD_PARTITIONS must be a whole number of at least 1."""
    with pytest.raises(ConfigError, match="HERALD_PARTITIONS"):
        Settings.from_env({"HERALD_PARTITIONS": value})


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("HERALD_BATCH_SIZE", "lots"),
        ("HERALD_SESSION_TIMEOUT", "ten"),
        ("HERALD_METRICS_PORT", "http"),
    ],
)
def test_invalid_numbers_name_their_variable(var: str, value: str) -> None:
    """A variable that does not parse is a ConfigError naming it, never quoting its value."""
    with pytest.raises(ConfigError, match=var) as info:
        Settings.from_env({var: value})
    assert value not in str(info.value)


# --- Kafka client mappings ------------------------------------------------------------------


def test_kafka_python_config_maps_sasl_and_tls() -> None:
    """SASL and TLS settings become kafka-python's keyword arguments, password revealed."""
    security = Settings.from_env(
        {
            "HERALD_SECURITY_PROTOCOL": "SASL_SSL",
            "HERALD_SASL_MECHANISM": "SCRAM-SHA-256",
            "HERALD_SASL_USERNAME": "herald",
            "HERALD_SASL_PASSWORD": PASSWORD,
            "HERALD_SSL_CAFILE": "/etc/ca.pem",
        }
    ).security
    assert security.kafka_python_config() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "herald",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": "/etc/ca.pem",
    }


def test_kafka_python_config_plaintext_is_minimal() -> None:
    """Without security settings only the protocol is passed."""
    assert KafkaSecurity().kafka_python_config() == {"security_protocol": "PLAINTEXT"}


def test_kafka_python_config_tls_client_certificate() -> None:
    """A TLS client certificate and key are passed on, without SASL arguments."""
    security = KafkaSecurity("SSL", ssl_cafile="ca", ssl_certfile="c", ssl_keyfile="k")
    assert security.kafka_python_config() == {
        "security_protocol": "SSL",
        "ssl_cafile": "ca",
        "ssl_certfile": "c",
        "ssl_keyfile": "k",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_faust_credentials_for_sasl_plaintext(mechanism: str) -> None:
    """SASL_PLAINTEXT becomes faust SASL credentials with the mechanism and username."""
    security = KafkaSecurity("SASL_PLAINTEXT", mechanism, "herald", Secret(PASSWORD.encode()))
    credentials = faust_credentials(security)

    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == mechanism
    assert credentials.username == "herald"
    assert credentials.password == PASSWORD
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    assert PASSWORD not in repr(credentials)


def test_faust_credentials_for_plaintext_is_none() -> None:
    """PLAINTEXT needs no credentials object."""
    assert faust_credentials(KafkaSecurity()) is None


@pytest.mark.parametrize("protocol", ["SASL-SSL", "TLS", "SASL_PLAIN", "SASL SSL"])
def test_unknown_security_protocol_is_a_config_error(protocol: str) -> None:
    """A protocol other than the four Kafka knows is refused, never silently downgraded."""
    with pytest.raises(ConfigError, match="HERALD_SECURITY_PROTOCOL"):
        Settings.from_env(
            {
                "HERALD_SECURITY_PROTOCOL": protocol,
                "HERALD_SASL_MECHANISM": "PLAIN",
                "HERALD_SASL_USERNAME": "u",
                "HERALD_SASL_PASSWORD": PASSWORD,
            }
        )


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SASL_SSL", "PLAIN"),
        ("sasl_ssl", "PLAIN"),
        ("SASL_PLAINTEXT", None),
    ],
)
def test_faust_and_kafka_python_get_the_same_security(protocol: str, mechanism: str | None) -> None:
    """The worker (faust) and the CLI clients (kafka-python) connect the same way."""
    env = {
        "HERALD_SECURITY_PROTOCOL": protocol,
        "HERALD_SASL_USERNAME": "herald",
        "HERALD_SASL_PASSWORD": PASSWORD,
    }
    if mechanism is not None:
        env["HERALD_SASL_MECHANISM"] = mechanism
    security = Settings.from_env(env).security
    config = security.kafka_python_config()
    credentials = faust_credentials(security)

    assert config["security_protocol"] == credentials.protocol.value
    assert config.get("sasl_mechanism") == credentials.mechanism.value
    assert config["sasl_plain_username"] == credentials.username
    assert config["sasl_plain_password"] == credentials.password


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("3", {3}), ("0,2", {0, 2}), ("0-3,6", {0, 1, 2, 3, 6}), (" 1 , 2-2 ", {1, 2})],
)
def test_cpu_lists_read_as_taskset_writes_them(text: str, cpus: set[int]) -> None:
    assert parse_cpu_list(text) == cpus
    assert Settings.from_env({"HERALD_CPUS": text}).cpus == cpus


@pytest.mark.parametrize("text", ["two", "3-1", "-1", "1,", "0-99999"])
def test_a_bad_cpu_list_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="HERALD_CPUS is not a CPU list"):
        Settings.from_env({"HERALD_CPUS": text})


def test_no_cpu_list_leaves_the_worker_where_the_os_puts_it() -> None:
    assert Settings.from_env({}).cpus is None
    with pytest.raises(ConfigError, match="at least one CPU"):
        Settings(cpus=frozenset())
