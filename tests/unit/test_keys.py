"""Phone number normalisation, subscriber keys, message ids and the KeyMaker cache."""

from __future__ import annotations

import hashlib
import hmac

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.keys import (
    DEVELOPMENT_SECRET,
    InvalidNumber,
    KeyedNumber,
    KeyMaker,
    RejectedNumber,
    message_id,
    normalise,
    number_zones,
    subscriber_key,
    wa_id,
)

SECRET = b"test-secret"


def _has_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


@pytest.mark.parametrize(
    ("raw", "e164", "region"),
    [
        ("+62 812-3456-7890", "+6281234567890", "ID"),
        ("+91 98765 43210", "+919876543210", "IN"),
        ("+55 11 91234-5678", "+5511912345678", "BR"),
        ("+34 612 345 678", "+34612345678", "ES"),
        ("+1 201-555-0123", "+12015550123", "US"),
        ("+44 20 7946 0958", "+442079460958", "GB"),
    ],
)
def test_normalise_accepts_realistic_numbers(raw: str, e164: str, region: str) -> None:
    """A valid international number normalises to E.164 and its country."""
    assert normalise(raw) == (e164, region)


@pytest.mark.parametrize(
    "raw",
    [
        "+6281234567890",
        "  +62 812 3456 7890 ",
        "0062 812 3456 7890",
        "+62 (812) 3456.7890",
        "\uff0b\uff16\uff12 812 3456 7890",  # full-width plus and digits
    ],
)
def test_normalise_ignores_formatting_and_accepts_00_prefix(raw: str) -> None:
    """Spacing, punctuation and the 00 international prefix do not change the number."""
    assert normalise(raw) == ("+6281234567890", "ID")


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "contains letters"),
        ("+999 123", "unknown country code"),
        ("12345", "missing country code"),
        ("0812 3456 7890", "missing country code"),
        ("1" * 30, "missing country code"),
        ("+" + "1" * 30, "too long"),
        ("+6" + "2" * 100, "too long"),
        ("+62 812", "too short"),
        ("+62 812 3456 7890 1234", "not a valid number for its country"),
        ("+1 800 FLOWERS", "contains letters"),
        ("tel:+6281234567890", "contains letters"),
        ("+62 812 3456 7890#12", "has an extension"),
        ("+800 1234 5678", "non-geographic number"),
    ],
)
def test_normalise_rejects_with_a_digit_free_reason(raw: str, why: str) -> None:
    """An unusable number raises InvalidNumber whose message names why, without its digits."""
    with pytest.raises(InvalidNumber) as info:
        normalise(raw)
    assert str(info.value) == why
    assert not _has_digit(str(info.value))


@given(st.text(alphabet="+0123456789 -()#.x\u0660\u0661\u0662", max_size=40))
def test_normalise_either_parses_or_raises_invalid_number(raw: str) -> None:
    """Any text yields an E.164 number or an InvalidNumber without digits, nothing else."""
    try:
        e164, region = normalise(raw)
    except InvalidNumber as exc:
        assert not _has_digit(str(exc))
    else:
        assert e164.startswith("+") and e164[1:].isdigit()
        assert len(region) == 2 and region.isalpha()
        assert normalise(e164) == (e164, region)


def test_subscriber_key_is_hmac_sha256_of_e164() -> None:
    """The subscriber key is the hex HMAC-SHA256 of the E.164 text with '+'."""
    expected = hmac.new(SECRET, b"+6281234567890", hashlib.sha256).hexdigest()
    assert subscriber_key("+6281234567890", SECRET) == expected


def test_subscriber_key_depends_on_the_secret() -> None:
    """Another secret gives another key, so keys are useless without the secret."""
    assert subscriber_key("+6281234567890", SECRET) != subscriber_key("+6281234567890", b"x")


def test_wa_id_is_digits_without_plus() -> None:
    """The platform id of a number is its E.164 digits."""
    assert wa_id("+6281234567890") == "6281234567890"


def test_message_id_is_deterministic_and_pair_specific() -> None:
    """The same (event, subscriber) pair always gets one id; any other pair another."""
    assert message_id("e1", "s1") == message_id("e1", "s1")
    assert len(message_id("e1", "s1")) == 32
    ids = {message_id("e1", "s1"), message_id("e2", "s1"), message_id("e1", "s2")}
    assert len(ids) == 3
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert message_id("ab", "c") != message_id("a", "bc")


def test_development_secret_says_it_is_for_development() -> None:
    """The built-in secret announces itself as unfit for production."""
    assert b"development" in DEVELOPMENT_SECRET and b"do-not-use" in DEVELOPMENT_SECRET


def test_keymaker_keys_valid_numbers_with_region() -> None:
    """A valid text keys to the HMAC of its E.164 form, with its region and time zones."""
    keys = KeyMaker(SECRET)
    assert keys.key("+62 812-3456-7890") == KeyedNumber(
        subscriber_key("+6281234567890", SECRET), "ID", ("Asia/Jakarta",)
    )
    assert keys.subscriber("0062 812 3456 7890") == subscriber_key("+6281234567890", SECRET)


@pytest.mark.parametrize(
    ("raw", "zones"),
    [
        ("+1 201-555-0123", ("America/New_York",)),
        ("+1 808-555-0123", ("Pacific/Honolulu",)),
        ("+34 612 345 678", ("Atlantic/Canary", "Europe/Madrid")),
    ],
)
def test_keymaker_gives_the_number_zones(raw: str, zones: tuple[str, ...]) -> None:
    """The zones come from the number's prefix; an unknown zone is no zone."""
    result = KeyMaker(SECRET).key(raw)
    assert isinstance(result, KeyedNumber) and result.zones == zones


def test_number_zones_of_a_multi_zone_mobile_prefix() -> None:
    """A Russian mobile number maps to all the zones its prefix spans."""
    zones = number_zones(phonenumbers.parse("+7 916 123-45-67"))
    assert "Europe/Moscow" in zones and "Asia/Vladivostok" in zones


def test_number_zones_drops_the_unknown_placeholder() -> None:
    """phonenumbers' "Etc/Unknown" (no zone known for the prefix) becomes no zone."""
    number = phonenumbers.parse("+52 1 55 1234 5678")
    assert phonenumbers.timezone.time_zones_for_number(number) == ("Etc/Unknown",)
    assert number_zones(number) == ()


def test_keymaker_keys_invalid_text_by_its_stripped_form() -> None:
    """An invalid text keys to the HMAC of its stripped text and carries why it failed."""
    keys = KeyMaker(SECRET)
    result = keys.key("  12345 ")
    assert result == RejectedNumber(subscriber_key("12345", SECRET), "missing country code")
    with pytest.raises(InvalidNumber, match="missing country code"):
        keys.subscriber("12345")


def test_keymaker_caches_results() -> None:
    """A repeated text is answered from the cache (the same result object)."""
    keys = KeyMaker(SECRET, cache_size=4)
    assert keys.key("+34 612 345 678") is keys.key("+34 612 345 678")
    assert keys.key("abc") is keys.key("abc")


def test_keymaker_cache_is_per_secret() -> None:
    """Two makers with different secrets never share cached keys."""
    a, b = KeyMaker(b"a"), KeyMaker(b"b")
    assert a.subscriber("+34612345678") != b.subscriber("+34612345678")


def test_keymaker_hides_its_secret_and_refuses_an_empty_one() -> None:
    """The secret is not in the repr, and an empty secret is refused."""
    assert "test-secret" not in repr(KeyMaker(SECRET))
    with pytest.raises(ValueError, match="empty"):
        KeyMaker(b"")
