"""The decision rules, what the state remembers, and batch decisions.

Each policy rule has its own test module (test_caps, test_quiet_hours, ...); this one
covers decide's order of rules, replays, duplicates and remember.
"""

from __future__ import annotations

import dataclasses
import itertools
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.consent import apply_signal
from pipeline.domain.decide import (
    decide,
    decide_batch,
    fingerprint,
    remember,
    span,
    suppress_invalid,
)
from pipeline.domain.keys import message_id
from pipeline.domain.models import (
    ALL_BUSINESSES,
    DAY_MS,
    HOUR_MS,
    Account,
    AccountStatus,
    BusinessEvent,
    BusinessProfile,
    BusinessStatus,
    Candidate,
    Category,
    Consent,
    Decision,
    Deliver,
    EntityMemory,
    EventKind,
    InvalidRecipient,
    MarketingSent,
    Offer,
    PastOutcome,
    Policy,
    Priority,
    Reason,
    Recipient,
    Scope,
    SignalKind,
    SubscriberState,
    Suppress,
    Template,
    UserSignal,
)

NOW = 1_700_000_000_000
POLICY = Policy("policy-7")
ACCOUNT = Account(
    "34612345678", AccountStatus.ACTIVE, "es_ES", "ES", NOW - DAY_MS, "UTC", ("sale",)
)


def _event(
    event_id: str = "e1",
    *,
    business: str = "b1",
    kind: EventKind = EventKind.SHIPMENT_UPDATE,
    params: tuple[str, ...] = ("parcel 1", "out for delivery"),
    expires_at: int | None = None,
    entity: tuple[str, int] | None = None,
    tags: tuple[str, ...] = ("sale",),
) -> BusinessEvent:
    return BusinessEvent(
        event_id=event_id,
        business_id=business,
        kind=kind,
        occurred_at=NOW - 1000,
        recipients=(),
        template=Template("update", "en", params),
        expires_at=expires_at,
        entity_id=entity[0] if entity else None,
        entity_version=entity[1] if entity else None,
        tags=tags,
    )


def _candidate(event: BusinessEvent, subscriber: str = "s1") -> Candidate:
    category = (
        Category.MARKETING
        if event.kind == EventKind.PROMOTION
        else Category.AUTHENTICATION
        if event.kind == EventKind.ONE_TIME_PASSCODE
        else Category.UTILITY
    )
    return Candidate(event, category, Recipient(0, subscriber, "ES"))


def _state(
    account: Account | None = ACCOUNT, consents: dict[str, Consent] | None = None
) -> SubscriberState:
    consents = {"b1": Consent(True, True)} if consents is None else consents
    return SubscriberState(account=account, consents=MappingProxyType(consents))


OPTED_IN = _state()


def _decided(candidate: Candidate, state: SubscriberState = OPTED_IN, now: int = NOW) -> Decision:
    return decide(candidate, state, POLICY, now)


def test_an_opted_in_user_gets_the_message() -> None:
    """With an account and consent, the candidate is delivered under rule allowed."""
    candidate = _candidate(_event())
    assert _decided(candidate) == Deliver(
        message_id=message_id("e1", "s1"),
        rule="allowed",
        detail="user opted in to messages from this business",
        priority=Priority.NORMAL,
        decided_at=NOW,
        policy_version="policy-7",
    )


def test_delivery_priority_comes_from_the_event() -> None:
    """A passcode is delivered urgent, marketing low."""
    otp = _decided(_candidate(_event(kind=EventKind.ONE_TIME_PASSCODE)))
    # NOW is 22:13 UTC, so the promotion is held for quiet hours, but delivered.
    promo = _decided(_candidate(_event(kind=EventKind.PROMOTION)))
    assert isinstance(otp, Deliver) and otp.priority == Priority.URGENT
    assert isinstance(promo, Deliver) and promo.priority == Priority.LOW


@pytest.mark.parametrize(
    ("state", "detail"),
    [
        (_state(account=None), "no account is linked to this number"),
        (
            _state(dataclasses.replace(ACCOUNT, status=AccountStatus.DELETED)),
            "the account was deleted",
        ),
    ],
)
def test_no_account_is_suppressed(state: SubscriberState, detail: str) -> None:
    """A subscriber without a live account is suppressed NO_ACCOUNT."""
    decision = _decided(_candidate(_event()), state)
    assert decision == Suppress(
        message_id("e1", "s1"), Reason.NO_ACCOUNT, "account", detail, NOW, "policy-7"
    )


