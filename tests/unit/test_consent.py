"""Consent: signals and account links folded into state, and the verdict read from it."""

from __future__ import annotations

from functools import reduce
from types import MappingProxyType

import pytest

from pipeline.domain.consent import (
    apply_account,
    apply_signal,
    consent_verdict,
    stop_request,
)
from pipeline.domain.models import (
    ALL_BUSINESSES,
    Account,
    AccountLink,
    AccountStatus,
    Category,
    Consent,
    Policy,
    Reason,
    Scope,
    SignalKind,
    SubscriberState,
    UserSignal,
)

POLICY = Policy("test")
EMPTY = SubscriberState()
T0 = 1_700_000_000_000


def _signal(
    kind: SignalKind,
    business: str | None = "b1",
    scope: Scope = Scope.ALL,
    text: str | None = None,
    at: int = T0,
) -> UserSignal:
    return UserSignal("sub", kind, at, business, scope, text)


def _apply(*signals: UserSignal, state: SubscriberState = EMPTY) -> SubscriberState:
    return reduce(lambda s, sig: apply_signal(s, sig, POLICY), signals, state)


def _consent(state: SubscriberState, key: str = "b1") -> Consent:
    return state.consents.get(key, Consent())


@pytest.mark.parametrize(
    ("scope", "utility", "marketing"),
    [(Scope.ALL, True, True), (Scope.MARKETING, None, True), (Scope.UTILITY, True, None)],
)
def test_opt_in_sets_its_scope_only(
    scope: Scope, utility: bool | None, marketing: bool | None
) -> None:
    """OPT_IN turns on exactly the categories of its scope."""
    c = _consent(_apply(_signal(SignalKind.OPT_IN, scope=scope)))
    assert (c.utility, c.marketing) == (utility, marketing)


@pytest.mark.parametrize(
    ("scope", "utility", "marketing"),
    [(Scope.ALL, False, False), (Scope.MARKETING, True, False), (Scope.UTILITY, False, True)],
)
def test_opt_out_clears_its_scope_only(scope: Scope, utility: bool, marketing: bool) -> None:
    """OPT_OUT turns off exactly the categories of its scope, keeping the rest."""
    state = _apply(_signal(SignalKind.OPT_IN), _signal(SignalKind.OPT_OUT, scope=scope))
    c = _consent(state)
    assert (c.utility, c.marketing) == (utility, marketing)


def test_a_signal_without_business_applies_to_every_business() -> None:
    """A signal with no business_id is stored under ALL_BUSINESSES."""
    state = _apply(_signal(SignalKind.OPT_IN, business=None))
    assert _consent(state, ALL_BUSINESSES).marketing is True
    assert "b1" not in state.consents


def test_block_and_unblock() -> None:
    """BLOCK sets blocked and UNBLOCK clears it, leaving opt-ins as they were."""
    blocked = _apply(_signal(SignalKind.OPT_IN), _signal(SignalKind.BLOCK))
    assert _consent(blocked).blocked and _consent(blocked).marketing is True
    unblocked = _apply(_signal(SignalKind.UNBLOCK), state=blocked)
    assert not _consent(unblocked).blocked


def test_apply_signal_does_not_mutate_the_given_state() -> None:
    """Folding a signal returns a new state and leaves the old one as it was."""
    before = _apply(_signal(SignalKind.OPT_IN))
    _apply(_signal(SignalKind.OPT_OUT), state=before)
    assert _consent(before).marketing is True


@pytest.mark.parametrize(
    "text",
    [
        "stop",
        "STOP",
        "Stop please",
        "please stop sending these",
        "pls BERHENTI!",
        "berhenti",
        "baja",
        "Dar de BAJA por favor",
        "Parar.",
        "quero parar agora",
        "¡Baja!",
        "stop,thanks",
        "\N{FULLWIDTH LATIN CAPITAL LETTER S}\N{FULLWIDTH LATIN CAPITAL LETTER T}"
        "\N{FULLWIDTH LATIN CAPITAL LETTER O}\N{FULLWIDTH LATIN CAPITAL LETTER P}",
        "\tStOp\n",
    ],
)
def test_stop_keywords_match_as_whole_words_anywhere(text: str) -> None:
    """A stop keyword anywhere in the text, any case, any language of the policy, matches."""
    assert stop_request(text, POLICY) == (True, False)


