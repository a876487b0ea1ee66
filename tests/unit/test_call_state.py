"""The state a call carries between SMA invocations in its TransactionAttributes (call_state.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from call_state import (
    MAX_RECORD_CHARS,
    SIGNATURE,
    Seal,
    check,
    from_attributes,
    seal,
    state_key,
    to_attributes,
)
from hypothesis import given
from hypothesis import strategies as st
from rapport.call import CallState, Stage
from rapport.models import (
    Attempt,
    AttemptOutcome,
    Candidate,
    DecisionRecord,
    Grounds,
    InterestFact,
    Note,
    NoteCode,
    PrivacyFacts,
    RoutingMode,
    Skill,
)

CALLER_KEY = "f8a3de212b6fa1f635eaceed8e5a771ebeb53524a55d11c7b5956481b01d9305"
CALL_ID = "93573040-1c12-40ec-91cd-7d8edac1a172"
NOW = 1_790_000_000.0
MAX_TRANSACTION_ATTRIBUTES = 10  # the SMA rejects more (TransactionAttributesInvalidMapSize)
MAX_PAYLOAD = 20 * 1024  # the SMA's limit for all attributes together


def ringing_berlin() -> CallState:
    """The state after NEW_INBOUND_CALL: berlin-07 rings, two agents left to fail over to."""
    record = DecisionRecord(
        call_id=CALL_ID,
        caller_key=CALLER_KEY,
        decided_at=NOW,
        mode=RoutingMode.INTEREST,
        candidates=[
            Candidate(
                agent_id="berlin-07",
                mode=RoutingMode.INTEREST,
                pool="3",
                score=0.1,
                skills={"x200-headphones": Skill(proficiency=5, conversion=0.33)},
            ),
            Candidate(agent_id="hamburg-02", mode=RoutingMode.INTEREST, pool="3", score=0.05),
            Candidate(agent_id="munich-01", mode=RoutingMode.ANY_AVAILABLE, pool="8", idle_since=NOW - 60),
        ],
        interests={"x200-headphones": InterestFact(score=0.82, sources=["social"], at=NOW - 86_400)},
        privacy=PrivacyFacts(jurisdiction="DE", rule_set="DE", label="Germany", policy_version="v1"),
        notes=[Note(code=NoteCode.LAST_AGENT_BUSY, detail="cologne-04")],
        attempts=[Attempt(agent_id="berlin-07", mode=RoutingMode.INTEREST, pool="3", at=NOW)],
        expires_at=NOW + 180 * 86_400,
    )
    return CallState(stage=Stage.AGENT, caller_key=CALLER_KEY, link_days=180, record=record)


def attributes(**changes: Any) -> dict[str, Any]:
    """Valid stored attributes with some values changed (None removes the key)."""
    stored: dict[str, Any] = to_attributes(ringing_berlin())
    for key, value in changes.items():
        if value is None:
            stored.pop(key, None)
        else:
            stored[key] = value
    return stored


agent_ids = st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True)
# Stored models take their short aliases as constructor arguments too: building them through a lambda
# keeps hypothesis from inventing values for those.
candidates = st.builds(
    lambda **fields: Candidate(**fields),
    agent_id=agent_ids,
    mode=st.sampled_from(list(RoutingMode)),
    pool=st.from_regex(r"[0-9]{1,5}", fullmatch=True),
    score=st.floats(0, 1),
    idle_since=st.none() | st.floats(0, 2e9),
)
records = st.builds(
    lambda **fields: DecisionRecord(**fields),
    call_id=st.just(CALL_ID),
    caller_key=st.just(CALLER_KEY),
    decided_at=st.floats(1e9, 2e9),
    mode=st.sampled_from(list(RoutingMode)),
    candidates=st.lists(candidates, max_size=5),
    privacy=st.builds(
        lambda grounds: PrivacyFacts(interests_grounds=grounds), st.sampled_from(list(Grounds))
    ),
    attempts=st.lists(
        st.builds(
            lambda **fields: Attempt(**fields),
            agent_id=agent_ids,
            mode=st.sampled_from(list(RoutingMode)),
            at=st.floats(1e9, 2e9),
            outcome=st.sampled_from(list(AttemptOutcome)),
        ),
        max_size=6,
    ),
    expires_at=st.floats(1e9, 3e9),
)
states = st.builds(
    CallState,
    stage=st.sampled_from(list(Stage)),
    caller_key=st.just(CALLER_KEY),
    link_days=st.integers(min_value=0, max_value=3650),
    record=st.none() | records,
)


# -- round trip ---------------------------------------------------------------------------------------


def test_the_state_after_a_new_call_survives_the_round_trip() -> None:
    state = ringing_berlin()

    assert from_attributes(to_attributes(state), CALL_ID) == state


def test_the_failover_list_is_what_was_not_rung_yet() -> None:
    state = from_attributes(attributes(), CALL_ID)

    assert state is not None and state.agent_id == "berlin-07"
    assert [candidate.agent_id for candidate in state.pending()] == ["hamburg-02", "munich-01"]


def test_an_empty_state_survives_the_round_trip() -> None:
    state = CallState(stage=Stage.DONE)

    assert from_attributes(to_attributes(state), "any call") == state


@given(states)
def test_every_valid_state_survives_the_round_trip(state: CallState) -> None:
    assert from_attributes(to_attributes(state), CALL_ID) == state


@given(states)
def test_the_attributes_fit_what_the_sma_accepts(state: CallState) -> None:
    stored = to_attributes(state)

    assert len(stored) <= MAX_TRANSACTION_ATTRIBUTES
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in stored.items())
    assert len(json.dumps(stored)) < MAX_PAYLOAD


# -- unreadable or foreign attributes -----------------------------------------------------------------


@pytest.mark.parametrize("stored", [None, {}, {"something": "else"}], ids=["none", "empty", "foreign"])
def test_no_stored_state_reads_as_none(stored: dict[str, str] | None) -> None:
    assert from_attributes(stored, CALL_ID) is None


@pytest.mark.parametrize(
    "broken",
    [
        {"rp_stage": "teleported"},
        {"rp_stage": ""},
        {"rp_link": "forever"},
        {"rp_link": "9" * 309},
        {"rp_caller": "not-a-key"},
        {"rp_record": "{"},
        {"rp_record": '{"call": "x"}'},
        {"rp_record": "x" * (MAX_RECORD_CHARS + 1)},
    ],
    ids=lambda broken: f"{next(iter(broken))}={next(iter(broken.values()))[:12]!r}",
)
def test_garbage_attributes_read_as_none(broken: dict[str, str]) -> None:
    assert from_attributes(attributes(**broken), CALL_ID) is None


def test_the_state_of_another_call_is_not_taken_for_this_one() -> None:
    assert from_attributes(attributes(), "another-call") is None


def test_a_record_of_another_caller_is_not_taken_for_this_one() -> None:
    assert from_attributes(attributes(rp_caller="0" * 64), CALL_ID) is None


def test_a_missing_optional_attribute_takes_its_default() -> None:
    state = from_attributes(attributes(rp_link=None), CALL_ID)

    assert state is not None
    assert state.link_days == 0
    assert state.agent_id == "berlin-07"


@given(st.dictionaries(st.sampled_from(list(attributes())) | st.text(max_size=8), st.text(max_size=40)))
def test_arbitrary_string_attributes_never_raise(stored: dict[str, str]) -> None:
    state = from_attributes(stored, CALL_ID)

    assert state is None or isinstance(state, CallState)


# -- the seal ---------------------------------------------------------------------------------------------

KEY = state_key("a pepper")
SMA = "sma-1"


def sealed() -> dict[str, str]:
    return seal(to_attributes(ringing_berlin()), KEY, CALL_ID, SMA)


def test_state_sealed_for_a_call_checks_valid_for_that_call_only() -> None:
    attributes = sealed()
    assert check(attributes, KEY, CALL_ID, SMA) is Seal.VALID
    assert check(attributes, KEY, "another-call", SMA) is Seal.FORGED
    assert check(attributes, KEY, CALL_ID, "another-sma") is Seal.FORGED
    assert check(attributes, state_key("another pepper"), CALL_ID, SMA) is Seal.FORGED


@pytest.mark.parametrize("name", ["rp_stage", "rp_caller", "rp_link", "rp_record"])
def test_any_attribute_changed_breaks_the_seal(name: str) -> None:
    attributes = sealed()
    attributes[name] = attributes[name][:-1] + ("0" if attributes[name][-1:] != "0" else "1")
    assert check(attributes, KEY, CALL_ID, SMA) is Seal.FORGED


def test_an_attribute_added_or_dropped_breaks_the_seal() -> None:
    added = {**sealed(), "rp_offered": "1"}
    dropped = {k: v for k, v in sealed().items() if k != "rp_link"}
    assert check(added, KEY, CALL_ID, SMA) is Seal.FORGED
    assert check(dropped, KEY, CALL_ID, SMA) is Seal.FORGED


def test_unsealed_state_passes_only_when_it_names_no_caller_and_no_link() -> None:
    harmless = to_attributes(CallState(stage=Stage.MESSAGE))
    assert check(harmless, KEY, CALL_ID, SMA) is Seal.UNSIGNED
    naming = to_attributes(ringing_berlin())
    assert check(naming, KEY, CALL_ID, SMA) is Seal.FORGED
    assert check({**harmless, "rp_link": "3650"}, KEY, CALL_ID, SMA) is Seal.FORGED


def test_sealed_state_without_the_key_at_hand_is_unverifiable_not_valid() -> None:
    assert check(sealed(), None, CALL_ID, SMA) is Seal.UNVERIFIABLE
    assert check({**sealed(), SIGNATURE: "not hex"}, None, CALL_ID, SMA) is Seal.FORGED