def test_an_expired_event_is_suppressed() -> None:
    """An event whose expiry has passed (or is now) is suppressed EXPIRED."""
    at_now = _decided(_candidate(_event(expires_at=NOW)))
    earlier = _decided(_candidate(_event(expires_at=NOW - 2 * HOUR_MS)))
    assert isinstance(at_now, Suppress) and at_now.reason == Reason.EXPIRED
    assert at_now.rule == "expiry"
    assert isinstance(earlier, Suppress) and earlier.detail == "event expired 2 h ago"


def test_an_event_not_yet_expired_is_delivered() -> None:
    """An expiry still in the future does not suppress."""
    assert isinstance(_decided(_candidate(_event(expires_at=NOW + 1))), Deliver)


@pytest.mark.parametrize(
    ("consents", "reason"),
    [
        ({}, Reason.NO_CONSENT),
        ({"b1": Consent(False, False)}, Reason.OPTED_OUT),
        ({"b1": Consent(True, True, blocked=True)}, Reason.BLOCKED),
        ({ALL_BUSINESSES: Consent(blocked=True), "b1": Consent(True, True)}, Reason.BLOCKED),
    ],
)
def test_consent_suppresses(consents: dict[str, Consent], reason: Reason) -> None:
    """Missing consent, an opt-out or a block suppress under rule consent."""
    decision = _decided(_candidate(_event()), _state(consents=consents))
    assert isinstance(decision, Suppress)
    assert (decision.reason, decision.rule) == (reason, "consent")


def test_marketing_needs_a_marketing_opt_in() -> None:
    """A utility-only opt-in does not allow marketing."""
    state = _state(consents={"b1": Consent(utility=True)})
    assert isinstance(_decided(_candidate(_event()), state), Deliver)
    promo = _decided(_candidate(_event(kind=EventKind.PROMOTION)), state)
    assert isinstance(promo, Suppress) and promo.reason == Reason.NO_CONSENT


def test_rules_apply_in_order() -> None:
    """Account before expiry before consent before duplicate."""
    expired = _event(expires_at=NOW - 1)
    deleted = _state(dataclasses.replace(ACCOUNT, status=AccountStatus.DELETED), {})
    assert _decided(_candidate(expired), deleted).rule == "account"
    assert _decided(_candidate(expired), _state(consents={})).rule == "expiry"
    sent_before = _remembered(_candidate(_event("e0")), OPTED_IN, NOW - HOUR_MS)
    opted_out = dataclasses.replace(
        sent_before, consents=MappingProxyType({"b1": Consent(False, False)})
    )
    assert _decided(_candidate(_event("e1")), opted_out).rule == "consent"


def _remembered(candidate: Candidate, state: SubscriberState, now: int) -> SubscriberState:
    return remember(state, candidate, decide(candidate, state, POLICY, now), now, POLICY)


def test_same_content_under_another_event_is_a_duplicate() -> None:
    """The same template and parameters from the same business within 7 days is suppressed."""
    state = _remembered(_candidate(_event("e0")), OPTED_IN, NOW - 2 * HOUR_MS)
    decision = _decided(_candidate(_event("e1")), state)
    assert isinstance(decision, Suppress)
    assert (decision.reason, decision.rule) == (Reason.DUPLICATE, "duplicate")
    assert decision.detail == "same message delivered 2 h ago under another event"


def test_same_entity_version_under_another_event_is_a_duplicate() -> None:
    """The same entity version is the same message even if the wording changed."""
    state = _remembered(_candidate(_event("e0", entity=("GA1", 3))), OPTED_IN, NOW - HOUR_MS)
    reworded = _event("e1", entity=("GA1", 3), params=("other words",))
    newer = _event("e2", entity=("GA1", 4))
    assert _decided(_candidate(reworded), state).rule == "duplicate"
    assert isinstance(_decided(_candidate(newer), state), Deliver)


