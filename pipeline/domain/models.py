"""Herald's domain values: immutable, free of any I/O, shared by every stage.

Times are integer milliseconds since the Unix epoch (UTC), the unit of the Avro
`timestamp-millis` fields on the wire, so no conversion happens on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import phonenumbers

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS


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
    SUPERSEDED = "SUPERSEDED"
    COALESCED = "COALESCED"
    USER_CAP = "USER_CAP"
    BUSINESS_USER_CAP = "BUSINESS_USER_CAP"
    NOT_RELEVANT = "NOT_RELEVANT"
    QUIET_HOURS_EXPIRED = "QUIET_HOURS_EXPIRED"
    PAIR_RATE = "PAIR_RATE"
    BUSINESS_LIMIT = "BUSINESS_LIMIT"
    COUNTRY_RESTRICTED = "COUNTRY_RESTRICTED"
    BUSINESS_SUSPENDED = "BUSINESS_SUSPENDED"
    LINK_BLOCKED = "LINK_BLOCKED"
    REPORTED = "REPORTED"


Objection = tuple[Reason, str]
"""What a rule returns when it stops a message: the reason and a human-readable detail."""


class BusinessStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"


@dataclass(frozen=True, slots=True)
class BusinessProfile:
    """A business's standing on the platform (policy file, then the business-profiles topic)."""

    business_id: str
    tier: str = "TIER_1"
    verified: bool = False
    status: BusinessStatus = BusinessStatus.ACTIVE
    updated_at: int = 0


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
    # IANA time zones of the number (phonenumbers' prefix data), for quiet hours when the
    # account has no time zone; () when unknown.
    zones: tuple[str, ...] = ()


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
    # Over the business's messaging limit at ingest (business_limit.admit): decide
    # suppresses it BUSINESS_LIMIT, unless the event was decided for the user before.
    limited: bool = False


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
    reported: bool = False  # the user reported the business: none of its marketing


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
class MarketingSent:
    """One marketing message delivered to the user, for the caps and engagement."""

    at: int  # send time: deliver_after if held for quiet hours, else the decision time
    business_id: str
    message_id: str
    counted: bool  # False inside a customer-service window the user opened
    read: bool = False


@dataclass(frozen=True, slots=True)
class EntityMemory:
    """What the user was last told about one entity (a flight, a parcel) of one business."""

    version: int  # highest entity_version delivered
    seen_at: int  # decision time of the last delivery about the entity (its TTL clock)
    delivered_at: int | None  # send time of that delivery
    delay_minutes: int | None  # last delivered flight delay
    gate: str | None  # last delivered gate
    cancelled: bool  # a cancellation was delivered


@dataclass(frozen=True, slots=True)
class SubscriberState:
    account: Account | None = None
    consents: Mapping[str, Consent] = field(default_factory=lambda: MappingProxyType({}))
    outcomes: Mapping[str, PastOutcome] = field(default_factory=lambda: MappingProxyType({}))
    # content fingerprint -> (event_id, decided_at) of messages delivered to this user
    sent: Mapping[str, tuple[str, int]] = field(default_factory=lambda: MappingProxyType({}))
    # Marketing delivered, ordered by send time: the last 7 days, and at least the last
    # `unengaged_after` entries whatever their age.
    marketing: tuple[MarketingSent, ...] = ()
    # business_id -> send time of its last delivery sent at once (held marketing is in
    # `marketing`), for the pair rate; kept a day.
    last_sent: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # business_id -> the last time the user wrote to it; kept for the service window.
    inbound_at: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    not_interested_at: int | None = None
    # "business_id/entity_id" -> what was last delivered about it; kept entity_memory_ms.
    entities: Mapping[str, EntityMemory] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class MarketingCaps:
    """Marketing caps per user, in rolling windows (never calendar days)."""

    per_user_24h: int = 2
    per_user_7d: int = 6
    per_business_24h: int = 1
    min_gap_ms: int = 4 * HOUR_MS  # between two counted messages from one business
    service_window_ms: int = DAY_MS  # after the user wrote to a business: not counted
    unengaged_after: int = 5  # read none of the last N marketing messages...
    unengaged_per_7d: int = 1  # ...and the cap drops to this
    not_interested_ms: int = 30 * DAY_MS  # how long NOT_INTERESTED lowers the cap


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours without marketing; start > end wraps midnight, start == end: none."""

    start_minute: int = 20 * 60
    end_minute: int = 9 * 60
    urgent_departure_ms: int = 12 * HOUR_MS  # a delayed departure this close is urgent


@dataclass(frozen=True, slots=True)
class Coalescing:
    flight_delay_interval_ms: int = 30 * MINUTE_MS
    flight_delay_min_change_minutes: int = 30


DEFAULT_TIER_LIMITS: Mapping[str, int | None] = MappingProxyType(
    {"TIER_1": 250, "TIER_2": 2_000, "TIER_3": 10_000, "TIER_4": 100_000, "UNLIMITED": None}
)

# Marketing to North American Numbering Plan numbers (+1) is restricted by default.
RESTRICTED_BY_DEFAULT = frozenset(phonenumbers.region_codes_for_country_code(1))


@dataclass(frozen=True, slots=True)
class Policy:
    version: str
    duplicate_window_ms: int = 7 * DAY_MS
    outcome_memory_ms: int = 8 * DAY_MS  # longer than any replay we expect
    max_recipients_per_event: int = 10_000
    max_param_length: int = 1_024
    max_clock_skew_ms: int = 5 * MINUTE_MS
    stop_keywords: tuple[str, ...] = ("STOP", "BERHENTI", "BAJA", "PARAR")
    # A stop keyword followed by one of these words ("STOP ALL", "BERHENTI SEMUA",
    # "BAJA TODO", "PARAR TUDO") also ends marketing from every business.
    stop_all_words: tuple[str, ...] = ("ALL", "SEMUA", "TODO", "TODOS", "TUDO", "TODAS")
    passcode_max_param_length: int = 15
    marketing: MarketingCaps = MarketingCaps()
    quiet_hours: QuietHours = QuietHours()
    coalescing: Coalescing = Coalescing()
    pair_interval_ms: int = 6_000
    relevance_threshold: float = 0.2
    restricted_marketing_regions: frozenset[str] = RESTRICTED_BY_DEFAULT
    tier_limits: Mapping[str, int | None] = field(default_factory=lambda: DEFAULT_TIER_LIMITS)
    default_tier: str = "TIER_1"
    business_window_ms: int = DAY_MS
    # Profiles from the policy file, overlaid by the shell with the business-profiles topic.
    businesses: Mapping[str, BusinessProfile] = field(default_factory=lambda: MappingProxyType({}))
    # Lower-case domains without "www."; the policy file's, overlaid with link-reputation.
    blocked_domains: frozenset[str] = frozenset()
    entity_memory_ms: int = 7 * DAY_MS


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
