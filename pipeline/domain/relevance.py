"""Marketing relevance: the event's tags against the user's interests (linked-account data).

The score is the share of the event's distinct tags found among the interests, compared
case-insensitively. An event with no tags scores 0: marketing that says nothing about
what it is for cannot be shown relevant to anyone, so under any positive threshold it
is NOT_RELEVANT. The detail names the event's own tags and how many matched, never
which interests the user has.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

from pipeline.domain.models import Account, BusinessEvent, Objection, Policy, Reason

_SHOWN_TAGS = 5  # the detail lists this many tags at most


@lru_cache(maxsize=4096)
def _folded(words: tuple[str, ...]) -> frozenset[str]:
    # Events share their tags tuple across recipients and accounts keep one interests
    # tuple: folding each once saves ~1 µs a word on every marketing decision.
    return frozenset(unicodedata.normalize("NFKC", w).casefold().strip() for w in words) - {""}


def relevance(tags: tuple[str, ...], interests: tuple[str, ...]) -> tuple[int, int]:
    """Return (tags found among the interests, distinct tags), case-insensitively."""
    wanted = _folded(tags)
    return len(wanted & _folded(interests)), len(wanted)


def relevance_detail(event: BusinessEvent, account: Account, policy: Policy) -> str:
    """Return the score in words: the event's tags, how many matched, and the threshold."""
    matched, total = relevance(event.tags, account.interests)
    return _detail(event.tags, matched, total, policy.relevance_threshold)


@lru_cache(maxsize=4096)
def _detail(tags: tuple[str, ...], matched: int, total: int, threshold: float) -> str:
    share = matched / total if total else 0.0
    score = f"({share:.0%} {'<' if share < threshold else '>='} {threshold:.0%})"
    if total == 0:
        return f"no tags to match the user's interests {score}"
    shown = ", ".join(tags[:_SHOWN_TAGS])
    if len(tags) > _SHOWN_TAGS:
        shown += ", ..."
    return f"tags {shown} match {matched} of {total} interests {score}"


def relevance_verdict(event: BusinessEvent, account: Account, policy: Policy) -> Objection | None:
    """Return NOT_RELEVANT if too few of the event's tags are among the user's interests."""
    matched, total = relevance(event.tags, account.interests)
    share = matched / total if total else 0.0
    if share < policy.relevance_threshold:
        return Reason.NOT_RELEVANT, relevance_detail(event, account, policy)
    return None