@pytest.mark.parametrize(
    "other",
    [
        _event("e1", params=("parcel 2", "out for delivery")),
        _event("e1", business="b2"),
        _event("e1", entity=("GA1", 3)),
    ],
)
def test_different_content_is_not_a_duplicate(other: BusinessEvent) -> None:
    """Other parameters, another business or an entity version are different messages."""
    state = _remembered(
        _candidate(_event("e0")),
        _state(consents={ALL_BUSINESSES: Consent(True, True)}),
        NOW - HOUR_MS,
    )
    assert isinstance(decide(_candidate(other), state, POLICY, NOW), Deliver)


def test_duplicates_are_only_suppressed_within_the_window() -> None:
    """After duplicate_window_ms the same content may be delivered again."""
    first_at = NOW - POLICY.duplicate_window_ms
    state = _remembered(_candidate(_event("e0")), OPTED_IN, first_at)
    assert isinstance(_decided(_candidate(_event("e1")), state), Deliver)
    assert _decided(_candidate(_event("e1")), state, NOW - 1).rule == "duplicate"


def test_a_suppressed_message_does_not_count_as_sent() -> None:
    """Only deliveries feed duplicate detection."""
    state = _remembered(_candidate(_event("e0")), _state(consents={}), NOW - 1)
    assert state.sent == {}
    assert isinstance(
        _decided(_candidate(_event("e1")), dataclasses.replace(state, consents=OPTED_IN.consents)),
        Deliver,
    )


def test_the_same_event_replays_its_outcome() -> None:
    """An event decided before gets the identical decision, whatever changed since."""
    candidate = _candidate(_event(kind=EventKind.FLIGHT_DELAY))
    first = _decided(candidate, OPTED_IN, NOW)
    state = remember(OPTED_IN, candidate, first, NOW, POLICY)
    opted_out = apply_signal(state, UserSignal("s1", SignalKind.OPT_OUT, NOW + 1, "b1"), POLICY)
    later = NOW + DAY_MS
    assert decide(candidate, opted_out, Policy("policy-8"), later) == first


def test_a_suppression_replays_too() -> None:
    """A suppressed event stays suppressed on replay, even after a later opt-in."""
    candidate = _candidate(_event())
    first = _decided(candidate, _state(consents={}))
    state = remember(_state(consents={}), candidate, first, NOW, POLICY)
    opted_in = dataclasses.replace(state, consents=OPTED_IN.consents)
    assert decide(candidate, opted_in, POLICY, NOW + 5) == first


def test_a_replay_recomputes_a_missing_priority() -> None:
    """An outcome remembered without a priority replays with the current one."""
    past = PastOutcome(True, "consent", "ok", NOW - 5, "policy-1")
    state = dataclasses.replace(OPTED_IN, outcomes=MappingProxyType({"e1": past}))
    decision = _decided(_candidate(_event(kind=EventKind.GATE_CHANGE)), state)
    assert decision == Deliver(
        message_id("e1", "s1"), "consent", "ok", Priority.URGENT, None, NOW - 5, "policy-1"
    )


def test_a_remembered_suppression_without_reason_is_decided_afresh() -> None:
    """An unusable memory does not produce a reasonless suppression."""
    past = PastOutcome(False, "consent", "?", NOW - 5, "policy-1")
    state = dataclasses.replace(OPTED_IN, outcomes=MappingProxyType({"e1": past}))
    decision = _decided(_candidate(_event()), state)
    assert isinstance(decision, Deliver) and decision.decided_at == NOW
    remembered = remember(state, _candidate(_event()), decision, NOW, POLICY)
    assert remembered.outcomes["e1"].delivered


def test_remember_records_every_outcome_and_sent_content() -> None:
    """Every decision is remembered by event id; deliveries also by content fingerprint."""
    delivered = _candidate(_event("e1"))
    suppressed = _candidate(_event("e2", expires_at=NOW - 1))
    state = _remembered(delivered, OPTED_IN, NOW)
    state = _remembered(suppressed, state, NOW)
    assert state.outcomes["e1"] == PastOutcome(
        True, "allowed", "user opted in to messages from this business", NOW, "policy-7",
        priority=Priority.NORMAL,
    )  # fmt: skip
    assert state.outcomes["e2"].reason == Reason.EXPIRED
    assert dict(state.sent) == {fingerprint(delivered.event): ("e1", NOW)}


