"""JSON lines <-> wire records, for `herald publish`, `herald tail` and the simulator.

Humans and upstream scripts write JSON: timestamps as epoch milliseconds or ISO-8601
text, the payload as {"FlightDelay": {...}} (Avro's JSON form of a union), and on
account-links and user-signals a `phone` in place of the subscriber key, so that no
upstream system re-implements the keyed hash.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import topics
from pipeline.domain.keys import InvalidNumber, normalise, subscriber_key, wa_id

NAMESPACE = "herald.v1."
TIME_FIELDS = {
    "occurred_at", "expires_at", "updated_at", "decided_at", "deliver_after", "failed_at",
    "new_departure", "departure", "eta", "valid_until",
}  # fmt: skip


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InputError(ValueError):
    """A JSON line that cannot become a record; the message names the field, not its value."""


def to_millis(value: Any, field: str) -> int | None:
    """Accept epoch milliseconds or ISO-8601 text (with an offset) for a timestamp."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"{field}: not an ISO-8601 timestamp") from exc
        if parsed.tzinfo is None:
            raise InputError(f"{field}: timestamp needs a UTC offset")
        # Integer arithmetic: float seconds * 1000 can land a millisecond short.
        return (parsed - _EPOCH) // timedelta(milliseconds=1)
    raise InputError(f"{field}: expected epoch milliseconds or ISO-8601 text")


def _times(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_millis(v, k) if k in TIME_FIELDS else v for k, v in obj.items()}


def json_to_record(
    topic: str, obj: Mapping[str, Any], secret: bytes
) -> tuple[bytes, dict[str, Any]]:
    """Turn one JSON object into (record key, Avro record dict) for `topic`."""
    if topic == topics.BUSINESS_EVENTS:
        record = _times(obj)
        payload = record.get("payload")
        if isinstance(payload, Mapping):
            if len(payload) != 1:
                raise InputError('payload: expected {"RecordName": {...}}')
            ((name, fields),) = payload.items()
            record["payload"] = (name if "." in name else NAMESPACE + name, _times(fields))
        offer = record.get("offer")
        if isinstance(offer, Mapping):
            record["offer"] = _times(offer)
        if "event_id" not in record or "business_id" not in record:
            raise InputError("event_id and business_id are required")
        return str(record["business_id"]).encode(), record
    if topic in (topics.ACCOUNT_LINKS, topics.USER_SIGNALS):
        record = _times(obj)
        phone = record.pop("phone", None)
        if phone is not None:
            try:
                e164, _region = normalise(str(phone))
            except InvalidNumber as exc:
                raise InputError(f"phone: {exc}") from None
            record["subscriber"] = subscriber_key(e164, secret)
            if topic == topics.ACCOUNT_LINKS:
                record.setdefault("wa_id", wa_id(e164))
        if "subscriber" not in record:
            raise InputError("subscriber (or phone) is required")
        return str(record["subscriber"]).encode(), record
    if topic == topics.BUSINESS_PROFILES:
        record = _times(obj)
        if "business_id" not in record:
            raise InputError("business_id is required")
        return str(record["business_id"]).encode(), record
    if topic == topics.LINK_REPUTATION:
        record = _times(obj)
        if "domain" not in record:
            raise InputError("domain is required")
        record["domain"] = str(record["domain"]).lower().removeprefix("www.")
        return record["domain"].encode(), record
    raise InputError(f"publishing to {topic!r} is not supported")


def record_to_json(value: Any) -> Any:
    """Make a decoded Avro record JSON-friendly (union tuples, bytes)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return {value[0].removeprefix(NAMESPACE): record_to_json(value[1])}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {k: record_to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [record_to_json(v) for v in value]
    return value