@pytest.mark.parametrize(
    "text",
    ["stopwatch", "nonstop", "unstoppable", "bajamar", "pararse", "berhentilah", "thanks", ""],
)
def test_stop_keywords_do_not_match_inside_words(text: str) -> None:
    """A keyword inside a longer word is not a stop request."""
    assert stop_request(text, POLICY) == (False, False)


@pytest.mark.parametrize(
    "text",
    [
        "STOP ALL",
        "stop all please",
        "Berhenti semua",
        "baja todo",
        "PARAR TUDO",
        "ok. stop, all!",
        "STOP_ALL",
    ],
)
def test_stop_all_is_recognised(text: str) -> None:
    """A stop keyword followed by an "all" word asks to stop every business."""
    assert stop_request(text, POLICY) == (True, True)


def test_stop_keywords_come_from_the_policy() -> None:
    """A policy can add keywords, including multi-word ones."""
    policy = Policy("test", stop_keywords=("UNSUBSCRIBE", "cancel me"))
    assert stop_request("please Unsubscribe", policy) == (True, False)
    assert stop_request("ok cancel me now", policy) == (True, False)
    assert stop_request("cancel my order", policy) == (False, False)
    assert stop_request("stop", policy) == (False, False)


def test_inbound_stop_opts_out_of_everything_from_that_business() -> None:
    """STOP in an inbound message clears utility and marketing for that business only."""
    state = _apply(
        _signal(SignalKind.OPT_IN),
        _signal(SignalKind.OPT_IN, business="b2"),
        _signal(SignalKind.INBOUND_MESSAGE, text="Stop please"),
    )
    assert (_consent(state).utility, _consent(state).marketing) == (False, False)
    assert _consent(state, "b2").marketing is True
    assert ALL_BUSINESSES not in state.consents


def test_inbound_stop_all_ends_marketing_from_everyone() -> None:
    """STOP ALL also opts out of marketing under ALL_BUSINESSES."""
    state = _apply(
        _signal(SignalKind.OPT_IN, business=None),
        _signal(SignalKind.INBOUND_MESSAGE, text="STOP ALL"),
    )
    everyone = _consent(state, ALL_BUSINESSES)
    assert (everyone.utility, everyone.marketing) == (True, False)
    assert (_consent(state).utility, _consent(state).marketing) == (False, False)


def test_a_new_opt_in_after_stop_restores_consent() -> None:
    """STOP lasts until a new OPT_IN."""
    state = _apply(
        _signal(SignalKind.OPT_IN),
        _signal(SignalKind.INBOUND_MESSAGE, text="baja", at=T0 + 1),
        _signal(SignalKind.OPT_IN, at=T0 + 2),
    )
    assert consent_verdict(state, "b1", Category.MARKETING) is None


@pytest.mark.parametrize(
    "signal",
    [
        _signal(SignalKind.READ),
        _signal(SignalKind.NOT_INTERESTED),
        _signal(SignalKind.INBOUND_MESSAGE, text="thanks, see you"),
        _signal(SignalKind.INBOUND_MESSAGE, text=None),
    ],
)
def test_signals_without_consent_meaning_leave_consent_alone(signal: UserSignal) -> None:
    """Read, not-interested and plain inbound messages change no consent."""
    state = _apply(_signal(SignalKind.OPT_IN))
    assert apply_signal(state, signal, POLICY).consents == state.consents


def test_report_stops_that_business_marketing_only() -> None:
    """REPORT suppresses the business's marketing (REPORTED) but not its utility messages."""
    state = _apply(_signal(SignalKind.OPT_IN), _signal(SignalKind.OPT_IN, business="b2"))
    reported = _apply(_signal(SignalKind.REPORT, at=T0 + 1), state=state)
    assert consent_verdict(reported, "b1", Category.MARKETING) == (
        Reason.REPORTED,
        "user reported this business",
    )
    assert consent_verdict(reported, "b1", Category.UTILITY) is None
    assert consent_verdict(reported, "b2", Category.MARKETING) is None