def test_remember_prunes_beyond_the_windows() -> None:
    """Outcomes and sent content older than their windows are dropped."""
    old = NOW - POLICY.outcome_memory_ms
    state = _remembered(_candidate(_event("old")), OPTED_IN, old)
    state = _remembered(
        _candidate(_event("mid", params=("x",))), state, NOW - POLICY.duplicate_window_ms
    )
    assert set(state.outcomes) == {"old", "mid"} and len(state.sent) == 2
    state = _remembered(_candidate(_event("new", params=("y",))), state, NOW)
    assert set(state.outcomes) == {"mid", "new"}
    assert [v[0] for v in state.sent.values()] == ["new"]


def test_remember_of_a_replay_changes_nothing() -> None:
    """Replaying a remembered event leaves the state as it was."""
    candidate = _candidate(_event())
    state = _remembered(candidate, OPTED_IN, NOW)
    assert _remembered(candidate, state, NOW + 1) is state


def test_remember_keeps_every_state_field() -> None:
    """remember builds SubscriberState field by field: a new field must be carried over."""
    assert [f.name for f in dataclasses.fields(SubscriberState)] == [
        "account", "consents", "outcomes", "sent", "marketing", "last_sent", "inbound_at",
        "not_interested_at", "entities",
    ]  # fmt: skip


def test_remember_carries_every_field_through() -> None:
    """A decision leaves every state field it does not own as it was (nothing dropped)."""
    full = SubscriberState(
        account=ACCOUNT,
        consents=MappingProxyType({"b1": Consent(True, True)}),
        marketing=(MarketingSent(NOW - HOUR_MS, "b2", "m0", True, True),),
        last_sent=MappingProxyType({"b2": NOW - HOUR_MS}),
        inbound_at=MappingProxyType({"b3": NOW - HOUR_MS}),
        not_interested_at=NOW - DAY_MS,
        entities=MappingProxyType({"b2/GA1": EntityMemory(1, NOW - HOUR_MS, NOW, 5, "A1", False)}),
    )
    candidate = _candidate(_event("e9", expires_at=NOW - 1))
    after = remember(full, candidate, decide(candidate, full, POLICY, NOW), NOW, POLICY)
    kept = {f.name for f in dataclasses.fields(SubscriberState)} - {"outcomes"}
    for name in kept:
        assert getattr(after, name) == getattr(full, name), name


def test_suppress_invalid_builds_a_recipient_suppression() -> None:
    """An invalid recipient is suppressed INVALID_RECIPIENT with its reason, no number."""
    invalid = InvalidRecipient(3, "hash", "missing country code")
    assert suppress_invalid(_event(), invalid, POLICY, NOW) == Suppress(
        message_id("e1", "hash"),
        Reason.INVALID_RECIPIENT,
        "recipient",
        "recipient is not a valid number: missing country code",
        NOW,
        "policy-7",
    )


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0 s"),
        (59_999, "59 s"),
        (60_000, "1 min"),
        (2 * HOUR_MS + 5, "2 h"),
        (3 * DAY_MS, "3 d"),
        (-5, "0 s"),
    ],
)
def test_span_words(ms: int, text: str) -> None:
    """Durations in details read as a person would say them."""
    assert span(ms) == text


def test_decide_batch_threads_state_through_the_batch() -> None:
    """A later candidate for the same subscriber sees what the earlier one left."""
    states = {"s1": OPTED_IN}
    first, dup, replay = decide_batch(
        [_candidate(_event("e1")), _candidate(_event("e2")), _candidate(_event("e1"))],
        states, POLICY, NOW,
    )  # fmt: skip
    assert isinstance(first, Deliver)
    assert isinstance(dup, Suppress) and dup.reason == Reason.DUPLICATE
    assert replay == first
    assert set(states["s1"].outcomes) == {"e1", "e2"}


def test_decide_batch_starts_unknown_subscribers_empty() -> None:
    """A subscriber absent from the states is decided as one with no account, and stored."""
    states: dict[str, SubscriberState] = {}
    (decision,) = decide_batch([_candidate(_event(), "new")], states, POLICY, NOW)
    assert isinstance(decision, Suppress) and decision.reason == Reason.NO_ACCOUNT
    assert "e1" in states["new"].outcomes


# --- properties -----------------------------------------------------------------------

