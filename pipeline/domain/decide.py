"""The decision for one (event, recipient) candidate, and what the subscriber state remembers.

Rules, in order (the first that applies decides):
  1. replay      - an event already decided for this subscriber gets the same outcome again;
  2. account     - no linked account, or a deleted one: NO_ACCOUNT;
  3. expiry      - the event expired before the decision: EXPIRED;
  4. consent     - blocked, opted out or never opted in: BLOCKED / OPTED_OUT / NO_CONSENT;
  5. duplicate   - the same content delivered under another event within the window: DUPLICATE;
  6. otherwise deliver, under rule "consent" (the consent is what allows it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, MutableMapping
from types import MappingProxyType
from typing import TypeVar

from pipeline.domain.category import priority
from pipeline.domain.consent import judge_consent
from pipeline.domain.keys import message_id
from pipeline.domain.models import (
    DAY_MS,
    HOUR_MS,
    AccountStatus,
    BusinessEvent,
    Candidate,
    Decision,
    Deliver,
    InvalidRecipient,
    PastOutcome,
    Policy,
    Reason,
    SubscriberState,
    Suppress,
)

RULE_ACCOUNT = "account"
RULE_EXPIRY = "expiry"
RULE_CONSENT = "consent"
RULE_DUPLICATE = "duplicate"
RULE_RECIPIENT = "recipient"

_EMPTY_STATE = SubscriberState()


def fingerprint(event: BusinessEvent) -> str:
    """Return the content fingerprint that tells the same message under another event id."""
    global _last_fingerprint
    last = _last_fingerprint
    # All candidates of a batch usually share one event object, and decide and remember
    # both need its fingerprint: a one-entry memo keyed by identity saves ~2 µs a call.
    # (The tuple is swapped in one assignment, so concurrent callers stay correct.)
    if last is not None and last[0] is event:
        return last[1]
    if event.entity_id is not None and event.entity_version is not None:
        # A versioned entity (a flight, a parcel) is the message, whatever the wording.
        content: tuple[object, ...] = (
            "entity",
            event.business_id,
            event.entity_id,
            event.entity_version,
        )
    else:
        template = event.template
        content = ("template", event.business_id, template.name, template.language, template.params)
    # repr of a tuple of str/int is unambiguous (quoted, escaped), unlike a joined string.
    print_ = hashlib.blake2b(repr(content).encode(), digest_size=16).hexdigest()
    _last_fingerprint = (event, print_)
    return print_


_last_fingerprint: tuple[BusinessEvent, str] | None = None


def span(ms: int) -> str:
    """Return a duration in words for details ("45 s", "12 min", "3 h", "2 d")."""
    if ms >= DAY_MS:
        return f"{ms // DAY_MS} d"
    if ms >= HOUR_MS:
        return f"{ms // HOUR_MS} h"
    if ms >= 60_000:
        return f"{ms // 60_000} min"
    return f"{max(ms, 0) // 1000} s"


def decide(candidate: Candidate, state: SubscriberState, policy: Policy, now: int) -> Decision:
    """Decide whether the candidate's recipient gets the message, and by which rule."""
    event = candidate.event
    mid = message_id(event.event_id, candidate.recipient.subscriber)

    past = state.outcomes.get(event.event_id)
    if past is not None:
        if past.delivered:
            return _replay_delivery(candidate, past, mid, now)
        # A suppression remembered without its reason is unusable; decide afresh instead.
        if past.reason is not None:
            return Suppress(
                mid, past.reason, past.rule, past.detail, past.decided_at, past.policy_version
            )

    def suppress(reason: Reason, rule: str, detail: str) -> Suppress:
        return Suppress(mid, reason, rule, detail, now, policy.version)

    account = state.account
    if account is None:
        return suppress(Reason.NO_ACCOUNT, RULE_ACCOUNT, "no account is linked to this number")
    if account.status == AccountStatus.DELETED:
        return suppress(Reason.NO_ACCOUNT, RULE_ACCOUNT, "the account was deleted")

    if event.expires_at is not None and event.expires_at <= now:
        return suppress(
            Reason.EXPIRED, RULE_EXPIRY, f"event expired {span(now - event.expires_at)} ago"
        )

    category = candidate.category
    reason, basis = judge_consent(state, event.business_id, category)
    if reason is not None:
        return suppress(reason, RULE_CONSENT, basis)

    first = state.sent.get(fingerprint(event))
    if first is not None:
        first_event_id, first_at = first
        if first_event_id != event.event_id and now - first_at < policy.duplicate_window_ms:
            return suppress(
                Reason.DUPLICATE,
                RULE_DUPLICATE,
                f"same message delivered {span(now - first_at)} ago under another event",
            )

    return Deliver(
        message_id=mid,
        rule=RULE_CONSENT,
        detail=basis,
        priority=priority(event, category, now),
        decided_at=now,
        policy_version=policy.version,
    )


