"""The subscriber state's changelog encoding: lossless, compact, versioned."""

from __future__ import annotations

import dataclasses
import json
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.models import (
    Account,
    AccountStatus,
    Consent,
    EntityMemory,
    MarketingSent,
    PastOutcome,
    Priority,
    Reason,
    SubscriberState,
)
from pipeline.streams.state_codec import FORMAT_VERSION, decode_state, encode_state

_text = st.text(max_size=12)
_millis = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _mapping(values: st.SearchStrategy[Any], size: int = 3) -> st.SearchStrategy[Any]:
    return st.dictionaries(_text, values, max_size=size).map(MappingProxyType)


# One strategy per field of each stored value; test_strategies_cover_every_field keeps these
# in step with the models, so a new field cannot slip past the round trip untested.
ACCOUNT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "wa_id": _text,
    "status": st.sampled_from(list(AccountStatus)),
    "locale": _text,
    "country": _text,
    "updated_at": _millis,
    "timezone": st.none() | _text,
    "interests": st.lists(_text, max_size=3).map(tuple),
}
CONSENT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "utility": st.none() | st.booleans(),
    "marketing": st.none() | st.booleans(),
    "blocked": st.booleans(),
    "updated_at": _millis,
    "reported": st.booleans(),
}
OUTCOME_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "delivered": st.booleans(),
    "rule": _text,
    "detail": _text,
    "decided_at": _millis,
    "policy_version": _text,
    "reason": st.none() | st.sampled_from(list(Reason)),
    "deliver_after": st.none() | _millis,
    "priority": st.none() | st.sampled_from(list(Priority)),
}
MARKETING_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "at": _millis,
    "business_id": _text,
    "message_id": _text,
    "counted": st.booleans(),
    "read": st.booleans(),
}
ENTITY_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "version": _millis,
    "seen_at": _millis,
    "delivered_at": st.none() | _millis,
    "delay_minutes": st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1),
    "gate": st.none() | _text,
    "cancelled": st.booleans(),
}
STATE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "account": st.none() | st.builds(Account, **ACCOUNT_FIELDS),
    "consents": _mapping(st.builds(Consent, **CONSENT_FIELDS)),
    "outcomes": _mapping(st.builds(PastOutcome, **OUTCOME_FIELDS), 4),
    "sent": _mapping(st.tuples(_text, _millis)),
    "marketing": st.lists(st.builds(MarketingSent, **MARKETING_FIELDS), max_size=3).map(tuple),
    "last_sent": _mapping(_millis),
    "inbound_at": _mapping(_millis),
    "not_interested_at": st.none() | _millis,
    "entities": _mapping(st.builds(EntityMemory, **ENTITY_FIELDS)),
}
states = st.builds(SubscriberState, **STATE_FIELDS)


@pytest.mark.parametrize(
    ("model", "covered"),
    [
        (SubscriberState, STATE_FIELDS),
        (Account, ACCOUNT_FIELDS),
        (Consent, CONSENT_FIELDS),
        (PastOutcome, OUTCOME_FIELDS),
        (MarketingSent, MARKETING_FIELDS),
        (EntityMemory, ENTITY_FIELDS),
    ],
)
def test_strategies_cover_every_field(model: type, covered: dict[str, Any]) -> None:
    """Every field of the stored state is generated, so the round trip checks it is kept."""
    assert {f.name for f in dataclasses.fields(model)} == set(covered)


@given(states)
def test_state_round_trips(state: SubscriberState) -> None:
    """decode_state(encode_state(s)) == s for any state: nothing is lost in the changelog."""
    decoded = decode_state(encode_state(state))
    assert decoded == state
    # Types, not only values: enums stay enums, tuples stay tuples.
    for e, o in decoded.outcomes.items():
        assert type(o.reason) is type(state.outcomes[e].reason)
        assert type(o.priority) is type(state.outcomes[e].priority)
    if decoded.account is not None:
        assert isinstance(decoded.account.status, AccountStatus)
        assert isinstance(decoded.account.interests, tuple)
    assert all(isinstance(v, tuple) for v in decoded.sent.values())


@given(states)
def test_encoding_is_deterministic_and_versioned(state: SubscriberState) -> None:
    """The same state encodes to the same bytes, a JSON object led by the format version."""
    data = encode_state(state)
    assert encode_state(decode_state(data)) == data
    assert json.loads(data)["v"] == FORMAT_VERSION


def test_decoded_state_is_read_only() -> None:
    """A decoded state's mappings cannot be changed in place behind the table's back."""
    state = SubscriberState(consents=MappingProxyType({"b": Consent(True)}))
    decoded = decode_state(encode_state(state))
    with pytest.raises(TypeError):
        decoded.consents["b"] = Consent(False)  # type: ignore[index]


def test_empty_state_round_trips() -> None:
    """The empty state (no account, nothing remembered) survives the changelog."""
    assert decode_state(encode_state(SubscriberState())) == SubscriberState()


@pytest.mark.parametrize(
    "version",
    [0, -1, FORMAT_VERSION + 1, str(FORMAT_VERSION), float(FORMAT_VERSION), True, None, [1]],
)
def test_unknown_format_version_is_refused(version: object) -> None:
    """A state written in an unknown format is refused, never misread."""
    doc = json.loads(encode_state(SubscriberState()))
    doc["v"] = version
    with pytest.raises(ValueError, match="unknown subscriber state format"):
        decode_state(json.dumps(doc).encode())


def test_format_1_state_still_decodes() -> None:
    """A state written before format 2 (still in the changelog) decodes, new ledgers empty."""
    v1 = (
        b'{"v":1,"account":["6281234567890","ACTIVE","id_ID","ID",5,"Asia/Jakarta",["travel"]],'
        b'"consents":{"garuda":[true,null,false,7]},'
        b'"outcomes":{"evt-1":[true,"consent","ok",9,"p-1",null,null,"URGENT"]},'
        b'"sent":{"fp":["evt-1",9]}}'
    )
    assert decode_state(v1) == SubscriberState(
        account=Account(
            "6281234567890", AccountStatus.ACTIVE, "id_ID", "ID", 5, "Asia/Jakarta", ("travel",)
        ),
        consents=MappingProxyType({"garuda": Consent(True, None, False, 7)}),
        outcomes=MappingProxyType(
            {"evt-1": PastOutcome(True, "consent", "ok", 9, "p-1", priority=Priority.URGENT)}
        ),
        sent=MappingProxyType({"fp": ("evt-1", 9)}),
    )


def test_missing_format_version_is_refused() -> None:
    """A state without a format version is refused."""
    doc = json.loads(encode_state(SubscriberState()))
    del doc["v"]
    with pytest.raises(ValueError, match="unknown subscriber state format"):
        decode_state(json.dumps(doc).encode())