SUBSCRIBERS = ("s1", "s2", "s3")
EVENTS = {
    e.event_id: e
    for e in (
        _event("u1"),
        _event("u2"),  # same content as u1: a duplicate
        _event("u3", params=("parcel 9", "delivered")),
        _event("f1", kind=EventKind.FLIGHT_DELAY, entity=("GA1", 1)),
        _event("f2", kind=EventKind.FLIGHT_DELAY, entity=("GA1", 1), params=("again",)),
        _event("x1", expires_at=NOW - 1, params=("late",)),
        _event("m1", kind=EventKind.PROMOTION, params=("sale",)),
        _event("m2", kind=EventKind.PROMOTION, business="b2", params=("sale",)),
        _event("o1", kind=EventKind.ONE_TIME_PASSCODE, params=("123456",)),
    )
}

consents_st = st.sampled_from(
    [
        {},
        {"b1": Consent(True, True)},
        {"b1": Consent(True, None)},
        {ALL_BUSINESSES: Consent(True, True)},
        {"b1": Consent(False, False), ALL_BUSINESSES: Consent(True, True)},
        {"b1": Consent(True, True, blocked=True)},
    ]
)
state_st = st.builds(
    lambda account, consents: _state(ACCOUNT if account else None, consents),
    st.booleans(),
    consents_st,
)
states_st = st.fixed_dictionaries({s: state_st for s in SUBSCRIBERS})
candidate_st = st.builds(
    _candidate,
    st.sampled_from(sorted(EVENTS)).map(EVENTS.__getitem__),
    st.sampled_from(SUBSCRIBERS),
)
candidates_st = st.lists(candidate_st, max_size=30)


@given(candidates_st, states_st)
def test_one_decision_per_candidate(
    candidates: list[Candidate], states: dict[str, SubscriberState]
) -> None:
    """decide_batch returns exactly one decision per candidate, with its message id."""
    decisions = decide_batch(candidates, states, POLICY, NOW)
    assert len(decisions) == len(candidates)
    for candidate, decision in zip(candidates, decisions, strict=True):
        assert decision.message_id == message_id(
            candidate.event.event_id, candidate.recipient.subscriber
        )


@given(candidates_st, states_st, st.integers(0, POLICY.outcome_memory_ms - 1))
def test_replay_yields_the_identical_decision(
    candidates: list[Candidate], states: dict[str, SubscriberState], later: int
) -> None:
    """Deciding a candidate again, even later, repeats the first decision for its event."""
    decisions = decide_batch(candidates, states, POLICY, NOW)
    first: dict[tuple[str, str], Decision] = {}
    for candidate, decision in zip(candidates, decisions, strict=True):
        key = (candidate.event.event_id, candidate.recipient.subscriber)
        assert first.setdefault(key, decision) == decision
    for candidate in candidates:
        key = (candidate.event.event_id, candidate.recipient.subscriber)
        again = decide(candidate, states[candidate.recipient.subscriber], POLICY, NOW + later)
        assert again == first[key]


@given(candidates_st, states_st, st.lists(st.integers(0, 30), max_size=5))
def test_batch_boundaries_do_not_change_results(
    candidates: list[Candidate], states: dict[str, SubscriberState], cuts: list[int]
) -> None:
    """Folding decide_batch over any split of the candidates gives the same results."""
    whole_states = dict(states)
    whole = decide_batch(candidates, whole_states, POLICY, NOW)
    split_states = dict(states)
    split: list[Decision] = []
    bounds = [0, *sorted(min(c, len(candidates)) for c in cuts), len(candidates)]
    for start, end in itertools.pairwise(bounds):
        split += decide_batch(candidates[start:end], split_states, POLICY, NOW)
    assert split == whole
    assert split_states == whole_states


OPT_OUTS = [
    UserSignal("s1", SignalKind.OPT_OUT, NOW, "b1", Scope.MARKETING),
    UserSignal("s1", SignalKind.OPT_OUT, NOW, "b1", Scope.ALL),
    UserSignal("s1", SignalKind.OPT_OUT, NOW, None, Scope.MARKETING),
    UserSignal("s1", SignalKind.BLOCK, NOW, "b1"),
    UserSignal("s1", SignalKind.BLOCK, NOW, None),
    UserSignal("s1", SignalKind.INBOUND_MESSAGE, NOW, "b1", text="Berhenti ya"),
    UserSignal("s1", SignalKind.INBOUND_MESSAGE, NOW, "b2", text="STOP ALL"),
]