def _replay_delivery(candidate: Candidate, past: PastOutcome, mid: str, now: int) -> Deliver:
    # Outcomes remembered before priority was stored get it recomputed.
    prio = past.priority
    if prio is None:
        prio = priority(candidate.event, candidate.category, now)
    return Deliver(
        message_id=mid,
        rule=past.rule,
        detail=past.detail,
        priority=prio,
        deliver_after=past.deliver_after,
        decided_at=past.decided_at,
        policy_version=past.policy_version,
    )


def remember(
    state: SubscriberState, candidate: Candidate, decision: Decision, now: int, policy: Policy
) -> SubscriberState:
    """Return the state after a decision: its outcome, its content if delivered, pruned."""
    event = candidate.event
    event_id = event.event_id
    decided_at = decision.decided_at if decision.decided_at is not None else now
    delivered = isinstance(decision, Deliver)
    # Pruning on every write keeps the state bounded by the windows, not by history.
    outcomes = _unexpired(state.outcomes, now - policy.outcome_memory_ms)
    sent = _unexpired_sent(state.sent, now - policy.duplicate_window_ms)
    kept = outcomes.get(event_id)
    if kept is not None and (kept.delivered or kept.reason is not None):
        # A replay keeps the original outcome (and its fingerprint, if it was delivered).
        if len(outcomes) == len(state.outcomes) and len(sent) == len(state.sent):
            return state
    else:
        version = decision.policy_version if decision.policy_version is not None else policy.version
        if isinstance(decision, Deliver):
            outcomes[event_id] = PastOutcome(
                delivered=True,
                rule=decision.rule,
                detail=decision.detail,
                decided_at=decided_at,
                policy_version=version,
                deliver_after=decision.deliver_after,
                priority=decision.priority,
            )
        else:
            outcomes[event_id] = PastOutcome(
                delivered=False,
                rule=decision.rule,
                detail=decision.detail,
                decided_at=decided_at,
                policy_version=version,
                reason=decision.reason,
            )
    if delivered:
        sent.setdefault(fingerprint(event), (event_id, decided_at))
    # Built field by field rather than with dataclasses.replace, which costs ~2 µs more on
    # this per-recipient path; test_decide guards the field list against silent drops.
    return SubscriberState(
        account=state.account,
        consents=state.consents,
        outcomes=MappingProxyType(outcomes),
        sent=MappingProxyType(sent),
    )


_V = TypeVar("_V")


def _copy(mapping: Mapping[str, _V]) -> dict[str, _V]:
    # dict(mappingproxy) goes key by key (~6 µs for 50 entries); .copy() is one C call.
    if isinstance(mapping, dict | MappingProxyType):
        return mapping.copy()
    return dict(mapping)


def _unexpired(outcomes: Mapping[str, PastOutcome], floor: int) -> dict[str, PastOutcome]:
    # Outcomes are added in time order, so the first is the oldest: while it is recent
    # enough, a copy replaces a filtering pass over every entry. Should a clock step break
    # the order, pruning only waits for the first entry to expire; no rule relies on it.
    for first in outcomes.values():
        if first.decided_at > floor:
            return _copy(outcomes)
        return {k: v for k, v in outcomes.items() if v.decided_at > floor}
    return {}


def _unexpired_sent(sent: Mapping[str, tuple[str, int]], floor: int) -> dict[str, tuple[str, int]]:
    # As _unexpired: the first entry is the oldest.
    for first in sent.values():
        if first[1] > floor:
            return _copy(sent)
        return {k: v for k, v in sent.items() if v[1] > floor}
    return {}


def decide_batch(
    candidates: Iterable[Candidate],
    states: MutableMapping[str, SubscriberState],
    policy: Policy,
    now: int,
) -> list[Decision]:
    """Decide candidates in order, updating `states` in place; one decision per candidate.

    A later candidate for the same subscriber sees what the earlier ones left behind, so
    the result is the same however a stream of candidates is cut into batches.
    """
    decisions: list[Decision] = []
    for candidate in candidates:
        key = candidate.recipient.subscriber
        state = states.get(key, _EMPTY_STATE)
        decision = decide(candidate, state, policy, now)
        states[key] = remember(state, candidate, decision, now, policy)
        decisions.append(decision)
    return decisions


def suppress_invalid(
    event: BusinessEvent, invalid: InvalidRecipient, policy: Policy, now: int
) -> Suppress:
    """Return the suppression for a recipient text that is not a valid number."""
    return Suppress(
        message_id(event.event_id, invalid.subscriber),
        Reason.INVALID_RECIPIENT,
        RULE_RECIPIENT,
        f"recipient is not a valid number: {invalid.detail}",
        now,
        policy.version,
    )
