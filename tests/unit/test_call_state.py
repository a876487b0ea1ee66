"""The state a call carries between SMA invocations in its TransactionAttributes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rapport.calls import CallState, Stage
from rapport.models import RoutingMode

CALLER_KEY = "f8a3de212b6fa1f635eaceed8e5a771ebeb53524a55d11c7b5956481b01d9305"
MAX_TRANSACTION_ATTRIBUTES = 10  # the SMA rejects more (TransactionAttributesInvalidMapSize)


# -- builders -----------------------------------------------------------------------------------------


def ringing_berlin() -> CallState:
    """The state after NEW_INBOUND_CALL: berlin-07 rings, two agents left to fail over to."""
    return CallState(
        caller_key=CALLER_KEY,
        agent_id="berlin-07",
        mode=RoutingMode.INTEREST,
        attempt=1,
        pending=(("hamburg-02", RoutingMode.INTEREST), ("munich-01", RoutingMode.ANY_AVAILABLE)),
        link_days=180,
        stage=Stage.AGENT,
    )


def attributes(**changes: Any) -> dict[str, Any]:
    """Valid stored attributes with some values changed (None removes the key)."""
    stored: dict[str, Any] = ringing_berlin().to_attributes()
    for key, value in changes.items():
        if value is None:
            stored.pop(key, None)
        else:
            stored[key] = value
    return stored


agent_ids = st.from_regex(r"[A-Za-z0-9._-]{1,30}", fullmatch=True)
states = st.builds(
    CallState,
    caller_key=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    agent_id=st.none() | agent_ids,
    mode=st.sampled_from(list(RoutingMode)),
    attempt=st.integers(min_value=0, max_value=20),
    pending=st.lists(st.tuples(agent_ids, st.sampled_from(list(RoutingMode))), max_size=8).map(tuple),
    link_days=st.integers(min_value=0, max_value=3650),
    stage=st.sampled_from(list(Stage)),
)


# -- round trip ---------------------------------------------------------------------------------------


def test_the_state_after_a_new_call_survives_the_round_trip() -> None:
    state = ringing_berlin()

    assert CallState.from_attributes(state.to_attributes()) == state


def test_the_sample_event_s_attributes_read_as_the_state_they_describe() -> None:
    stored = {
        "rp_caller": CALLER_KEY,
        "rp_agent": "berlin-07",
        "rp_mode": "interest",
        "rp_attempt": "1",
        "rp_candidates": "hamburg-02:interest,munich-01:any_available",
        "rp_link": "1",
        "rp_stage": "agent",
    }

    state = CallState.from_attributes(stored)

    assert state is not None
    assert state.agent_id == "berlin-07"
    assert state.pending == (("hamburg-02", RoutingMode.INTEREST), ("munich-01", RoutingMode.ANY_AVAILABLE))
    assert state.stage is Stage.AGENT


def test_an_empty_state_survives_the_round_trip() -> None:
    state = CallState(stage=Stage.DONE)

    assert CallState.from_attributes(state.to_attributes()) == state


@given(states)
def test_every_valid_state_survives_the_round_trip(state: CallState) -> None:
    assert CallState.from_attributes(state.to_attributes()) == state


@given(states)
def test_the_attributes_fit_what_the_sma_accepts(state: CallState) -> None:
    stored = state.to_attributes()

    assert len(stored) <= MAX_TRANSACTION_ATTRIBUTES
    assert all(isinstance(key, str) and isinstance(value, str) for key, value in stored.items())


# -- unreadable attributes ----------------------------------------------------------------------------


@pytest.mark.parametrize("stored", [None, {}, {"something": "else"}], ids=["none", "empty", "foreign"])
def test_no_stored_state_reads_as_none(stored: dict[str, str] | None) -> None:
    assert CallState.from_attributes(stored) is None


@pytest.mark.parametrize(
    "broken",
    [
        {"rp_stage": "teleported"},
        {"rp_stage": ""},
        {"rp_attempt": "two"},
        {"rp_attempt": "1.5"},
        {"rp_link": "forever"},
        {"rp_mode": "psychic"},
        {"rp_candidates": "hamburg-02:psychic"},
        {"rp_candidates": "hamburg-02"},
        {"rp_candidates": "hamburg-02:interest,munich-01:"},
    ],
    ids=lambda broken: f"{next(iter(broken))}={next(iter(broken.values()))!r}",
)
def test_garbage_attributes_read_as_none(broken: dict[str, str]) -> None:
    assert CallState.from_attributes(attributes(**broken)) is None


def test_a_missing_optional_attribute_takes_its_default() -> None:
    state = CallState.from_attributes(attributes(rp_candidates=None, rp_attempt=None))

    assert state is not None
    assert state.pending == ()
    assert state.attempt == 0
    assert state.agent_id == "berlin-07"


@given(st.dictionaries(st.sampled_from(list(attributes())) | st.text(max_size=8), st.text(max_size=40)))
def test_arbitrary_string_attributes_never_raise(stored: dict[str, str]) -> None:
    state = CallState.from_attributes(stored)

    assert state is None or isinstance(state, CallState)
