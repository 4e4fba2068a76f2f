"""Consent: folding user signals and account links into subscriber state, and judging it."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache
from types import MappingProxyType

from pipeline.domain.engagement import mark_read, record_inbound, record_not_interested
from pipeline.domain.models import (
    ALL_BUSINESSES,
    Account,
    AccountLink,
    Category,
    Consent,
    Policy,
    Reason,
    Scope,
    SignalKind,
    SubscriberState,
    UserSignal,
)

# Letters and digits in any script; '_' and punctuation split words, so "STOP_ALL" and
# "Parar." both yield their words.
_WORD = re.compile(r"[^\W_]+")

_NO_CONSENT = Consent()


def _words(text: str) -> tuple[str, ...]:
    # NFKC folds look-alikes (full-width letters) before casefold handles case ("ß").
    return tuple(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


@lru_cache(maxsize=32)
def _phrases(keywords: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    # Policies are few and immutable: fold each keyword list once, not per message.
    return tuple(words for words in map(_words, keywords) if words)


def _ends(words: tuple[str, ...], phrase: tuple[str, ...]) -> Iterator[int]:
    """Yield the index just after each whole-word occurrence of phrase in words."""
    size = len(phrase)
    for start in range(len(words) - size + 1):
        if words[start : start + size] == phrase:
            yield start + size


def stop_request(text: str, policy: Policy) -> tuple[bool, bool]:
    """Return (asks to stop, asks to stop every business) for an inbound message text."""
    words = _words(text)
    everyone = _phrases(policy.stop_all_words)
    stop = False
    for phrase in _phrases(policy.stop_keywords):
        for end in _ends(words, phrase):
            stop = True
            if any(words[end : end + len(all_)] == all_ for all_ in everyone):
                return True, True
    return stop, False


def _with_consent(state: SubscriberState, key: str, consent: Consent) -> SubscriberState:
    consents = dict(state.consents)
    consents[key] = consent
    return replace(state, consents=MappingProxyType(consents))


def _opt(consent: Consent, scope: Scope, value: bool, at: int) -> Consent:
    utility = value if scope in (Scope.ALL, Scope.UTILITY) else consent.utility
    marketing = value if scope in (Scope.ALL, Scope.MARKETING) else consent.marketing
    return replace(consent, utility=utility, marketing=marketing, updated_at=at)


def apply_signal(state: SubscriberState, signal: UserSignal, policy: Policy) -> SubscriberState:
    """Return the state after one user signal: consent, engagement and service windows.

    Restrictive signals (opt-out, block, STOP, report) always apply. Permissive ones
    (opt-in, unblock) older than the consent they would change are ignored: a stale opt-in
    arriving late must not undo a newer opt-out, and erring this way only withholds.
    A REPORT or a READ without a business applies to every business.
    """
    kind = signal.kind
    if kind == SignalKind.READ:
        return mark_read(state, signal.business_id, signal.occurred_at)
    if kind == SignalKind.NOT_INTERESTED:
        return record_not_interested(state, signal.occurred_at)
    key = signal.business_id if signal.business_id is not None else ALL_BUSINESSES
    current = state.consents.get(key, _NO_CONSENT)
    at = max(current.updated_at, signal.occurred_at)
    if kind == SignalKind.OPT_OUT:
        return _with_consent(state, key, _opt(current, signal.scope, False, at))
    if kind == SignalKind.BLOCK:
        return _with_consent(state, key, replace(current, blocked=True, updated_at=at))
    if kind == SignalKind.REPORT:
        return _with_consent(state, key, replace(current, reported=True, updated_at=at))
    if kind == SignalKind.INBOUND_MESSAGE:
        if signal.business_id is not None:
            # Writing to a business opens its customer-service window.
            state = record_inbound(state, signal.business_id, signal.occurred_at, policy)
        if not signal.text:
            return state
        stop, stop_all = stop_request(signal.text, policy)
        if not stop:
            return state
        # STOP opts the user out of everything from that business until a new OPT_IN.
        state = _with_consent(state, key, _opt(current, Scope.ALL, False, at))
        if stop_all:
            everyone = state.consents.get(ALL_BUSINESSES, _NO_CONSENT)
            everyone_at = max(everyone.updated_at, signal.occurred_at)
            state = _with_consent(
                state, ALL_BUSINESSES, _opt(everyone, Scope.MARKETING, False, everyone_at)
            )
        return state
    if signal.occurred_at < current.updated_at:
        return state
    if kind == SignalKind.OPT_IN:
        restored = _opt(current, signal.scope, True, at)
        if signal.scope in (Scope.ALL, Scope.MARKETING):
            # A new marketing opt-in is the user taking the business back after a report.
            restored = replace(restored, reported=False)
        return _with_consent(state, key, restored)
    if kind == SignalKind.UNBLOCK:
        return _with_consent(state, key, replace(current, blocked=False, updated_at=at))
    return state


def apply_account(state: SubscriberState, link: AccountLink) -> SubscriberState:
    """Return the state holding the link's account, unless the stored one is newer.

    The linked account ids are dropped here: they must never reach a decision or output.
    """
    if state.account is not None and link.updated_at < state.account.updated_at:
        return state
    account = Account(
        wa_id=link.wa_id,
        status=link.status,
        locale=link.locale,
        country=link.country,
        updated_at=link.updated_at,
        timezone=link.timezone,
        interests=link.interests,
    )
    return replace(state, account=account)


def consent_verdict(
    state: SubscriberState, business_id: str, category: Category
) -> tuple[Reason, str] | None:
    """Return why the user may not get this category from this business, or None if allowed.

    An opt-in to every business (ALL_BUSINESSES) counts as an opt-in to each; an opt-out,
    block or (for marketing) report, at either level, wins over any opt-in.
    """
    reason, detail = judge_consent(state, business_id, category)
    return None if reason is None else (reason, detail)


def judge_consent(
    state: SubscriberState, business_id: str, category: Category
) -> tuple[Reason | None, str]:
    """Return (None, why it is allowed) or (reason, why not): consent_verdict with a basis."""
    own = state.consents.get(business_id, _NO_CONSENT)
    everyone = state.consents.get(ALL_BUSINESSES, _NO_CONSENT)
    if own.blocked:
        return Reason.BLOCKED, "user blocked this business"
    if everyone.blocked:
        return Reason.BLOCKED, "user blocked messages from every business"
    if category == Category.MARKETING:
        if own.reported:
            return Reason.REPORTED, "user reported this business"
        if everyone.reported:
            return Reason.REPORTED, "user reported marketing from every business"
        mine, all_ = own.marketing, everyone.marketing
        what = "marketing"
    else:
        mine, all_ = own.utility, everyone.utility
        what = "messages"
    if mine is False:
        return Reason.OPTED_OUT, f"user opted out of {what} from this business"
    if all_ is False:
        return Reason.OPTED_OUT, f"user opted out of {what} from every business"
    if mine is True:
        return None, f"user opted in to {what} from this business"
    if all_ is True:
        return None, f"user opted in to {what} from every business"
    return Reason.NO_CONSENT, f"user has not opted in to {what} from this business"
