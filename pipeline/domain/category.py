"""Category and priority of a business event, from what it is rather than what it claims."""

from __future__ import annotations

from datetime import datetime

from pipeline.domain.models import HOUR_MS, BusinessEvent, Category, EventKind, Priority

# A delayed departure this close is news the traveller needs now, whatever the hour
# (the default of QuietHours.urgent_departure_ms, which decide passes in).
URGENT_DEPARTURE_MS = 12 * HOUR_MS

_ALWAYS_URGENT = frozenset(
    {EventKind.FLIGHT_CANCELLATION, EventKind.GATE_CHANGE, EventKind.ONE_TIME_PASSCODE}
)


def derive_category(event: BusinessEvent) -> Category:
    """Return the event's category: promotional content is MARKETING whatever its kind."""
    if event.kind == EventKind.PROMOTION or event.offer is not None:
        return Category.MARKETING
    if event.kind == EventKind.ONE_TIME_PASSCODE:
        return Category.AUTHENTICATION
    return Category.UTILITY


def priority(
    event: BusinessEvent,
    category: Category,
    now: int,
    urgent_departure_ms: int = URGENT_DEPARTURE_MS,
) -> Priority:
    """Return how urgently the message should reach the user.

    MARKETING is always LOW, even on an urgent kind carrying an offer: urgency lets a
    message bypass quiet hours, and that privilege belongs to utility alone.
    """
    if category == Category.MARKETING:
        return Priority.LOW
    if event.kind in _ALWAYS_URGENT:
        return Priority.URGENT
    if event.kind == EventKind.FLIGHT_DELAY:
        departure = _millis(event.payload.get("new_departure"))
        # A departure already past is still urgent here; whether it is worth sending at
        # all is the expiry rule's call.
        if departure is not None and departure - now <= urgent_departure_ms:
            return Priority.URGENT
    return Priority.NORMAL


def _millis(value: object) -> int | None:
    # The codec may hand timestamp-millis over as int or, with fastavro's logical types,
    # as an aware datetime; anything else is treated as absent.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return None
