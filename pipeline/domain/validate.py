"""Structural limits on a business event, checked before it is expanded."""

from __future__ import annotations

from pipeline.domain.models import BusinessEvent, EventKind, Policy


class InvalidEvent(ValueError):
    """An event that breaks a limit; the message names the limit, never personal data."""


def validate_event(event: BusinessEvent, policy: Policy, now: int) -> None:
    """Raise InvalidEvent if the event breaks a structural limit of the policy."""
    if not event.event_id.strip():
        raise InvalidEvent("event_id is empty")
    if not event.business_id.strip():
        raise InvalidEvent("business_id is empty")
    if not event.business_id.isprintable():
        # Control characters have no place in an id, and the business table keys a
        # window's segments with one (\x1f) after the business id.
        raise InvalidEvent("business_id has control characters")
    count = len(event.recipients)
    if count == 0:
        raise InvalidEvent("event has no recipients")
    if count > policy.max_recipients_per_event:
        raise InvalidEvent(
            f"event has {count} recipients, more than the limit of "
            f"{policy.max_recipients_per_event}"
        )
    # A passcode template carries a code, not prose: a long parameter is a misuse of the
    # authentication category (marketing smuggled past consent and caps).
    passcode = event.kind == EventKind.ONE_TIME_PASSCODE
    limit = policy.passcode_max_param_length if passcode else None
    for position, param in enumerate(event.template.params):
        # Lengths and positions only: a parameter's content may be personal data.
        if len(param) > policy.max_param_length:
            raise InvalidEvent(
                f"template parameter {position} has {len(param)} characters, more than the "
                f"limit of {policy.max_param_length}"
            )
        if limit is not None and len(param) > limit:
            raise InvalidEvent(
                f"passcode template parameter {position} has {len(param)} characters, more "
                f"than the passcode limit of {limit}"
            )
    skew = event.occurred_at - now
    if skew > policy.max_clock_skew_ms:
        raise InvalidEvent(
            f"occurred_at is {skew} ms in the future, more than the allowed clock skew of "
            f"{policy.max_clock_skew_ms} ms"
        )
    if event.expires_at is not None and event.expires_at <= event.occurred_at:
        raise InvalidEvent("expires_at is not after occurred_at")
