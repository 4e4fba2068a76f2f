"""Expansion of one business event into one candidate per distinct recipient."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.domain.category import derive_category
from pipeline.domain.keys import KeyMaker, RejectedNumber
from pipeline.domain.models import (
    BusinessEvent,
    Candidate,
    Category,
    InvalidRecipient,
    Policy,
    Recipient,
)


@dataclass(frozen=True, slots=True)
class Expansion:
    """Where each index of BusinessEvent.recipients went.

    Every index is in exactly one of `recipients`, `invalid` or `duplicates`.
    """

    category: Category
    recipients: tuple[Recipient, ...]
    invalid: tuple[InvalidRecipient, ...]
    # (index, first index) of texts that keyed to a subscriber already listed: that person
    # gets one outcome, under the first index, and the business can see which it was.
    duplicates: tuple[tuple[int, int], ...] = ()


def expand(event: BusinessEvent, keys: KeyMaker, policy: Policy, now: int) -> Expansion:
    """Key every recipient of a validated event, once per distinct subscriber.

    `policy` and `now` are unused so far; they are part of the signature so country and
    time rules can join here without touching every caller.
    """
    first_index: dict[str, int] = {}
    recipients: list[Recipient] = []
    invalid: list[InvalidRecipient] = []
    duplicates: list[tuple[int, int]] = []
    for index, raw in enumerate(event.recipients):
        result = keys.key(raw)
        # Valid and invalid keys share one namespace: an invalid text cannot hash to a
        # valid subscriber (it would have normalised), and the same bad text twice must
        # not yield two suppressions with one message id.
        earlier = first_index.get(result.subscriber)
        if earlier is not None:
            duplicates.append((index, earlier))
            continue
        first_index[result.subscriber] = index
        if isinstance(result, RejectedNumber):
            invalid.append(InvalidRecipient(index, result.subscriber, result.detail))
        else:
            recipients.append(Recipient(index, result.subscriber, result.region, result.zones))
    return Expansion(derive_category(event), tuple(recipients), tuple(invalid), tuple(duplicates))


def candidates(event: BusinessEvent, expansion: Expansion) -> tuple[Candidate, ...]:
    """Return one candidate per recipient, carrying the event without its raw numbers."""
    bare = replace(event, recipients=())
    return tuple(Candidate(bare, expansion.category, r) for r in expansion.recipients)
