"""Structural limits checked before an event is expanded."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.domain.models import BusinessEvent, EventKind, Policy, Template
from pipeline.domain.validate import InvalidEvent, validate_event

NOW = 1_700_000_000_000
POLICY = Policy("test", max_recipients_per_event=3, max_param_length=10, max_clock_skew_ms=1000)
NUMBER = "+34612345678"
SECRET_PARAM = "Ana López"


def _event() -> BusinessEvent:
    return BusinessEvent(
        event_id="e1",
        business_id="b1",
        kind=EventKind.SHIPMENT_UPDATE,
        occurred_at=NOW,
        recipients=(NUMBER, "+34612345679"),
        template=Template("shipment", "es", (SECRET_PARAM, "123")),
        expires_at=NOW + 1,
    )


def test_a_valid_event_passes() -> None:
    """An event within every limit raises nothing."""
    validate_event(_event(), POLICY, NOW)


def test_limits_are_inclusive() -> None:
    """Exactly the maximum recipients, parameter length and clock skew are allowed."""
    event = replace(
        _event(),
        recipients=(NUMBER,) * 3,
        template=Template("t", "en", ("x" * 10,)),
        occurred_at=NOW + 1000,
        expires_at=None,
    )
    validate_event(event, POLICY, NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_id": ""}, "event_id is empty"),
        ({"event_id": "  "}, "event_id is empty"),
        ({"business_id": ""}, "business_id is empty"),
        ({"business_id": "acme\x1f0"}, "business_id has control characters"),
        ({"recipients": ()}, "no recipients"),
        ({"recipients": (NUMBER,) * 4}, "4 recipients, more than the limit of 3"),
        ({"template": Template("t", "en", ("ok", SECRET_PARAM * 2))}, "parameter 1 has 18"),
        ({"occurred_at": NOW + 1001}, "in the future"),
        ({"expires_at": NOW}, "expires_at is not after occurred_at"),
        ({"expires_at": NOW - 5}, "expires_at is not after occurred_at"),
    ],
)
def test_each_limit_is_enforced(change: dict[str, object], message: str) -> None:
    """Each broken limit raises InvalidEvent naming the limit."""
    with pytest.raises(InvalidEvent, match=message):
        validate_event(replace(_event(), **change), POLICY, NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"recipients": (NUMBER,) * 4},
        {"template": Template("t", "en", (SECRET_PARAM * 2,))},
        {"occurred_at": NOW + 5000},
    ],
)
def test_messages_carry_no_personal_data(change: dict[str, object]) -> None:
    """An InvalidEvent message never repeats a number or a parameter's content."""
    with pytest.raises(InvalidEvent) as info:
        validate_event(replace(_event(), **change), POLICY, NOW)  # type: ignore[arg-type]
    text = str(info.value)
    assert NUMBER[1:] not in text and "612" not in text
    assert "Ana" not in text and "López" not in text


def test_invalid_event_is_a_value_error() -> None:
    """Callers catching ValueError also catch InvalidEvent."""
    assert issubclass(InvalidEvent, ValueError)


def _passcode(*params: str) -> BusinessEvent:
    return replace(
        _event(), kind=EventKind.ONE_TIME_PASSCODE, template=Template("otp", "en", params)
    )


def test_passcode_parameters_are_short() -> None:
    """A passcode parameter of up to 15 characters passes; 16 is an InvalidEvent."""
    policy = Policy("test")
    validate_event(_passcode("123456", "x" * 15), policy, NOW)
    with pytest.raises(InvalidEvent, match="passcode template parameter 1 has 16 characters"):
        validate_event(_passcode("123456", "x" * 16), policy, NOW)


def test_the_passcode_limit_is_the_policy_s_and_for_passcodes_only() -> None:
    """The limit comes from passcode_max_param_length and spares other kinds."""
    policy = Policy("test", passcode_max_param_length=6)
    with pytest.raises(InvalidEvent, match="passcode limit of 6"):
        validate_event(_passcode("1234567"), policy, NOW)
    shipment = replace(_event(), template=Template("t", "en", ("x" * 16,)))
    validate_event(shipment, Policy("test"), NOW)