def test_a_stale_report_still_applies() -> None:
    """A report older than the stored consent is restrictive, so it applies."""
    state = _apply(_signal(SignalKind.OPT_IN, at=T0 + 10), _signal(SignalKind.REPORT, at=T0))
    assert _consent(state).reported and _consent(state).updated_at == T0 + 10


def test_a_report_without_business_covers_every_business() -> None:
    """A report naming no business withholds marketing from all (erring towards silence)."""
    state = _apply(_signal(SignalKind.OPT_IN), _signal(SignalKind.REPORT, business=None))
    verdict = consent_verdict(state, "b1", Category.MARKETING)
    assert verdict is not None and verdict[0] == Reason.REPORTED


@pytest.mark.parametrize(
    ("scope", "cleared"), [(Scope.MARKETING, True), (Scope.ALL, True), (Scope.UTILITY, False)]
)
def test_a_marketing_opt_in_clears_a_report(scope: Scope, cleared: bool) -> None:
    """OPT_IN restores only what it names: MARKETING or ALL clears the report."""
    state = _apply(
        _signal(SignalKind.OPT_IN),
        _signal(SignalKind.REPORT, at=T0 + 1),
        _signal(SignalKind.OPT_IN, scope=scope, at=T0 + 2),
    )
    assert (consent_verdict(state, "b1", Category.MARKETING) is None) == cleared


def test_a_stale_opt_in_does_not_clear_a_report() -> None:
    """An opt-in older than the report is ignored."""
    state = _apply(
        _signal(SignalKind.OPT_IN, at=T0),
        _signal(SignalKind.REPORT, at=T0 + 10),
        _signal(SignalKind.OPT_IN, at=T0 + 5),
    )
    assert _consent(state).reported


def test_unblock_restores_the_block_only() -> None:
    """UNBLOCK after BLOCK and OPT_OUT leaves the opt-out in place."""
    state = _apply(
        _signal(SignalKind.OPT_IN),
        _signal(SignalKind.OPT_OUT, scope=Scope.MARKETING, at=T0 + 1),
        _signal(SignalKind.BLOCK, at=T0 + 2),
        _signal(SignalKind.UNBLOCK, at=T0 + 3),
    )
    assert consent_verdict(state, "b1", Category.UTILITY) is None
    verdict = consent_verdict(state, "b1", Category.MARKETING)
    assert verdict is not None and verdict[0] == Reason.OPTED_OUT


def test_opt_in_does_not_unblock() -> None:
    """OPT_IN after BLOCK leaves the business blocked."""
    state = _apply(_signal(SignalKind.BLOCK), _signal(SignalKind.OPT_IN, at=T0 + 1))
    verdict = consent_verdict(state, "b1", Category.MARKETING)
    assert verdict is not None and verdict[0] == Reason.BLOCKED


def test_a_stale_opt_in_does_not_undo_a_newer_opt_out() -> None:
    """An opt-in older than the stored consent is ignored."""
    state = _apply(
        _signal(SignalKind.OPT_OUT, at=T0 + 10),
        _signal(SignalKind.OPT_IN, at=T0 + 5),
        _signal(SignalKind.UNBLOCK, at=T0 + 5),
    )
    assert _consent(state).marketing is False


def test_a_stale_opt_out_still_applies() -> None:
    """Restrictive signals apply whatever their age: erring this way only withholds."""
    state = _apply(_signal(SignalKind.OPT_IN, at=T0 + 10), _signal(SignalKind.OPT_OUT, at=T0))
    assert _consent(state).marketing is False
    assert _consent(state).updated_at == T0 + 10


def test_signals_with_the_same_time_apply_in_order() -> None:
    """Equal timestamps do not make a later opt-in stale."""
    state = _apply(_signal(SignalKind.OPT_OUT), _signal(SignalKind.OPT_IN))
    assert _consent(state).marketing is True


