"""Marketing relevance: the event's tags against the user's interests."""

from __future__ import annotations

import pytest

from pipeline.domain.models import (
    Account,
    AccountStatus,
    BusinessEvent,
    EventKind,
    Policy,
    Reason,
    Template,
)
from pipeline.domain.relevance import relevance, relevance_detail, relevance_verdict

POLICY = Policy("relevance")  # threshold 0.2


def _event(*tags: str) -> BusinessEvent:
    return BusinessEvent("e1", "b1", EventKind.PROMOTION, 0, (), Template("t", "en"), tags=tags)


def _account(*interests: str) -> Account:
    return Account("x", AccountStatus.ACTIVE, "en", "ID", 0, None, interests)


def test_matching_is_case_insensitive_over_distinct_tags() -> None:
    """Tags and interests match whatever their case; repeated tags count once."""
    assert relevance(("Travel", "travel", "FOOD"), ("food", "TRAVEL")) == (2, 2)
    assert relevance(("électronique",), ("ÉLECTRONIQUE",)) == (1, 1)


@pytest.mark.parametrize(
    ("tags", "interests", "relevant"),
    [
        (("electronics", "home"), ("electronics",), True),  # 50%
        (("a", "b", "c", "d", "e"), ("a",), True),  # exactly 20%
        (("a", "b", "c", "d", "e", "f"), ("a",), False),  # 16.7%
        (("sale",), ("travel",), False),
        ((), ("travel",), False),  # untargeted marketing is not relevant
        (("sale",), (), False),
    ],
)
def test_relevance_threshold(
    tags: tuple[str, ...], interests: tuple[str, ...], relevant: bool
) -> None:
    """A share of tags among the interests below the threshold is NOT_RELEVANT."""
    verdict = relevance_verdict(_event(*tags), _account(*interests), POLICY)
    assert (verdict is None) == relevant
    if verdict is not None:
        assert verdict[0] == Reason.NOT_RELEVANT


def test_a_zero_threshold_lets_untagged_marketing_through() -> None:
    """The threshold is the policy's: at 0, even an event without tags passes."""
    assert relevance_verdict(_event(), _account("x"), Policy("p", relevance_threshold=0.0)) is None


def test_details_name_the_tags_and_the_score_never_the_interests() -> None:
    """The detail says which tags and how many matched, not what the user is interested in."""
    account = _account("electronics", "secret-hobby")
    assert relevance_detail(_event("electronics", "home"), account, POLICY) == (
        "tags electronics, home match 1 of 2 interests (50% >= 20%)"
    )
    verdict = relevance_verdict(_event("garden"), account, POLICY)
    assert verdict == (Reason.NOT_RELEVANT, "tags garden match 0 of 1 interests (0% < 20%)")
    assert relevance_detail(_event(), account, POLICY) == (
        "no tags to match the user's interests (0% < 20%)"
    )
    assert "secret-hobby" not in relevance_detail(_event("a", "b"), account, POLICY)
