"""Malicious links: a parameter naming a blocklisted domain (or a subdomain) is LINK_BLOCKED."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from pipeline.domain.decide import decide
from pipeline.domain.links import blocked_domain, hosts_in, link_verdict, normalise_domain
from pipeline.domain.models import (
    Account,
    AccountStatus,
    BusinessEvent,
    Candidate,
    Category,
    Consent,
    EventKind,
    Policy,
    Reason,
    Recipient,
    SubscriberState,
    Suppress,
    Template,
)

POLICY = Policy("links", blocked_domains=frozenset({"evil.example", "xn--e1afmkfd.example"}))


def _event(*params: str, kind: EventKind = EventKind.SHIPMENT_UPDATE) -> BusinessEvent:
    return BusinessEvent("e1", "b1", kind, 0, (), Template("t", "en", params))


@pytest.mark.parametrize(
    "param",
    [
        "https://evil.example/login",
        "http://evil.example",
        "see evil.example/path for details",
        "EVIL.EXAMPLE",
        "https://www.evil.example:8443/x?y=1",
        "https://user:secret@evil.example/",
        "https://bank.example@evil.example/",
        "https://login.secure.evil.example/reset",
        "track at good.example/r?u=evil.example",
        "visit evil.example.",
        "\N{FULLWIDTH LATIN SMALL LETTER E}vil.example",
        "evil\u3002example",
        "\u043f\u0440\u0438\u043c\u0435\u0440.example",  # Cyrillic, listed in punycode
    ],
)
def test_a_blocked_domain_or_subdomain_is_found(param: str) -> None:
    """URLs, bare domains, subdomains, userinfo and port tricks all reveal the blocked host."""
    verdict = link_verdict(_event("hello", param), POLICY)
    assert verdict is not None and verdict[0] == Reason.LINK_BLOCKED
    assert verdict[1].startswith("template parameter 1 links to blocked domain ")


@pytest.mark.parametrize(
    "param",
    [
        "https://notevil.example/",
        "evil-example.com",
        "evil.example.attacker.test",
        "evil.examples",
        "evilexample",
        "mail evil at example dot com",
        "v1.2 and file.txt",
        "",
    ],
)
def test_look_alikes_and_plain_text_are_not_blocked(param: str) -> None:
    """Only whole-label matches count: "notevil.example" is not "evil.example"."""
    assert link_verdict(_event(param), POLICY) is None


def test_an_empty_blocklist_blocks_nothing() -> None:
    """Without blocked domains no parameter is even scanned."""
    assert link_verdict(_event("https://evil.example"), Policy("p")) is None


def test_the_blocklist_is_normalised() -> None:
    """Listed domains are compared folded and without "www.", whatever the policy wrote."""
    policy = Policy("p", blocked_domains=frozenset({"WWW.Evil.Example."}))
    assert link_verdict(_event("evil.example/x"), policy) is not None
    assert normalise_domain(" WWW.Evil.Example. ") == "evil.example"


def test_hosts_and_suffixes() -> None:
    """hosts_in finds every domain-looking run; blocked_domain matches whole-label suffixes."""
    assert list(hosts_in("go to https://www.A.Example/x or b.example:80")) == [
        "a.example",
        "b.example",
    ]
    blocked = frozenset({"evil.example"})
    assert blocked_domain("a.b.evil.example", blocked) == "evil.example"
    assert blocked_domain("notevil.example", blocked) is None
    assert blocked_domain("example", blocked) is None


@pytest.mark.parametrize(
    ("kind", "category"),
    [
        (EventKind.PROMOTION, Category.MARKETING),
        (EventKind.SHIPMENT_UPDATE, Category.UTILITY),
        (EventKind.ONE_TIME_PASSCODE, Category.AUTHENTICATION),
    ],
)
def test_decide_blocks_links_in_every_category(kind: EventKind, category: Category) -> None:
    """LINK_BLOCKED applies to marketing, utility and passcodes alike, under rule links."""
    state = SubscriberState(
        account=Account("x", AccountStatus.ACTIVE, "en", "ID", 0, "UTC", ("sale",)),
        consents=MappingProxyType({"b1": Consent(True, True)}),
    )
    event = _event("https://evil.example/win", kind=kind)
    decision = decide(Candidate(event, category, Recipient(0, "s1", "ID")), state, POLICY, 0)
    assert isinstance(decision, Suppress)
    assert (decision.reason, decision.rule) == (Reason.LINK_BLOCKED, "links")
    assert decision.detail == "template parameter 0 links to blocked domain evil.example"
