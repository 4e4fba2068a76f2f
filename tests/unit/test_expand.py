"""Expansion of an event into one candidate per distinct recipient."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.expand import candidates, expand
from pipeline.domain.keys import KeyMaker, subscriber_key
from pipeline.domain.models import (
    BusinessEvent,
    Category,
    EventKind,
    Offer,
    Policy,
    Recipient,
    Template,
)

NOW = 1_700_000_000_000
SECRET = b"test-secret"
KEYS = KeyMaker(SECRET)
POLICY = Policy("test")

# Several spellings of the same two people, and texts that are no number at all.
ANA = ["+34 612 345 678", "+34612345678", "0034 612 345 678", " +34 612-345-678 "]
BUDI = ["+62 812-3456-7890", "+6281234567890"]
OTHERS = ["+1 201-555-0123", "+91 98765 43210", "+55 11 91234-5678"]
BAD = ["", "abc", "12345", "+999 123", " 12345 "]


def _event(
    recipients: tuple[str, ...], kind: EventKind = EventKind.SHIPMENT_UPDATE
) -> BusinessEvent:
    return BusinessEvent(
        event_id="e1",
        business_id="b1",
        kind=kind,
        occurred_at=NOW,
        recipients=recipients,
        template=Template("t", "en", ("p",)),
    )


def test_valid_recipients_keep_their_index_and_region() -> None:
    """Each valid number becomes a Recipient at its index, keyed, with region and zones."""
    expansion = expand(_event(("+34 612 345 678", "+62 812-3456-7890")), KEYS, POLICY, NOW)
    assert expansion.recipients == (
        Recipient(
            0, subscriber_key("+34612345678", SECRET), "ES", ("Atlantic/Canary", "Europe/Madrid")
        ),
        Recipient(1, subscriber_key("+6281234567890", SECRET), "ID", ("Asia/Jakarta",)),
    )
    assert expansion.invalid == () and expansion.duplicates == ()
    assert expansion.category == Category.UTILITY


def test_the_same_person_twice_is_one_recipient_first_index_wins() -> None:
    """Two spellings of one number give one recipient, at the first index."""
    expansion = expand(_event((BUDI[0], ANA[0], ANA[1], BUDI[1])), KEYS, POLICY, NOW)
    assert [r.index for r in expansion.recipients] == [0, 1]
    assert expansion.duplicates == ((2, 1), (3, 0))


def test_invalid_numbers_are_keyed_by_their_text_never_kept() -> None:
    """An invalid text becomes an InvalidRecipient with a keyed hash and a reason."""
    expansion = expand(_event(("+34612345678", " 12345 ")), KEYS, POLICY, NOW)
    (bad,) = expansion.invalid
    assert bad.index == 1
    assert bad.subscriber == subscriber_key("12345", SECRET)
    assert bad.detail == "missing country code"
    assert "12345" not in repr(expansion)


def test_the_same_invalid_text_twice_is_one_invalid_recipient() -> None:
    """A repeated invalid text gets one outcome, so no two suppressions share an id."""
    expansion = expand(_event(("abc", "abc")), KEYS, POLICY, NOW)
    assert [i.index for i in expansion.invalid] == [0]
    assert expansion.duplicates == ((1, 0),)


def test_category_is_derived_from_the_event() -> None:
    """The expansion carries the event's derived category."""
    promo = expand(_event(("+34612345678",), EventKind.PROMOTION), KEYS, POLICY, NOW)
    assert promo.category == Category.MARKETING


def test_candidates_do_not_carry_raw_numbers() -> None:
    """Candidates hold the event without its recipients, one per recipient."""
    event = _event(("+34612345678", "+6281234567890", "abc"))
    expansion = expand(event, KEYS, POLICY, NOW)
    built = candidates(event, expansion)
    assert [c.recipient for c in built] == list(expansion.recipients)
    assert all(c.event.recipients == () for c in built)
    assert all(c.category == Category.UTILITY for c in built)


def test_candidates_keep_the_marketing_category_of_an_offer() -> None:
    """A utility event carrying an offer expands to marketing candidates."""
    event = BusinessEvent(
        event_id="e1",
        business_id="b1",
        kind=EventKind.SHIPMENT_UPDATE,
        occurred_at=NOW,
        recipients=("+34612345678",),
        template=Template("t", "en"),
        offer=Offer("free shipping"),
    )
    (candidate,) = candidates(event, expand(event, KEYS, POLICY, NOW))
    assert candidate.category == Category.MARKETING


@given(st.lists(st.sampled_from(ANA + BUDI + OTHERS + BAD), max_size=25))
def test_every_index_has_exactly_one_fate(raws: list[str]) -> None:
    """Each index is a recipient, invalid, or a duplicate of an earlier index; none repeat."""
    expansion = expand(_event(tuple(raws)), KEYS, POLICY, NOW)
    kept = [r.index for r in expansion.recipients]
    bad = [i.index for i in expansion.invalid]
    dup = [index for index, _ in expansion.duplicates]
    assert sorted(kept + bad + dup) == list(range(len(raws)))
    subscribers = [r.subscriber for r in expansion.recipients]
    assert len(subscribers) == len(set(subscribers))
    assert len({i.subscriber for i in expansion.invalid}) == len(expansion.invalid)
    first = {r.index: r.subscriber for r in expansion.recipients}
    first.update({i.index: i.subscriber for i in expansion.invalid})
    for index, earlier in expansion.duplicates:
        assert earlier < index
        assert KEYS.key(raws[index]).subscriber == first[earlier]