def _link(updated_at: int, status: AccountStatus = AccountStatus.ACTIVE) -> AccountLink:
    return AccountLink(
        subscriber="sub",
        wa_id="34612345678",
        status=status,
        locale="es_ES",
        country="ES",
        updated_at=updated_at,
        timezone="Europe/Madrid",
        interests=("travel",),
        linked_accounts=MappingProxyType({"social": "acct-123"}),
    )


def test_apply_account_keeps_the_account_without_linked_ids() -> None:
    """The state keeps the account fields but never the linked account ids."""
    state = apply_account(EMPTY, _link(T0))
    assert state.account == Account(
        "34612345678", AccountStatus.ACTIVE, "es_ES", "ES", T0, "Europe/Madrid", ("travel",)
    )
    assert "acct-123" not in repr(state)


def test_apply_account_ignores_an_older_link() -> None:
    """A link older than the stored account does not replace it; a newer one does."""
    state = apply_account(EMPTY, _link(T0))
    assert apply_account(state, _link(T0 - 1, AccountStatus.DELETED)) is state
    newer = apply_account(state, _link(T0 + 1, AccountStatus.DELETED))
    assert newer.account is not None and newer.account.status == AccountStatus.DELETED


def _state(**consents: Consent) -> SubscriberState:
    named = {ALL_BUSINESSES if k == "ALL" else k: v for k, v in consents.items()}
    return SubscriberState(consents=MappingProxyType(named))


YES, NO = Consent(True, True), Consent(False, False)


@pytest.mark.parametrize(
    ("state", "category", "reason"),
    [
        (_state(), Category.MARKETING, Reason.NO_CONSENT),
        (_state(), Category.UTILITY, Reason.NO_CONSENT),
        (_state(), Category.AUTHENTICATION, Reason.NO_CONSENT),
        (_state(b1=YES), Category.MARKETING, None),
        (_state(b1=YES), Category.UTILITY, None),
        (_state(ALL=YES), Category.MARKETING, None),
        (_state(ALL=YES), Category.AUTHENTICATION, None),
        (_state(b2=YES), Category.MARKETING, Reason.NO_CONSENT),
        (_state(b1=Consent(utility=True)), Category.MARKETING, Reason.NO_CONSENT),
        (_state(b1=Consent(utility=True)), Category.UTILITY, None),
        (_state(b1=Consent(marketing=True)), Category.UTILITY, Reason.NO_CONSENT),
        (_state(b1=NO), Category.MARKETING, Reason.OPTED_OUT),
        (_state(b1=NO, ALL=YES), Category.MARKETING, Reason.OPTED_OUT),
        (_state(b1=YES, ALL=NO), Category.MARKETING, Reason.OPTED_OUT),
        (_state(b1=YES, ALL=Consent(True, False)), Category.MARKETING, Reason.OPTED_OUT),
        (_state(b1=YES, ALL=Consent(True, False)), Category.UTILITY, None),
        (_state(b1=Consent(False, True)), Category.UTILITY, Reason.OPTED_OUT),
        (_state(b1=Consent(False, True)), Category.AUTHENTICATION, Reason.OPTED_OUT),
        (_state(b1=Consent(True, True, blocked=True)), Category.UTILITY, Reason.BLOCKED),
        (_state(b1=YES, ALL=Consent(blocked=True)), Category.AUTHENTICATION, Reason.BLOCKED),
    ],
)
def test_consent_verdict(state: SubscriberState, category: Category, reason: Reason | None) -> None:
    """Block beats opt-out beats opt-in; a global opt-in counts for every business."""
    verdict = consent_verdict(state, "b1", category)
    assert (verdict[0] if verdict else None) == reason


def test_verdict_details_are_human_and_free_of_ids() -> None:
    """Details are sentences about the user's choice, naming no business or user."""
    verdict = consent_verdict(_state(b1=NO), "b1", Category.MARKETING)
    assert verdict == (Reason.OPTED_OUT, "user opted out of marketing from this business")
    verdict = consent_verdict(_state(ALL=Consent(blocked=True)), "b1", Category.UTILITY)
    assert verdict is not None and "b1" not in verdict[1]
