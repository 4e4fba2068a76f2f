"""Herald's domain values: immutable, free of any I/O, shared by every stage.

Times are integer milliseconds since the Unix epoch (UTC), the unit of the Avro
`timestamp-millis` fields on the wire, so no conversion happens on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class EventKind(StrEnum):
    FLIGHT_DELAY = "FLIGHT_DELAY"
    FLIGHT_CANCELLATION = "FLIGHT_CANCELLATION"
    GATE_CHANGE = "GATE_CHANGE"
    SHIPMENT_UPDATE = "SHIPMENT_UPDATE"
    DELIVERY_UPDATE = "DELIVERY_UPDATE"
    SERVICE_UPDATE = "SERVICE_UPDATE"
    ONE_TIME_PASSCODE = "ONE_TIME_PASSCODE"
    PROMOTION = "PROMOTION"


class Category(StrEnum):
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"
    MARKETING = "MARKETING"


class Priority(StrEnum):
    URGENT = "URGENT"
    NORMAL = "NORMAL"
    LOW = "LOW"


class AccountStatus(StrEnum):
    ACTIVE = "ACTIVE"
    DELETED = "DELETED"


class SignalKind(StrEnum):
    OPT_IN = "OPT_IN"
    OPT_OUT = "OPT_OUT"
    BLOCK = "BLOCK"
    UNBLOCK = "UNBLOCK"
    REPORT = "REPORT"
    INBOUND_MESSAGE = "INBOUND_MESSAGE"
    READ = "READ"
    NOT_INTERESTED = "NOT_INTERESTED"


class Scope(StrEnum):
    ALL = "ALL"
    MARKETING = "MARKETING"
    UTILITY = "UTILITY"


class Reason(StrEnum):
    """Why a recipient was not messaged (the `Suppression.reason` enum)."""

    NO_ACCOUNT = "NO_ACCOUNT"
    NO_CONSENT = "NO_CONSENT"
    OPTED_OUT = "OPTED_OUT"
    BLOCKED = "BLOCKED"
    EXPIRED = "EXPIRED"
    DUPLICATE = "DUPLICATE"
    INVALID_RECIPIENT = "INVALID_RECIPIENT"


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    language: str
    params: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Offer:
    """Promotional content; its presence makes any event MARKETING."""

    description: str
    code: str | None = None
    discount_percent: int | None = None
    valid_until: int | None = None


@dataclass(frozen=True, slots=True)
class BusinessEvent:
    event_id: str
    business_id: str
    kind: EventKind
    occurred_at: int
    recipients: tuple[str, ...]
    template: Template
    expires_at: int | None = None
    entity_id: str | None = None
    entity_version: int | None = None
    tags: tuple[str, ...] = ()
    offer: Offer | None = None
    # The kind-specific payload as decoded from the wire (FlightDelay, GateChange...),
    # kept as a read-only mapping: the core reads a few fields, the shell passes it on.
    payload: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Recipient:
    """A recipient number after normalisation: never leaves the ingest stage raw."""

    index: int  # position in BusinessEvent.recipients, so the business can correlate
    subscriber: str  # HMAC-SHA256 subscriber key (hex)
    region: str  # ISO 3166-1 alpha-2 of the number, for quiet hours and country rules


@dataclass(frozen=True, slots=True)
class InvalidRecipient:
    index: int
    subscriber: str  # keyed hash of the raw text: correlatable, never reversible
    detail: str  # why it did not parse, with no digits of the number


@dataclass(frozen=True, slots=True)
class Candidate:
    """One (event, recipient) pair waiting for a decision on the subscriber's partition."""

    event: BusinessEvent  # recipients emptied: raw numbers stay in business-events
    category: Category
    recipient: Recipient


@dataclass(frozen=True, slots=True)
class AccountLink:
    subscriber: str
    wa_id: str
    status: AccountStatus
    locale: str
    country: str
    updated_at: int
    timezone: str | None = None
    interests: tuple[str, ...] = ()
    linked_accounts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class UserSignal:
    subscriber: str
    kind: SignalKind
    occurred_at: int
    business_id: str | None = None  # None: every business
    scope: Scope = Scope.ALL
    text: str | None = None
    source: str = "unknown"
    consent_version: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """What the subscriber state keeps of an AccountLink (linked account ids are not kept)."""

    wa_id: str
    status: AccountStatus
    locale: str
    country: str
    updated_at: int
    timezone: str | None = None
    interests: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Consent:
    """A user's standing with one business (or with every business, under key ALL_BUSINESSES).

    `utility` and `marketing` are True (opted in), False (opted out) or None (never said).
    """

    utility: bool | None = None
    marketing: bool | None = None
    blocked: bool = False
    updated_at: int = 0


ALL_BUSINESSES = "*"


@dataclass(frozen=True, slots=True)
class PastOutcome:
    """What was decided for one event, remembered so a replay yields the same outcome."""

    delivered: bool
    rule: str
    detail: str
    decided_at: int
    policy_version: str
    reason: Reason | None = None
    deliver_after: int | None = None
    # Priority can depend on the decision time (departure within 12 h), so a replay
    # must reuse the remembered one rather than recompute it. None: remembered before
    # this field existed; the replay recomputes it.
    priority: Priority | None = None


@dataclass(frozen=True, slots=True)
class SubscriberState:
    account: Account | None = None
    consents: Mapping[str, Consent] = field(default_factory=lambda: MappingProxyType({}))
    outcomes: Mapping[str, PastOutcome] = field(default_factory=lambda: MappingProxyType({}))
    # content fingerprint -> (event_id, decided_at) of messages delivered to this user
    sent: Mapping[str, tuple[str, int]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    duplicate_window_ms: int = 7 * DAY_MS
    outcome_memory_ms: int = 8 * DAY_MS  # longer than any replay we expect
    max_recipients_per_event: int = 10_000
    max_param_length: int = 1_024
    max_clock_skew_ms: int = 5 * 60_000
    stop_keywords: tuple[str, ...] = ("STOP", "BERHENTI", "BAJA", "PARAR")
    # A stop keyword followed by one of these words ("STOP ALL", "BERHENTI SEMUA",
    # "BAJA TODO", "PARAR TUDO") also ends marketing from every business.
    stop_all_words: tuple[str, ...] = ("ALL", "SEMUA", "TODO", "TODOS", "TUDO", "TODAS")


@dataclass(frozen=True, slots=True)
class Deliver:
    message_id: str
    rule: str
    detail: str
    priority: Priority
    deliver_after: int | None = None
    # When and under which policy this was decided. `decide` always fills both (on a
    # replay, from the remembered outcome, so the replay is identical to the original);
    # None means "now, under the current policy" for a Deliver built elsewhere.
    decided_at: int | None = None
    policy_version: str | None = None


@dataclass(frozen=True, slots=True)
class Suppress:
    message_id: str
    reason: Reason
    rule: str
    detail: str
    decided_at: int | None = None  # as in Deliver
    policy_version: str | None = None  # as in Deliver


Decision = Deliver | Suppress
