"""Malicious links: template parameters naming a blocklisted domain are not delivered.

Every domain-looking run of text in a parameter is checked, not only the host of a
well-formed URL: "evil.example/path" and "Evil.Example" work in a chat client as well
as "https://www.evil.example:443/x", userinfo tricks ("https://bank.example@evil.example")
put the real host after the "@", and redirectors hide the target in the path or query
("good.example/r?u=evil.example"). Checking each run covers all of these; a run that
is no host at all ("v1.2", "file.txt") can only match if someone blocks such a name.

A run matches a blocked domain when it equals it or is a subdomain of it, comparing
whole labels: "notevil.example" is not "evil.example".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from pipeline.domain.models import BusinessEvent, Objection, Policy, Reason

# Labels of letters and digits (any script) joined by hyphens, two or more labels.
# Userinfo, ports, paths and schemes are not part of a run, so they fall away by
# themselves; "_" is no host character, so "a_b.example" reads as "b.example".
_LABEL = r"[^\W_]+(?:-+[^\W_]+)*"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
# Dots that IDNA (and so browsers) read as "." in a host name.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def normalise_domain(domain: str) -> str:
    """Return a domain as the blocklist compares it: folded, without "www." or a final dot."""
    folded = unicodedata.normalize("NFKC", domain).casefold().translate(_DOTS)
    folded = folded.strip().rstrip(".")
    return folded.removeprefix("www.")


def hosts_in(text: str) -> Iterator[str]:
    """Yield each domain-looking run of the text, folded (case, width) and without "www."."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_DOTS)
    for match in _HOST.finditer(folded):
        yield match.group().removeprefix("www.")


def blocked_domain(host: str, blocked: frozenset[str]) -> str | None:
    """Return the blocked domain that `host` equals or is a subdomain of, or None."""
    labels = host.split(".")
    for start in range(len(labels) - 1):
        suffix = ".".join(labels[start:])
        if suffix in blocked:
            return suffix
        # An internationalised host may be listed in its ASCII (punycode) form.
        if not suffix.isascii():
            try:
                ascii_form = suffix.encode("idna").decode()
            except UnicodeError:
                continue
            if ascii_form in blocked:
                return ascii_form
    return None


def link_verdict(event: BusinessEvent, policy: Policy) -> Objection | None:
    """Return LINK_BLOCKED if a template parameter carries a blocklisted domain, else None."""
    listed = policy.blocked_domains
    if not listed:
        return None
    memo = _last
    if memo is not None and memo[0] is event and memo[1] is listed:
        return memo[2]
    verdict = _verdict(event, _normalised(listed))
    _remember(event, listed, verdict)
    return verdict


def _normalised(listed: frozenset[str]) -> frozenset[str]:
    # The list is normalised once per policy (the shell swaps in a new frozenset when
    # the link-reputation topic changes it), not once per message.
    global _last_list
    memo = _last_list
    if memo is not None and memo[0] is listed:
        return memo[1]
    domains = frozenset(d for d in map(normalise_domain, listed) if d)
    _last_list = (listed, domains)
    return domains


_last_list: tuple[frozenset[str], frozenset[str]] | None = None


def _verdict(event: BusinessEvent, blocked: frozenset[str]) -> Objection | None:
    for position, param in enumerate(event.template.params):
        for host in hosts_in(param):
            domain = blocked_domain(host, blocked)
            if domain is not None:
                return (
                    Reason.LINK_BLOCKED,
                    f"template parameter {position} links to blocked domain {domain}",
                )
    return None


# Every candidate of a batch shares one event object: a one-entry memo keyed by identity
# scans its parameters once per batch, not once per recipient (as decide.fingerprint).
_last: tuple[BusinessEvent, frozenset[str], Objection | None] | None = None


def _remember(event: BusinessEvent, blocked: frozenset[str], verdict: Objection | None) -> None:
    global _last
    _last = (event, blocked, verdict)