# Anything but an opt-in to b1 marketing (or to everyone's): those may lawfully undo it.
later_signal_st = (
    st.builds(
        UserSignal,
        subscriber=st.just("s1"),
        kind=st.sampled_from(
            [k for k in SignalKind if k not in (SignalKind.OPT_IN, SignalKind.UNBLOCK)]
        ),
        occurred_at=st.integers(NOW - DAY_MS, NOW + DAY_MS),
        business_id=st.sampled_from(["b1", "b2", None]),
        scope=st.sampled_from(list(Scope)),
        text=st.sampled_from([None, "hello", "stop", "thanks"]),
    )
    | st.builds(
        UserSignal,
        subscriber=st.just("s1"),
        kind=st.just(SignalKind.OPT_IN),
        occurred_at=st.integers(NOW - DAY_MS, NOW + DAY_MS),
        business_id=st.sampled_from(["b2", "b1"]),
        scope=st.just(Scope.UTILITY),
    )
    | st.builds(
        UserSignal,
        subscriber=st.just("s1"),
        kind=st.sampled_from([SignalKind.OPT_IN, SignalKind.UNBLOCK]),
        occurred_at=st.integers(NOW - DAY_MS, NOW + DAY_MS),
        business_id=st.just("b2"),
        scope=st.sampled_from(list(Scope)),
    )
)
marketing_st = st.integers(0, 50).map(
    lambda i: _candidate(_event(f"promo-{i}", kind=EventKind.PROMOTION, params=(str(i),)))
)


@given(
    st.sampled_from(OPT_OUTS),
    st.lists(st.one_of(later_signal_st, marketing_st), max_size=25),
)
def test_an_opted_out_user_never_gets_marketing(
    opt_out: UserSignal, steps: list[UserSignal | Candidate]
) -> None:
    """After an opt-out, STOP or block, no later signal order lets b1 marketing through."""
    state = _state(consents={"b1": Consent(True, True), ALL_BUSINESSES: Consent(True, True)})
    states = {"s1": apply_signal(state, opt_out, POLICY)}
    for step in steps:
        if isinstance(step, UserSignal):
            states["s1"] = apply_signal(states["s1"], step, POLICY)
        else:
            (decision,) = decide_batch([step], states, POLICY, NOW)
            assert not isinstance(decision, Deliver)


# --- the order of every rule ----------------------------------------------------------

NOON = 1_714_564_800_000  # 2024-05-01 12:00 UTC: 21:00 in Tokyo, 13:00 in London


def test_each_rule_objects_in_order() -> None:
    """Removing the cause of each objection in turn reveals the next rule, in decide's order.

    The candidate is a flight-delay notice carrying an offer: MARKETING of kind
    FLIGHT_DELAY, so every rule (coalescing included) applies to it.
    """
    fingerprinted = BusinessEvent(
        "e1", "b1", EventKind.FLIGHT_DELAY, NOON - HOUR_MS, (),
        Template("delay", "en", ("lounge 20% off", "https://evil.example/x")),
        expires_at=NOON - 1, entity_id="GA1", entity_version=3, tags=("travel",),
        offer=Offer("lounge"), payload=MappingProxyType({"delay_minutes": 65, "gate": "A1"}),
    )  # fmt: skip
    event = fingerprinted
    recipient = Recipient(0, "s1", "US")
    suspended = BusinessProfile("b1", status=BusinessStatus.SUSPENDED)
    policy = Policy(
        "order",
        businesses=MappingProxyType({"b1": suspended}),
        blocked_domains=frozenset({"evil.example"}),
    )
    account = Account("x", AccountStatus.ACTIVE, "ja", "JP", 0, "Asia/Tokyo", ())
    state = SubscriberState()
    seen: list[str] = []

    def step(expected: str) -> Decision:
        decision = decide(Candidate(event, Category.MARKETING, recipient), state, policy, NOON)
        seen.append(decision.rule)
        assert decision.rule == expected, (seen, decision)
        return decision

    step("account")
    state = SubscriberState(account=account)
    step("business")
    policy = dataclasses.replace(policy, businesses=MappingProxyType({}))
    step("expiry")
    event = dataclasses.replace(event, expires_at=NOON + 30 * DAY_MS)
    step("consent")
    state = dataclasses.replace(state, consents=MappingProxyType({"b1": Consent(True, True)}))
    step("links")
    event = dataclasses.replace(event, template=Template("delay", "en", ("lounge 20% off",)))
    step("country")
    recipient = Recipient(0, "s1", "JP", ("Asia/Tokyo",))
    state = dataclasses.replace(
        state, sent=MappingProxyType({fingerprint(event): ("e0", NOON - HOUR_MS)})
    )
    step("duplicate")
    memory = EntityMemory(5, NOON - HOUR_MS, NOON - 10 * 60_000, 60, "A1", False)
    state = dataclasses.replace(
        state, sent=MappingProxyType({}), entities=MappingProxyType({"b1/GA1": memory})
    )
    step("superseded")
    memory = dataclasses.replace(memory, version=2)
    state = dataclasses.replace(state, entities=MappingProxyType({"b1/GA1": memory}))
    step("coalescing")
    memory = dataclasses.replace(memory, delivered_at=NOON - HOUR_MS)
    state = dataclasses.replace(state, entities=MappingProxyType({"b1/GA1": memory}))
    step("relevance")
    account = dataclasses.replace(account, interests=("travel",))
    state = dataclasses.replace(
        state,
        account=account,
        marketing=tuple(MarketingSent(NOON - h * HOUR_MS, f"b{h}", f"m{h}", True) for h in (2, 3)),
    )
    step("caps")
    # Inside a customer-service window the caps do not count; the pair rate still guards:
    # an uncounted send held for the same morning, a second before this one.
    state = dataclasses.replace(
        state,
        inbound_at=MappingProxyType({"b1": NOON - HOUR_MS}),
        marketing=(MarketingSent(NOON + 12 * HOUR_MS - 1000, "b1", "m0", False),),
    )
    step("pair_rate")
    state = dataclasses.replace(state, inbound_at=MappingProxyType({}))
    state = dataclasses.replace(state, marketing=())
    event = dataclasses.replace(event, expires_at=NOON + HOUR_MS)
    expired = step("quiet_hours")
    assert isinstance(expired, Suppress) and expired.reason == Reason.QUIET_HOURS_EXPIRED
    event = dataclasses.replace(event, expires_at=NOON + 30 * DAY_MS)
    held = step("quiet_hours")
    assert isinstance(held, Deliver) and held.deliver_after == NOON + 12 * HOUR_MS
    state = dataclasses.replace(state, account=dataclasses.replace(account, timezone="UTC"))
    allowed = step("allowed")
    assert isinstance(allowed, Deliver) and allowed.deliver_after is None
    assert allowed.detail == (
        "user opted in to marketing from this business; tags travel match 1 of 1 interests "
        "(100% >= 20%); marketing 1 of 2 per 24 h, 1 of 6 per 7 d"
    )


def test_a_report_suppresses_marketing_but_not_utility() -> None:
    """After REPORT, that business's marketing is REPORTED; its utility still arrives."""
    state = apply_signal(OPTED_IN, UserSignal("s1", SignalKind.REPORT, NOW, "b1"), POLICY)
    promo = _decided(_candidate(_event("p1", kind=EventKind.PROMOTION)), state)
    assert isinstance(promo, Suppress)
    assert (promo.reason, promo.rule) == (Reason.REPORTED, "consent")
    assert isinstance(_decided(_candidate(_event("u1")), state), Deliver)


def test_details_carry_no_personal_identifiers() -> None:
    """No detail repeats the subscriber key, wa_id, entity id or the account's zone."""
    secret_subscriber = "f" * 64
    account = dataclasses.replace(ACCOUNT, timezone="Asia/Tokyo", wa_id="34699887766")
    state = _state(account, {"b1": Consent(True, True)})
    states = {secret_subscriber: state}
    details = []
    for i, (kind, at) in enumerate(
        [(EventKind.PROMOTION, NOW), (EventKind.PROMOTION, NOW + HOUR_MS),
         (EventKind.FLIGHT_DELAY, NOW), (EventKind.FLIGHT_DELAY, NOW + 60_000)]
    ):  # fmt: skip
        event = _event(f"e{i}", kind=kind, entity=("PARCEL-77", i), params=(str(i),))
        candidate = _candidate(event, secret_subscriber)
        (decision,) = decide_batch([candidate], states, POLICY, at)
        details.append(decision.detail)
    for detail in details:
        assert secret_subscriber not in detail and "34699887766" not in detail
        assert "PARCEL-77" not in detail and "Tokyo" not in detail
